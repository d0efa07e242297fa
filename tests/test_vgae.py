"""Tests for SphericalVGAE, the GCN encoders, the decoders and the Planetoid link-split helpers."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

# PyG's examples/autoencoder.py encoder, as the benchmark of that example defines it
from scipy.special import gammaln
from torch_geometric.data import Data
from torch_geometric.nn import VGAE
from torch_geometric.utils import to_undirected

from pyg_spherical import (
    GaussianGCNEncoder,
    GCNEncoder,
    SphericalGCNEncoder,
    SphericalVGAE,
    VonMisesFisher,
    make_latent,
)
from pyg_spherical.nn import GaussianLatent, VMFLatent
from pyg_spherical.repro.datasets import link_split, load_planetoid, resolve_root
from pyg_spherical.repro.datasets.planetoid import planetoid_raw_dir


# ------------------------------------------------------------------------------------ helpers
def sbm_graph(n_per_block=25, blocks=8, p_in=0.3, p_out=0.005, num_features=32, seed=0,
              signal=0.4):
    """Stochastic block model with noisy bag-of-words features that hint at the block (each of
    the block's own words is present with probability ``signal``)."""
    g = torch.Generator().manual_seed(seed)
    n = n_per_block * blocks
    y = torch.arange(blocks).repeat_interleave(n_per_block)
    same = y[:, None] == y[None, :]
    prob = torch.where(same, torch.tensor(p_in), torch.tensor(p_out))
    upper = torch.triu(torch.rand(n, n, generator=g) < prob, diagonal=1)
    ei = to_undirected(upper.nonzero().t(), num_nodes=n)
    words = num_features // blocks
    x = (torch.rand(n, num_features, generator=g) < 0.05).float()
    own = torch.rand(n, words, generator=g) < signal
    for b in range(blocks):
        x[y == b, b * words:(b + 1) * words] += own[y == b].float()
    return Data(x=x.clamp(max=1), edge_index=ei, y=y, num_nodes=n)


class VariationalGCNEncoder(torch.nn.Module):
    """The encoder of PyG's ``examples/autoencoder.py``, as users write it for PyG's VGAE."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1 = GCNConv(in_channels, 2 * out_channels)
        self.conv_mu = GCNConv(2 * out_channels, out_channels)
        self.conv_logstd = GCNConv(2 * out_channels, out_channels)

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        return self.conv_mu(x, edge_index), self.conv_logstd(x, edge_index)


def vmf_kl_scipy(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """KL(vMF(mu, kappa) || U(S^{m-1})) = kappa A_m + log C_m + log|S^{m-1}| (eq. 5) from
    scipy's exponentially scaled Bessel functions, in float64."""
    from scipy.special import ive

    k = kappa.detach().double().numpy()
    a = ive(m / 2, k) / ive(m / 2 - 1, k)
    log_c = (m / 2 - 1) * np.log(k) - (m / 2) * np.log(2 * np.pi) - np.log(ive(m / 2 - 1, k)) - k
    log_area = np.log(2) + (m / 2) * np.log(np.pi) - gammaln(m / 2)
    return torch.as_tensor(k * a + log_c + log_area)


def power_kl_scipy(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """KL(PS(mu, kappa) || U(S^{m-1})) in closed form (De Cao & Aziz, 2020) with scipy's
    gammaln / digamma, in float64: with beta = (m - 1) / 2, alpha = beta + kappa,
    [lgamma(alpha + beta) - lgamma(alpha)] - [lgamma(2 beta) - lgamma(beta)]
    - kappa [psi(alpha + beta) - psi(alpha)]."""
    from scipy.special import digamma

    k = kappa.detach().double().numpy()
    b = (m - 1) / 2
    a = b + k
    out = (gammaln(a + b) - gammaln(a) - (gammaln(2 * b) - gammaln(b))
           - k * (digamma(a + b) - digamma(a)))
    return torch.as_tensor(out)


def vmf_kl_s2(kappa: torch.Tensor) -> torch.Tensor:
    """Closed form KL(vMF(mu, kappa) || U(S^2)) = kappa coth(kappa) - 1 + log(kappa / sinh kappa)."""
    k = kappa.double()
    log_sinh = k + torch.log1p(-torch.exp(-2 * k)) - math.log(2)
    return k / torch.tanh(k) - 1 + torch.log(k) - log_sinh


def auc_after_training(model, data, split, epochs, lr=0.01):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        z = model.encode(data.x, split.train_pos_edge_index)
        loss = model.recon_loss(z, split.train_pos_edge_index) + model.kl_loss() / data.num_nodes
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        z = model.encode(data.x, split.train_pos_edge_index)
        return model.test(z, split.test_pos_edge_index, split.test_neg_edge_index)


@pytest.fixture
def graph():
    return sbm_graph()


@pytest.fixture
def weak_graph():
    """Features that barely hint at the block: an untrained encoder is well below a trained one."""
    return sbm_graph(signal=0.15)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small graphs: one thread is fastest, and keeps a shared machine usable."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------- API compatibility
def test_is_a_pyg_vgae_and_builds_the_right_latent(graph):
    s = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 32, 16, dropout=0.1))
    n = SphericalVGAE(GaussianGCNEncoder(graph.num_features, 32, 16))
    assert isinstance(s, VGAE) and isinstance(n, VGAE)
    assert isinstance(s.latent, VMFLatent) and s.latent.dim == 16 and s.latent_kind == "vmf"
    assert isinstance(n.latent, GaussianLatent) and n.latent_kind == "normal"
    # one argument switches the family; an explicit layer is used as given
    m = SphericalVGAE(GaussianGCNEncoder(graph.num_features, 32, 16), latent="normal")
    assert isinstance(m.latent, GaussianLatent)
    lat = make_latent("vmf", 16)
    assert SphericalVGAE(SphericalGCNEncoder(graph.num_features), latent=lat).latent is lat
    # no out_channels: the latent width comes from the first encoding
    lazy = SphericalVGAE(lambda x: (x, x[:, :1]))
    assert lazy.latent is None and lazy.latent_kind == "vmf"
    lazy.encode(torch.randn(5, 7))
    assert isinstance(lazy.latent, VMFLatent) and lazy.latent.dim == 7
    with pytest.raises(TypeError):
        SphericalVGAE(SphericalGCNEncoder(graph.num_features), latent=3)


