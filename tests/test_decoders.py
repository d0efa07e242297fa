"""Tests for the scaled inner-product decoder and its use as the S-VGAE default."""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F
from test_vgae import sbm_graph
from torch_geometric.nn import InnerProductDecoder

from pyg_spherical import GCNEncoder, ScaledInnerProductDecoder, SphericalGCNEncoder, SphericalVGAE
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
    n = SphericalVGAE(GCNEncoder(8, 16, 4))
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
