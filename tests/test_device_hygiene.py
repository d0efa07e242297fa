"""Every public path keeps its tensors on its inputs' device.

The default device is set to ``meta`` while the paths run on CPU inputs (and CPU models, built
before): a tensor made without ``device=`` then lands on ``meta``, and the first operation that
mixes it with a CPU tensor raises (or its result is not on the CPU, which the checks below
catch). Both code paths are run: the CPU's, and the one an accelerator takes (no host reads to
skip work; see :func:`pyg_spherical._utils.host_reads_are_free`).
"""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import kl_divergence
from torch_geometric.data import Data
from torch_geometric.loader import LinkNeighborLoader
from torch_geometric.sampler import NodeSamplerInput

from pyg_spherical import (
    GaussianGCNEncoder,
    HypersphericalUniform,
    PowerSpherical,
    SphericalGCNEncoder,
    SphericalVGAE,
    VonMisesFisher,
    make_latent,
)
from pyg_spherical._utils import accelerator_path
from pyg_spherical.distributions import ProductOfSpheres
from pyg_spherical.m1m2 import M1M2
from pyg_spherical.minibatch import RandomBatchSampler, link_batch_loss, shard_edges
from pyg_spherical.sampling import TorchNeighborSampler
from pyg_spherical.vae import VAE

CPU = torch.device("cpu")


PATHS = ("cpu path", "accelerator path")


@pytest.fixture(params=PATHS)
def path(request):
    """The code path: the CPU's or an accelerator's (see the module docstring). The models below
    run the CPU's only: their differences lie in the distributions, run on both."""
    return request.param


@contextlib.contextmanager
def meta_default(path="cpu path"):
    """The default device is ``meta`` inside the block (restored afterwards), and the code runs
    the CPU's or the accelerator's path."""
    previous = torch.empty(0).device  # torch.get_default_device() needs torch 2.3
    torch.set_default_device("meta")
    try:
        with accelerator_path() if path == "accelerator path" else contextlib.nullcontext():
            yield
    finally:
        torch.set_default_device(None if previous == CPU else previous)


def on_cpu(*tensors):
    for t in tensors:
        assert t.device == CPU, f"a result on {t.device}"
        assert torch.isfinite(t).all()