@pytest.mark.parametrize("Enc", [SphericalGCNEncoder, GaussianGCNEncoder])
def test_drop_in_pyg_autoencoder_example_loop(Enc, graph):
    """PyG's examples/autoencoder.py training/test functions, unchanged, with our model."""
    import torch_geometric.transforms as T

    torch.manual_seed(0)
    random.seed(0)
    train_data, _val_data, test_data = T.RandomLinkSplit(
        num_val=0.05, num_test=0.1, is_undirected=True, split_labels=True,
        add_negative_train_samples=False)(graph)
    model = SphericalVGAE(Enc(graph.num_features, 32, 16))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def train():
        model.train()
        optimizer.zero_grad()
        z = model.encode(train_data.x, train_data.edge_index)
        loss = model.recon_loss(z, train_data.pos_edge_label_index)
        loss = loss + (1 / train_data.num_nodes) * model.kl_loss()
        loss.backward()
        optimizer.step()
        return float(loss)

    @torch.no_grad()
    def test(data):
        model.eval()
        z = model.encode(data.x, data.edge_index)
        return model.test(z, data.pos_edge_label_index, data.neg_edge_label_index)

    auc0, _ = test(test_data)
    losses = [train() for _ in range(60)]
    auc, ap = test(test_data)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    # a random split of an 8-block graph: chance is 0.5
    assert auc > 0.85 and ap > 0.8, (auc0, auc, ap)
    model.reset_parameters()  # PyG API
    assert model.encoder._cache is None


def test_gaussian_latent_reproduces_pyg_vgae(graph):
    """Same encoder and RNG: identical samples, KL and reconstruction loss as PyG's VGAE."""
    enc = GaussianGCNEncoder(graph.num_features, 32, 8, dropout=0.2)
    ours, ref = SphericalVGAE(enc), VGAE(enc)
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        ref.train(mode == "train")
        torch.manual_seed(3)
        z1 = ours.encode(graph.x, graph.edge_index)
        kl1 = ours.kl_loss()
        random.seed(5)
        torch.manual_seed(5)
        r1 = ours.recon_loss(z1, graph.edge_index)
        torch.manual_seed(3)
        z2 = ref.encode(graph.x, graph.edge_index)
        kl2 = ref.kl_loss()
        random.seed(5)
        torch.manual_seed(5)
        r2 = ref.recon_loss(z2, graph.edge_index)
        torch.testing.assert_close(z1, z2)
        torch.testing.assert_close(kl1, kl2)
        torch.testing.assert_close(r1, r2)
        # raw parameters are exposed like PyG's
        torch.testing.assert_close(ours.__mu__, ref.__mu__)
        torch.testing.assert_close(ours.__logstd__, ref.__logstd__)


# ------------------------------------------------------------------------------------ KL values
def test_vmf_kl_loss_matches_closed_form_on_s2(graph):
    model = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 16, 3))
    z = model.encode(graph.x, graph.edge_index)
    q = model.posterior
    assert isinstance(q, VonMisesFisher) and q.batch_shape == (graph.num_nodes,)
    expected = vmf_kl_s2(q.concentration.detach()).mean()
    torch.testing.assert_close(model.kl_loss().double(), expected, rtol=1e-5, atol=1e-6)
    assert z.shape == (graph.num_nodes, 3)


