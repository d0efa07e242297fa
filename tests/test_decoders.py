"""Tests for the scaled inner-product decoder and its use as the S-VGAE default."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_vgae import sbm_graph
from torch_geometric.nn import InnerProductDecoder

from pyg_spherical import (
    GaussianGCNEncoder,
    ScaledInnerProductDecoder,
    SphericalGCNEncoder,
    SphericalVGAE,
)
from pyg_spherical.repro.datasets import link_split


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def unit_codes(n=12, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)


def test_scores_are_the_scaled_dot_product_and_forward_all_agrees():
    z = unit_codes()
    dec = ScaledInnerProductDecoder(scale=3.0, bias=True).double()
    with torch.no_grad():
        dec.bias.fill_(-0.5)
    ei = torch.tensor([[0, 3, 7, 11], [1, 3, 2, 0]])
    expected = 3.0 * (z[ei[0]] * z[ei[1]]).sum(-1) - 0.5  # by hand
    torch.testing.assert_close(dec(z, ei, sigmoid=False), expected)
    torch.testing.assert_close(dec(z, ei), torch.sigmoid(expected))
    dense = dec.forward_all(z)
    assert dense.shape == (12, 12)
    torch.testing.assert_close(dense[ei[0], ei[1]], dec(z, ei))
    # scale 1 without bias is PyG's InnerProductDecoder
    plain = ScaledInnerProductDecoder(scale=1.0, learn_scale=False).double()
    torch.testing.assert_close(plain(z, ei), InnerProductDecoder()(z, ei))


def test_scale_gets_a_gradient_and_moves():
    z = unit_codes(d=4).requires_grad_(False)
    dec = ScaledInnerProductDecoder(scale=1.0).double()
    pos = torch.tensor([[0, 1, 2], [1, 2, 0]])
    # codes of positive pairs agree: a larger scale lowers their loss, so s must grow
    z = torch.cat([z[:1].expand(3, -1), z[3:]])
    opt = torch.optim.Adam(dec.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        loss = -F.logsigmoid(dec(z, pos, sigmoid=False)).mean()
        loss.backward()
        assert dec.log_scale.grad is not None and dec.log_scale.grad < 0
        opt.step()
    assert float(dec.scale) > 2.0
    fixed = ScaledInnerProductDecoder(scale=2.0, learn_scale=False)
    assert not fixed.log_scale.requires_grad


def test_scale_and_bias_survive_a_state_dict_round_trip():
    a = ScaledInnerProductDecoder(scale=2.0, bias=True)
    with torch.no_grad():
        a.log_scale.add_(0.7)
        a.bias.fill_(0.3)
    b = ScaledInnerProductDecoder(scale=9.0, bias=True)
    b.load_state_dict(a.state_dict())
    assert float(b.scale) == pytest.approx(2.0 * math.exp(0.7), rel=1e-6)
    assert float(b.bias) == pytest.approx(0.3)
    b.reset_parameters()
    assert float(b.scale) == pytest.approx(9.0, rel=1e-6) and float(b.bias) == 0.0


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_scale_is_a_clear_error(scale):
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        ScaledInnerProductDecoder(scale=scale)


def test_float64_codes_stay_float64():
    z = unit_codes(dtype=torch.float64)
    out = ScaledInnerProductDecoder()(z, torch.tensor([[0], [1]]))
    assert out.dtype == torch.float64


def test_default_decoder_follows_the_latent():
    s = SphericalVGAE(SphericalGCNEncoder(8, 16, 4))
    n = SphericalVGAE(GaussianGCNEncoder(8, 16, 4))
    assert isinstance(s.decoder, ScaledInnerProductDecoder)
    assert type(n.decoder) is InnerProductDecoder
    literal = SphericalVGAE(SphericalGCNEncoder(8, 16, 4), decoder=InnerProductDecoder())
    assert type(literal.decoder) is InnerProductDecoder
    # the scale is a model parameter: the optimiser and the state dict see it
    assert any(name == "decoder.log_scale" for name, _ in s.named_parameters())


def test_scaled_decoder_beats_the_unit_sphere_floor_on_positive_edges():
    """With unit codes, the plain decoder's positive-edge loss is at least -log sigmoid(1) per
    edge; a short run with the learnable scale goes below it, the plain one cannot."""
    graph = sbm_graph()
    split = link_split(graph, seed=0)
    floor = -math.log(torch.sigmoid(torch.tensor(1.0)).item())
    pos_loss = {}
    for name, dec in (("scaled", None), ("plain", InnerProductDecoder())):
        torch.manual_seed(0)
        random.seed(0)
        model = SphericalVGAE(SphericalGCNEncoder(graph.num_features, 32, 8), decoder=dec)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(100):
            model.train()
            opt.zero_grad()
            z = model.encode(graph.x, split.train_pos_edge_index)
            loss = model.recon_loss(z, split.train_pos_edge_index) + model.kl_loss() / graph.num_nodes
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            z = model.encode(graph.x, split.train_pos_edge_index)
            logits = model.decoder(z, split.train_pos_edge_index, sigmoid=False)
            pos_loss[name] = float(-F.logsigmoid(logits).mean())
    assert pos_loss["plain"] >= floor - 1e-6
    assert pos_loss["scaled"] < 0.5 * floor, pos_loss


def test_recon_loss_on_logits_matches_pyg_formula():
    """``recon_loss`` uses logsigmoid on logits; on moderate logits it equals PyG's
    ``-log(sigmoid + eps)`` form, and it stays finite and differentiable where the sigmoid
    saturates (PyG's form returns a zero gradient there)."""
    z = unit_codes(n=6, d=3)
    pos = torch.tensor([[0, 1], [1, 2]])
    neg = torch.tensor([[3, 4], [5, 0]])
    model = SphericalVGAE(lambda x: (x, x[:, :1]), decoder=ScaledInnerProductDecoder(2.0)).double()
    dec = model.decoder
    ref = (-torch.log(dec(z, pos) + 1e-15).mean() - torch.log(1 - dec(z, neg) + 1e-15).mean())
    torch.testing.assert_close(model.recon_loss(z, pos, neg), ref)
    with torch.no_grad():
        dec.log_scale.fill_(math.log(200.0))
    far = torch.cat([z[:1], -z[:1], z[2:]])  # a positive pair pointing in opposite directions
    loss = model.recon_loss(far, torch.tensor([[0], [1]]), neg)
    loss.backward()
    assert torch.isfinite(loss) and loss > 150 and dec.log_scale.grad.abs() > 1


@pytest.mark.parametrize("scale", [1e39, 1e-320])
def test_scales_outside_the_parameter_dtype_are_refused(scale):
    """``exp(log s)`` in float32 is inf at 1e39 (NaN logits) and 0 at 1e-320."""
    with pytest.raises(ValueError, match="float32"):
        ScaledInnerProductDecoder(scale=scale)


@pytest.mark.parametrize("scale", [np.float32(2.0), torch.tensor(2.0), 2])
def test_any_real_scalar_is_a_scale(scale):
    assert float(ScaledInnerProductDecoder(scale=scale).scale) == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("scale", [True, "2", torch.ones(2)])
def test_a_bool_or_non_scalar_scale_is_refused(scale):
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        ScaledInnerProductDecoder(scale=scale)


def test_half_codes_beyond_the_half_range_give_the_float32_logits():
    """``s = 1e5`` exceeds float16's 65504: the logits are computed in the parameter's dtype,
    finite and equal to ``s * z_i^T z_j`` evaluated in float64."""
    z = unit_codes(dtype=torch.float64)
    ei = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    dec = ScaledInnerProductDecoder(scale=1e5)
    logits = dec(z.half(), ei, sigmoid=False)
    assert torch.isfinite(logits).all()
    expected = 1e5 * (z.half().double()[ei[0]] * z.half().double()[ei[1]]).sum(-1)
    torch.testing.assert_close(logits.double(), expected, rtol=1e-3, atol=1e-2)
    assert torch.isfinite(dec.forward_all(z.half(), sigmoid=False)).all()


def test_test_ranks_the_logits_not_saturated_probabilities():
    """At scale 40 the float32 sigmoid of most positive pairs is exactly 1.0; the AUC / AP must
    still be those of the dot products (a monotone map of the logits), from scikit-learn."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(600, 8, generator=g), dim=-1)
    # positives: node i and a noisy copy of it, node 300 + i; negatives: random pairs
    z[300:] = F.normalize(z[:300] + 0.5 * torch.randn(300, 8, generator=g), dim=-1)
    pos = torch.stack([torch.arange(300), torch.arange(300, 600)])
    neg = torch.randint(0, 600, (2, 300), generator=g)
    model = SphericalVGAE(SphericalGCNEncoder(3, 4, 8), decoder=ScaledInnerProductDecoder(40.0))
    p = (z[pos[0]] * z[pos[1]]).sum(-1)
    assert (torch.sigmoid(40 * p) == 1.0).float().mean() > 0.5  # the saturation is real
    dots = torch.cat([p, (z[neg[0]] * z[neg[1]]).sum(-1)]).double().numpy()
    y = np.r_[np.ones(300), np.zeros(300)]
    auc, ap = model.test(z, pos, neg)
    assert auc == pytest.approx(roc_auc_score(y, dots), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(y, dots), abs=1e-12)