def unit(n, m, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return F.normalize(torch.randn(n, m, generator=g, device="cpu"), dim=-1)


def concentrations(n, seed=1):
    g = torch.Generator(device="cpu").manual_seed(seed)
    # over the Bessel functions' series (<= 2) and asymptotic ranges
    return torch.exp(torch.empty(n, device="cpu").uniform_(-3, 8, generator=g))


def test_the_default_device_is_meta_inside(path):
    with meta_default(path):
        assert torch.empty(1).device.type == "meta"  # the premise of every test here


# 2 x 8192 draws take the CPU's large-batch branches (one first proposal, per-node quadrature,
# its own Gamma sampler); m = 3 the exact sampler on S^2
@pytest.mark.parametrize("path,n,m,dtype", [
    *((p, 7, m, dtype) for p in PATHS for m, dtype in ((5, torch.float32), (3, torch.float64))),
    ("cpu path", 8192, 10, torch.float32)])
@pytest.mark.parametrize("family", [VonMisesFisher, PowerSpherical])
def test_distributions(path, family, n, m, dtype):
    with meta_default(path):
        loc = unit(n, m).to(dtype).requires_grad_()
        kappa = concentrations(n).to(dtype).requires_grad_()
        q = family(loc, kappa)  # validated (the default)
        z = q.rsample((2,))
        lp, h = q.log_prob(z.detach()), q.entropy()
        kl = kl_divergence(q, HypersphericalUniform(m, device=CPU, dtype=dtype))
        parts = [z, lp, h, kl, q.mean, q.variance]
        if family is VonMisesFisher:
            other = VonMisesFisher(unit(n, m, seed=2).to(dtype), concentrations(n, seed=3).to(dtype))
            parts += [kl_divergence(q, other), q.rejection_attempts().to(dtype),
                      q.mean_resultant_length]
        sum(p.sum() for p in parts).backward()
        on_cpu(*parts, loc.grad, kappa.grad)


@pytest.mark.parametrize("family", [VonMisesFisher, PowerSpherical])
def test_product_of_spheres(path, family):
    with meta_default(path):
        loc = unit(12, 4).reshape(4, 3, 4).requires_grad_()
        kappa = concentrations(12).reshape(4, 3).requires_grad_()
        q = ProductOfSpheres(family(loc, kappa))
        p = ProductOfSpheres(HypersphericalUniform(4, (3,), device=CPU))
        z = q.rsample()
        parts = [z, q.log_prob(z.detach()), q.entropy(), kl_divergence(q, p), p.sample((2,))]
        sum(t.sum() for t in parts).backward()
        on_cpu(*parts, loc.grad, kappa.grad)


def test_uniform(path):
    with meta_default(path):
        assert HypersphericalUniform(3).sample().device.type == "meta"  # no device: the default
        u = HypersphericalUniform(5, (2,), device=CPU)
        z = u.sample((3,))
        on_cpu(z, u.log_prob(z), u.entropy(), u.mean, kl_divergence(u, u))


@pytest.mark.parametrize("kind,kwargs", [("vmf", {}), ("power", {}), ("normal", {}),
                                         ("vmf", {"factors": 2})])
def test_latent_layers(path, kind, kwargs):
    with meta_default(path):
        layer = make_latent(kind, 4, **kwargs)
        loc_raw = torch.randn(6, 4, device=CPU, requires_grad=True)
        scale_raw = torch.randn(6, layer.scale_dim, device=CPU, requires_grad=True)
        z = layer(loc_raw, scale_raw)
        kl = layer.kl()
        (z.sum() + kl.sum()).backward()
        layer.eval()
        point = layer(loc_raw, scale_raw)
        prior = layer.prior(device=CPU).sample((3,))
        on_cpu(z, kl, point, prior, loc_raw.grad, scale_raw.grad)


def two_cliques(n=12):
    """Two dense blocks joined by one edge, with features."""
    half = n // 2
    a = torch.arange(half, device=CPU)
    blocks = [torch.cartesian_prod(a, a) + o for o in (0, half)]
    ei = torch.cat(blocks + [torch.tensor([[0, half], [half, 0]], device=CPU)])
    ei = ei[ei[:, 0] != ei[:, 1]].t().contiguous()
    x = torch.rand(n, 8, generator=torch.Generator(device="cpu").manual_seed(0), device=CPU)
    return Data(x=x, edge_index=ei, num_nodes=n)


@pytest.mark.parametrize("encoder", [SphericalGCNEncoder, GaussianGCNEncoder])
def test_vgae(encoder):
    data = two_cliques()
    model = SphericalVGAE(encoder(8, 16, 4))  # built on the CPU, before the meta default
    with meta_default():
        x, ei = data.x, data.edge_index
        for neg in (torch.tensor([[0, 1], [7, 8]], device=CPU), None):  # given; PyG's sampling
            z = model.encode(x, ei)
            loss = model.recon_loss(z, ei, neg) + model.kl_loss() / data.num_nodes
            loss.backward()
            on_cpu(z, loss)
        model.eval()
        z = model.encode(x, ei)
        model.test(z, ei, torch.tensor([[0, 1], [7, 8]], device=CPU))  # AUC and AP run
        on_cpu(z, *(p.grad for p in model.parameters() if p.grad is not None))


@pytest.mark.parametrize("latent", ["vmf", "power", "normal"])
def test_vae(latent):
    model = VAE(latent, 3, in_features=20, encoder_hidden=(16,), decoder_hidden=(16,))
    with meta_default():
        x = torch.bernoulli(torch.full((5, 20), 0.5, device=CPU))
        loss, rec, kl = model.loss(x, beta=0.5)
        loss.backward()
        ll = model.log_likelihood(x[:2], num_samples=7)
        on_cpu(loss, rec, kl, ll, model.sample(2, probs=True),
               *(p.grad for p in model.parameters()))


@pytest.mark.parametrize("z1,z2", [("vmf", "normal"), ("normal", "power")])
def test_m1m2(z1, z2):
    model = M1M2(z1_latent=z1, z1_dim=4, z2_latent=z2, z2_dim=3, num_classes=3,
                 in_features=20, hidden=16)
    with meta_default():
        x = torch.bernoulli(torch.full((6, 20), 0.5, device=CPU))
        y = torch.arange(3, device=CPU).repeat(2)
        loss, metrics = model.loss(x[:3], y[:3], x[3:], alpha=0.5)
        loss.backward()
        on_cpu(loss, *metrics.values(), model.predict(x).float(), model.accuracy(x, y),
               *(p.grad for p in model.parameters() if p.grad is not None))


@pytest.mark.parametrize("latent", ["vmf", "normal"])
def test_link_batch_loss(latent):
    data = two_cliques(16)
    model = SphericalVGAE(SphericalGCNEncoder(8, 16, 4) if latent == "vmf" else
                          GaussianGCNEncoder(8, 16, 4))
    sampler = TorchNeighborSampler(data, [3, 2])
    # PyG's link loader and torch's DataLoader make index tensors on the default device, so
    # the batches are drawn before; the neighbour sampler itself runs inside, below
    loader = LinkNeighborLoader(data, [3, 2], edge_label_index=data.edge_index,
                                neg_sampling="binary", neighbor_sampler=sampler,
                                batch_sampler=RandomBatchSampler(data.num_edges, 8, False))
    torch.manual_seed(0)
    batches = list(loader)
    with meta_default():
        out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(5, device=CPU)))
        assert out.node.device == CPU and out.row.device == CPU
        order = list(RandomBatchSampler(data.num_edges, 8, drop_last=False))
        losses = []
        for batch in batches:
            loss = link_batch_loss(model, batch, data.num_nodes)
            loss.backward()
            losses.append(loss.detach())
        edges = shard_edges(data.edge_index, 1, 2, seed=0)
        on_cpu(*losses, edges, *(p.grad for p in model.parameters() if p.grad is not None))
        assert sorted(i for b in order for i in b) == list(range(data.num_edges))