def test_kl_loss_matches_distribution_kl_and_explicit_arguments(graph):
    torch.manual_seed(0)
    model = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 16, 10))
    model.encode(graph.x, graph.edge_index)
    q = model.posterior
    torch.testing.assert_close(model.kl_loss().double(), vmf_kl_scipy(q.concentration, 10).mean(),
                               rtol=1e-5, atol=0)
    # explicit raw outputs (PyG signature) and a partially given pair
    loc, raw = model.__mu__, model.__logstd__
    torch.testing.assert_close(model.kl_loss(loc, raw), model.kl_loss())
    kappa = torch.nn.functional.softplus(raw + 1.0).squeeze(-1) + 1
    torch.testing.assert_close(model.kl_loss(logstd=raw + 1.0).double(),
                               vmf_kl_scipy(kappa, 10).mean(), rtol=1e-5, atol=0)
    # Gaussian: the textbook closed form
    g = SphericalVGAE(GaussianGCNEncoder(graph.num_features, 16, 10))
    g.encode(graph.x, graph.edge_index)
    mu, logstd = g.__mu__, g.__logstd__
    ref = -0.5 * torch.mean(torch.sum(1 + 2 * logstd - mu ** 2 - torch.exp(logstd) ** 2, dim=1))
    torch.testing.assert_close(g.kl_loss(), ref)


def test_the_old_encoder_name_is_a_deprecated_alias():
    """``GCNEncoder`` (PyG's example uses the name for a plain encoder) still builds the
    variational Gaussian encoder, with the same parameters, and says it is deprecated."""
    with pytest.warns(DeprecationWarning, match="GaussianGCNEncoder"):
        old = GCNEncoder(6, 8, 3)
    assert isinstance(old, GaussianGCNEncoder) and old.latent_kind == "normal"
    new = GaussianGCNEncoder(6, 8, 3)
    assert {k: v.shape for k, v in old.state_dict().items()} == {
        k: v.shape for k, v in new.state_dict().items()}


def test_kl_loss_before_encode_raises():
    model = SphericalVGAE(SphericalGCNEncoder(5, 8, 4))
    with pytest.raises(RuntimeError, match="encode"):
        model.kl_loss()


def test_kl_gradient_reaches_concentration_only(graph):
    model = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 16, 6))
    model.encode(graph.x, graph.edge_index)
    model.kl_loss().backward()
    enc = model.encoder
    assert enc.conv_scale.lin.weight.grad.abs().sum() > 0
    assert enc.conv_loc.lin.weight.grad is None or enc.conv_loc.lin.weight.grad.abs().sum() == 0


# --------------------------------------------------------------------------- encoder outputs
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encoder_shapes_and_validity(device, dtype, graph):
    x, ei = graph.x.to(device, dtype), graph.edge_index.to(device)
    n, d = graph.num_nodes, 7
    s_enc = SphericalGCNEncoder(graph.num_features, 32, d, dropout=0.1).to(device, dtype)
    loc, kappa_raw = s_enc(x, ei)
    assert loc.shape == (n, d) and kappa_raw.shape == (n, 1)
    assert loc.dtype == dtype and loc.device.type == device.type
    n_enc = GaussianGCNEncoder(graph.num_features, 32, d).to(device, dtype)
    mu, logstd = n_enc(x, ei)
    assert mu.shape == (n, d) and logstd.shape == (n, d)

    model = SphericalVGAE(s_enc).to(device, dtype)
    z = model.encode(x, ei)  # training mode: a sample
    q = model.posterior
    assert z.shape == (n, d) and z.dtype == dtype
    torch.testing.assert_close(torch.linalg.vector_norm(z, dim=-1),
                               torch.ones(n, device=device, dtype=dtype))
    torch.testing.assert_close(torch.linalg.vector_norm(q.loc, dim=-1),
                               torch.ones(n, device=device, dtype=dtype))
    assert (q.concentration > 1).all() and torch.isfinite(q.concentration).all()
    loss = model.recon_loss(z, ei) + model.kl_loss() / n
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == dtype
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    model.eval()  # eval: the mean direction, deterministic
    z1, z2 = model.encode(x, ei), model.encode(x, ei)
    torch.testing.assert_close(z1, z2)
    torch.testing.assert_close(z1, model.posterior.loc)
    model.train()
    assert not torch.allclose(model.encode(x, ei), model.encode(x, ei))


def test_a_zero_mean_direction_row_gets_the_first_basis_vector_and_finite_gradients():
    """A zero loc_raw row has no direction: it is given e_1, and nothing in the forward or the
    backward pass of the other rows turns NaN."""
    layer = VMFLatent(4).eval()
    loc_raw = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    scale_raw = torch.zeros(2, 1, requires_grad=True)
    z = layer(loc_raw, scale_raw)
    torch.testing.assert_close(z, torch.tensor([[0.6, 0.8, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    layer.train()
    z = layer(loc_raw, scale_raw)
    (z.sum() + layer.kl().sum()).backward()
    assert torch.isfinite(loc_raw.grad).all() and torch.isfinite(scale_raw.grad).all()
    assert (loc_raw.grad[1] == 0).all()  # the fallback direction does not depend on loc_raw
    assert loc_raw.grad[0].abs().sum() > 0


def test_pygs_example_encoder_trains_on_featureless_isolated_nodes():
    """PyG's GCNConv starts with zero biases: a node without features and edges encodes to an
    exactly zero loc_raw (CiteSeer has such nodes). SphericalVGAE trains through it, as VGAE does."""
    torch.manual_seed(0)
    x = torch.rand(6, 5)
    x[5] = 0.0  # node 5: no features, no edges
    ei = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    model = SphericalVGAE(VariationalGCNEncoder(5, 4))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        z = model.encode(x, ei)
        loss = model.recon_loss(z, ei) + model.kl_loss() / 6
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_mean_direction_is_named_as_such(bad):
    layer = VMFLatent(4)
    loc_raw = torch.ones(3, 4)
    loc_raw[1, 2] = bad
    with pytest.raises(RuntimeError, match="non-finite"):
        layer(loc_raw, torch.zeros(3, 1))


@pytest.mark.parametrize("k0", [0.0, -1.0, float("nan"), float("inf")])
def test_min_concentration_must_be_positive_and_finite(k0):
    with pytest.raises(ValueError, match="min_concentration"):
        VMFLatent(4, min_concentration=k0)


def test_small_min_concentration_keeps_kappa_positive():
    """softplus(-200) underflows to 0: the floor is what keeps kappa > 0."""
    torch.manual_seed(0)
    layer = VMFLatent(3, min_concentration=1e-6)
    loc_raw = torch.randn(5, 3, requires_grad=True)
    scale_raw = torch.full((5, 1), -200.0, requires_grad=True)
    z = layer(loc_raw, scale_raw)
    (z.sum() + layer.kl().sum()).backward()
    assert (layer.posterior.concentration > 0).all() and torch.isfinite(z).all()
    assert torch.isfinite(loc_raw.grad).all() and torch.isfinite(scale_raw.grad).all()


def test_featureless_isolated_nodes_still_get_a_direction():
    """All features dropped / absent + no neighbours => H = 0; the random loc bias keeps it valid."""
    x = torch.zeros(4, 6)
    x[0, 1] = 1.0
    ei = torch.tensor([[0, 1], [1, 0]])
    model = SphericalVGAE(SphericalGCNEncoder(6, 8, 3, dropout=0.5))
    for mode in (True, False):
        model.train(mode)
        z = model.encode(x, ei)
        assert torch.isfinite(z).all()
    assert SphericalGCNEncoder(6, 8, 3).conv_loc.bias.abs().max() > 0
    assert GaussianGCNEncoder(6, 8, 3).conv_loc.bias.abs().max() == 0  # PyG's init for the Gaussian


def test_sparse_features_match_dense(graph):
    torch.manual_seed(0)
    enc = SphericalGCNEncoder(graph.num_features, 16, 5, dropout=0.3)
    enc.eval()
    dense = enc(graph.x, graph.edge_index)
    sparse = enc(graph.x.to_sparse(), graph.edge_index)
    for a, b in zip(dense, sparse):
        torch.testing.assert_close(a, b)
    # training mode: dropout on the stored entries only; Monte Carlo mean and variance of the
    # first layer (before ReLU) against the exact moments of dense inverted dropout:
    # out_i = sum_jk A_ij x_jk m_jk W_k / (1 - p), m ~ Bernoulli(1 - p)
    enc.train()
    p, reps = 0.3, 1000
    xs = graph.x.to_sparse()
    ei, ew = enc.normalized_adjacency(graph.edge_index, graph.num_nodes)
    A = torch.zeros(graph.num_nodes, graph.num_nodes).index_put_((ei[1], ei[0]), ew, accumulate=True)
    w = enc.conv1.lin.weight.detach()
    b = enc.conv1.bias.detach()
    with torch.no_grad():
        draws = torch.stack([enc._sparse_input_conv(xs, ei, ew) for _ in range(reps)])
    mean_ref = A @ (graph.x @ w.t()) + b
    var_ref = p / (1 - p) * ((A ** 2) @ ((graph.x ** 2) @ (w.t() ** 2)))
    se = (var_ref / reps).sqrt()
    assert ((draws.mean(0) - mean_ref).abs() <= 5 * se + 1e-6).all()
    rel = draws.var(0)[var_ref > 1e-4] / var_ref[var_ref > 1e-4]
    assert 0.9 < rel.mean() < 1.1  # pooled over entries (each has ~3% relative SE)
    loc, _ = enc(xs, graph.edge_index)
    assert torch.isfinite(loc).all()


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_csr_linear_gradients_against_finite_differences(layout):
    from torch.autograd import gradcheck

    from pyg_spherical.nn.graph_encoders import SparseStructure, _CSRLinear

    torch.manual_seed(0)
    x = (torch.rand(9, 6) < 0.4).double() * torch.rand(9, 6, dtype=torch.float64)
    xs = x.to_sparse() if layout == "coo" else x.to_sparse_csr()
    st = SparseStructure.from_sparse(xs)
    v = st.values(xs).clone().requires_grad_(True)
    w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(_CSRLinear.apply(v, w, st), x @ w.t())
    assert gradcheck(lambda v, w: _CSRLinear.apply(v, w, st), (v, w))


def test_csr_beta_warning_is_silenced_only_inside_the_encoder():
    """No import-time global filter: the encoder's own CSR products are quiet, other code keeps
    the warning."""
    import subprocess
    import sys

    code = ("import warnings; import pyg_spherical; "
            "print(any('Sparse CSR' in str(f[1]) for f in warnings.filters))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr[-500:]
    import warnings

    from pyg_spherical.nn.graph_encoders import SparseStructure, _CSRLinear

    x = (torch.rand(9, 6) < 0.4).float().to_sparse()
    st = SparseStructure.from_sparse(x)
    v = st.values(x).clone().requires_grad_(True)
    w = torch.randn(4, 6, requires_grad=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _CSRLinear.apply(v, w, st).sum().backward()
    assert not [m for m in seen if "Sparse CSR" in str(m.message)]


def test_cached_adjacency_equals_uncached_and_resets(graph):
    torch.manual_seed(0)
    a = SphericalGCNEncoder(graph.num_features, 16, 4, cached=True).eval()
    b = SphericalGCNEncoder(graph.num_features, 16, 4).eval()
    b.load_state_dict(a.state_dict())
    for _ in range(2):
        for u, v in zip(a(graph.x, graph.edge_index), b(graph.x, graph.edge_index)):
            torch.testing.assert_close(u, v)
    assert a._cache is not None
    a(graph.x.to_sparse(), graph.edge_index)
    assert a._input_cache is not None
    a.reset_parameters()
    assert a._cache is None and a._input_cache is None


# ------------------------------------------------------------------------------- training
@pytest.mark.parametrize("Enc", [SphericalGCNEncoder, GaussianGCNEncoder])
def test_short_training_lifts_auc_well_above_chance(Enc, weak_graph):
    graph = weak_graph
    torch.manual_seed(0)
    random.seed(0)
    split = link_split(graph, seed=0)
    model = SphericalVGAE(Enc(graph.num_features, 32, 8, dropout=0.0))
    model.eval()
    with torch.no_grad():
        z0 = model.encode(graph.x, split.train_pos_edge_index)
        auc0, _ = model.test(z0, split.test_pos_edge_index, split.test_neg_edge_index)
    auc, ap = auc_after_training(model, graph, split, epochs=150)
    assert auc > 0.88 and ap > 0.85, (auc0, auc, ap)
    assert auc > auc0 + 0.05, (auc0, auc)


def test_minibatches_from_torch_geometric_loaders(graph):
    """Sampled subgraphs (RandomNodeLoader) and batched graphs (DataLoader) train fine."""
    from torch_geometric.loader import DataLoader, RandomNodeLoader

    torch.manual_seed(0)
    random.seed(0)
    model = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 32, 8, dropout=0.1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(3):
        seen = []
        for batch in RandomNodeLoader(graph, num_parts=4, shuffle=True):
            model.train()
            opt.zero_grad()
            z = model.encode(batch.x, batch.edge_index)
            assert z.shape == (batch.num_nodes, 8)
            # a batch is a node-induced subgraph: its features are those of the nodes it holds,
            # and each of its edges is an edge of the graph between two of them
            ids = (batch.x[:, None, :] == graph.x[None, :, :]).all(-1)
            assert batch.num_nodes < graph.num_nodes and ids.any(1).all()
            seen.append(batch.num_nodes)
            loss = model.recon_loss(z, batch.edge_index) + model.kl_loss() / batch.num_nodes
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
        assert len(seen) == 4 and sum(seen) == graph.num_nodes  # a partition of the nodes
    graphs = [sbm_graph(n_per_block=10, seed=s) for s in range(6)]
    for batch in DataLoader(graphs, batch_size=3):
        z = model.encode(batch.x, batch.edge_index)
        loss = model.recon_loss(z, batch.edge_index) + model.kl_loss() / batch.num_nodes
        loss.backward()
        assert z.shape == (batch.num_nodes, 8) and torch.isfinite(loss)


@pytest.mark.slow  # graph capture: ~7 s
def test_torch_compile_traces_the_encoder(graph):
    """torch.compile (graph capture with the no-codegen backend, to stay fast in CI)."""
    torch.manual_seed(0)
    model = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 16, 4))
    compiled = torch.compile(model.encoder, backend="aot_eager")
    model_c = SphericalVGAE(compiled, latent=model.latent)
    model.eval()
    model_c.eval()
    torch.testing.assert_close(model_c.encode(graph.x, graph.edge_index),
                               model.encode(graph.x, graph.edge_index))
    model_c.train()
    z = model_c.encode(graph.x, graph.edge_index)
    loss = model_c.recon_loss(z, graph.edge_index) + model_c.kl_loss() / graph.num_nodes
    loss.backward()
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------- data and split
def test_link_split_protocol(graph):
    sp = link_split(graph, seed=1)
    e_und = graph.edge_index.size(1) // 2
    n_val, n_test = sp.val_pos_edge_index.size(1), sp.test_pos_edge_index.size(1)
    assert n_val == math.floor(0.05 * e_und) and n_test == math.floor(0.10 * e_und)
    assert sp.train_pos_edge_index.size(1) == 2 * (e_und - n_val - n_test)
    assert sp.val_neg_edge_index.size(1) == n_val and sp.test_neg_edge_index.size(1) == n_test
    full = {tuple(e) for e in graph.edge_index.t().tolist()}
    train = {tuple(e) for e in sp.train_pos_edge_index.t().tolist()}
    assert all((b, a) in train for a, b in train)  # both directions
    for pos in (sp.val_pos_edge_index, sp.test_pos_edge_index):
        assert not any((a, b) in train or (b, a) in train for a, b in pos.t().tolist())
    for neg in (sp.val_neg_edge_index, sp.test_neg_edge_index):
        assert not any((a, b) in full for a, b in neg.t().tolist())
    # reproducible, seed-dependent, and the global RNGs are left alone
    state, py_state = torch.get_rng_state(), random.getstate()
    again = link_split(graph, seed=1)
    assert torch.equal(torch.get_rng_state(), state) and random.getstate() == py_state
    assert all(torch.equal(a, b) for a, b in zip(sp, again))
    assert not torch.equal(link_split(graph, seed=2).test_pos_edge_index, sp.test_pos_edge_index)
    with pytest.raises(ValueError):
        link_split(graph, val_ratio=0.6, test_ratio=0.5)


def test_load_planetoid_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown Planetoid"):
        load_planetoid("Karate", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="raw files not found"):
        load_planetoid("Cora", root=tmp_path / "data", cache=tmp_path / "cache", download=False)


# ------------------------------------------------------------------------ Cora integration
def _cora_root():
    """The data root if it holds Cora, else ``None``: the copy packaged with pyg_spherical."""
    return resolve_root() if planetoid_raw_dir("Cora") is not None else None


@pytest.mark.slow
def test_cora_integration(tmp_path):
    root = _cora_root()
    data = load_planetoid("cora", root=root, cache=tmp_path, download=False)
    assert (data.num_nodes, data.num_features, data.edge_index.size(1)) == (2708, 1433, 10556)
    assert set(data.x.unique().tolist()) == {0.0, 1.0}  # raw bag-of-words, not row-normalised
    torch.manual_seed(0)
    random.seed(0)
    split = link_split(data, seed=0)
    data.x = data.x.to_sparse()
    model = SphericalVGAE(SphericalGCNEncoder(data.num_features, 32, 16, dropout=0.0, cached=True))
    auc, ap = auc_after_training(model, data, split, epochs=80)
    assert auc > 0.88 and ap > 0.88, (auc, ap)


# ------------------------------------------------------------- the link-prediction protocol
def test_linkpred_side_by_side_training_is_independent_of_the_other_model(graph):
    """Each run of the Table 4 protocol owns its RNG streams: interleaving two models changes
    nothing, and a run is reproducible from its seed."""
    from pyg_spherical.repro.linkpred import Graph, LinkPredRun

    split = link_split(graph, seed=0)
    g = Graph(graph, split, torch.device("cpu"))
    cfg = {"lr": 0.01, "dropout": 0.2, "dim": 8, "hidden": 16, "epochs": 6}

    def run(latents):
        trs = {k: LinkPredRun(k, cfg, g, torch.device("cpu"), seed=3) for k in latents}
        for epoch in range(cfg["epochs"]):
            for tr in trs.values():
                tr.step()
                tr.evaluate(epoch)
        return {k: (float(tr.last_loss), tr.best["val_auc"], tr.summary()) for k, tr in trs.items()}

    alone_s, alone_n = run(["vmf"]), run(["normal"])
    both = run(["vmf", "normal"])
    for k, alone in (("vmf", alone_s), ("normal", alone_n)):
        assert both[k][:2] == alone[k][:2]
    s, n = both["vmf"][2], both["normal"][2]
    assert s["final_kappa_median"] >= 1.0 and "final_sigma_median" in n
    assert 0.5 < s["test_auc"] <= 1.0 and s["epoch"] < cfg["epochs"]


def test_linkpred_protocol_split_decoders_and_seeding(graph):
    """The 85 / 5 / 10 split of a seed, the decoder of a configuration, and the seeding of
    every stream a run draws from (torch, NumPy, Python's random)."""
    import numpy as np
    from torch_geometric.nn import InnerProductDecoder

    from pyg_spherical import ScaledInnerProductDecoder
    from pyg_spherical.repro.linkpred import make_decoder, make_split, seed_all

    a, b = make_split(graph, 4), link_split(graph, val_ratio=0.05, test_ratio=0.10, seed=4)
    assert torch.equal(a.test_pos_edge_index, b.test_pos_edge_index)
    n_test, n_val = a.test_pos_edge_index.size(1), a.val_pos_edge_index.size(1)
    n_all = n_test + n_val + a.train_pos_edge_index.size(1) // 2
    assert n_test == math.floor(0.10 * n_all) and n_val == math.floor(0.05 * n_all)
    assert isinstance(make_decoder({"decoder": "plain"}), InnerProductDecoder)
    scaled = make_decoder({"decoder": "scaled", "scale_init": 3.0})
    assert isinstance(scaled, ScaledInnerProductDecoder) and float(scaled.scale) == pytest.approx(3.0)
    assert make_decoder({}) is None
    draws = []
    for _ in range(2):
        seed_all(11)
        draws.append((torch.rand(3).tolist(), float(np.random.rand()), random.random()))
    assert draws[0] == draws[1]


# ----------------------------------------------------------------- Power Spherical latent
def test_power_spherical_latent_in_the_vgae(graph):
    """latent="power": from a concentration head of width 1 (the S-VGAE encoder) or from
    GCNLatentEncoder(latent="power"); codes are unit vectors and training lifts the AUC."""
    from pyg_spherical import PowerSpherical
    from pyg_spherical.nn import GCNLatentEncoder, PowerSphericalLatent

    a = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 32, 8), latent="power")
    enc = GCNLatentEncoder(graph.num_features, 32, 8, latent="power")
    assert enc.scale_channels == 1 and enc.conv_loc.bias.abs().max() > 0  # a direction at H = 0
    b = SphericalVGAE(enc)
    for model in (a, b):
        assert isinstance(model.latent, PowerSphericalLatent) and model.latent_kind == "power"
    torch.manual_seed(0)
    random.seed(0)
    split = link_split(graph, seed=0)
    z = b.encode(graph.x, split.train_pos_edge_index)
    assert isinstance(b.posterior, PowerSpherical)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(graph.num_nodes))
    kl = b.kl_loss()
    torch.testing.assert_close(kl.double(), power_kl_scipy(b.posterior.concentration, 8).mean(),
                               rtol=1e-5, atol=0)
    auc, ap = auc_after_training(b, graph, split, epochs=80)
    assert auc > 0.85 and ap > 0.8, (auc, ap)


def test_power_latent_follows_the_latent_contract():
    """PowerSphericalLatent: a spherical kind for resolve_kind and its prior, a (N, d) scale
    head averaged into one concentration (as VMFLatent), validated arguments."""
    from pyg_spherical.nn import PowerSphericalLatent
    from pyg_spherical.nn.latent import LATENTS, resolve_kind
    from pyg_spherical.repro.evaluation import metric_for_latent

    assert resolve_kind("Power") == "power" and LATENTS["power"] is PowerSphericalLatent
    assert PowerSphericalLatent.spherical and metric_for_latent("power") == "geodesic"
    layer = make_latent("power", 4)
    z = layer.prior().sample((7,))
    assert z.shape == (7, 4)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(7))
    loc_raw, scale_raw = torch.randn(5, 4), torch.randn(5, 4)
    q = layer.distribution(loc_raw, scale_raw)
    kappa = torch.nn.functional.softplus(scale_raw.mean(-1)) + 1
    torch.testing.assert_close(q.concentration, kappa)
    with pytest.raises(ValueError, match="scale head of width 1 or 4"):
        layer.distribution(loc_raw, scale_raw[:, :2])
    for k0 in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_concentration"):
            PowerSphericalLatent(4, min_concentration=k0)
    PowerSphericalLatent(4, min_concentration=0.0)  # kappa = 0 is the uniform distribution
    loc_raw[1, 2] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        layer(loc_raw, scale_raw[:, :1])
    # a user's encoder with a d-wide log-std head, the latent built at the first encoding
    model = SphericalVGAE(encoder=lambda x: (x, x), latent="power")
    assert model.latent is None
    x = torch.tensor([[1.0, -1.0], [1.0, 2.0], [2.0, 1.0]])
    model.eval()
    torch.testing.assert_close(model.encode(x), x / x.norm(dim=-1, keepdim=True))
    assert isinstance(model.latent, PowerSphericalLatent)
    torch.testing.assert_close(model.posterior.concentration,
                               torch.nn.functional.softplus(x.mean(-1)) + 1)
    assert torch.isfinite(model.kl_loss()) and model.kl_loss() > 0


# ------------------------------------------------------------- drop-in for PyG users' encoders

class TwoHeadEncoder(torch.nn.Module):
    """A GAT or GraphSAGE encoder returning (mu, logstd), as users write them."""

    def __init__(self, conv, in_channels, out_channels):
        super().__init__()
        self.conv1 = conv(in_channels, 2 * out_channels)
        self.conv_mu = conv(2 * out_channels, out_channels)
        self.conv_logstd = conv(2 * out_channels, out_channels)

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        return self.conv_mu(x, edge_index), self.conv_logstd(x, edge_index)


def _gat(i, o):
    from torch_geometric.nn import GATConv

    return GATConv(i, o)


def _sage(i, o):
    from torch_geometric.nn import SAGEConv

    return SAGEConv(i, o)


@pytest.mark.parametrize("make,signal", [
    pytest.param(lambda f: VariationalGCNEncoder(f, 16), 0.15, id="pyg-example-gcn"),
    pytest.param(lambda f: TwoHeadEncoder(_gat, f, 16), 0.15, id="gat"),
    # an untrained GraphSAGE encoder is at chance even with informative features
    pytest.param(lambda f: TwoHeadEncoder(_sage, f, 16), 0.4, id="sage"),
])
def test_users_encoders_work_unchanged_and_learn(make, signal):
    """An encoder written for PyG's VGAE, with a (N, d) log-std head and no ``out_channels``,
    runs with only the model class swapped, and training lifts it well above the untrained model."""
    graph = sbm_graph(signal=signal)
    torch.manual_seed(0)
    random.seed(0)
    split = link_split(graph, seed=0)
    model = SphericalVGAE(make(graph.num_features))
    assert model.latent is None  # width read at the first encoding
    model.eval()
    with torch.no_grad():
        z0 = model.encode(graph.x, split.train_pos_edge_index)
        auc0, _ = model.test(z0, split.test_pos_edge_index, split.test_neg_edge_index)
    assert isinstance(model.latent, VMFLatent) and model.latent.dim == 16
    assert model.posterior.concentration.shape == (graph.num_nodes,)
    auc, ap = auc_after_training(model, graph, split, epochs=150)
    assert auc > 0.88 and auc > auc0 + 0.05, (auc0, auc, ap)


def test_pyg_vgae_unit_test_lambda_encoder():
    """The encoder of PyG's own VGAE unit test: ``lambda x: (x, x)``."""
    model = SphericalVGAE(encoder=lambda x: (x, x))
    x = torch.tensor([[1.0, -1.0], [1.0, 2.0], [2.0, 1.0]])
    model.eval()
    z = model.encode(x)
    torch.testing.assert_close(z, x / x.norm(dim=-1, keepdim=True))
    # the d-wide head is averaged into one concentration: kappa = softplus(mean(row)) + 1
    kappa = torch.nn.functional.softplus(x.mean(-1)) + 1
    torch.testing.assert_close(model.posterior.concentration, kappa)
    assert torch.isfinite(model.kl_loss()) and model.kl_loss() > 0


def test_scale_head_of_another_width_is_one_clear_error():
    model = SphericalVGAE(encoder=lambda x: (x, x[:, :2]))
    with pytest.raises(ValueError, match="scale head of width 1 or 5"):
        model.encode(torch.randn(4, 5))


def test_encode_num_seeds_restricts_the_latent_to_the_seed_rows(graph):
    model = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 16, 4))
    model.eval()
    with torch.no_grad():
        full = model.encode(graph.x, graph.edge_index)
        kl_full = model.latent.kl()
        seeds = model.encode(graph.x, graph.edge_index, num_seeds=7)
    assert seeds.shape == (7, 4) and model.posterior.batch_shape == (7,)
    torch.testing.assert_close(seeds, full[:7])
    torch.testing.assert_close(model.kl_loss(), kl_full[:7].mean())
