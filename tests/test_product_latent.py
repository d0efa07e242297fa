"""A latent that is a product of spheres: ``make_latent("vmf" | "power", dim, factors=k)``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import kl_divergence

from pyg_spherical import make_latent
from pyg_spherical.distributions import HypersphericalUniform, ProductOfSpheres, VonMisesFisher
from pyg_spherical.m1m2 import M1M2
from pyg_spherical.vae import VAE


def kl_vmf_s2(kappa):
    """Closed form KL(vMF(mu, kappa) || U(S^2)) = kappa coth(kappa) - 1 + log(kappa / sinh kappa)."""
    k = np.asarray(kappa, dtype=np.float64)
    log_sinh = k + np.log1p(-np.exp(-2 * k)) - math.log(2)
    return k / np.tanh(k) - 1 + np.log(k) - log_sinh


def raw(n=6, k=4, m=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k * m, generator=g, dtype=torch.float64),
            torch.randn(n, k, generator=g, dtype=torch.float64) * 2)


def test_kl_is_the_sum_of_the_factors_closed_forms():
    loc_raw, scale_raw = raw()
    lat = make_latent("vmf", 12, factors=4)
    q = lat.distribution(loc_raw, scale_raw)
    assert isinstance(q, ProductOfSpheres) and q.event_shape == (12,) and q.batch_shape == (6,)
    kappa = torch.nn.functional.softplus(scale_raw) + 1  # the layer's map, per factor
    expected = kl_vmf_s2(kappa.numpy()).sum(-1)
    np.testing.assert_allclose(lat.kl(q).numpy(), expected, rtol=1e-10)
    torch.testing.assert_close(q.concentration, kappa)


def test_log_prob_is_the_sum_of_scipy_factor_densities():
    loc_raw, scale_raw = raw(n=3)
    q = make_latent("vmf", 12, factors=4).distribution(loc_raw, scale_raw)
    z = q.sample((5,))
    mu = q.loc.unflatten(-1, (4, 3)).numpy()
    kappa = q.concentration.numpy()
    zz = z.unflatten(-1, (4, 3)).numpy()
    expected = np.zeros((5, 3))
    for i in range(3):
        for j in range(4):
            expected[:, i] += stats.vonmises_fisher(mu[i, j], kappa[i, j]).logpdf(zz[:, i, j])
    np.testing.assert_allclose(q.log_prob(z).numpy(), expected, rtol=1e-9)


def test_samples_lie_on_each_factor_and_have_the_factor_means():
    """Monte Carlo: ``E[z_j] = A_3(kappa_j) mu_j`` with ``A_3(k) = coth k - 1/k``, per factor."""
    torch.manual_seed(0)
    loc_raw, scale_raw = raw(n=2, k=3)
    q = make_latent("vmf", 9, factors=3).distribution(loc_raw, scale_raw)
    z = q.rsample((40000,)).unflatten(-1, (3, 3))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(z.shape[:-1], dtype=z.dtype))
    k = q.concentration
    a3 = 1 / torch.tanh(k) - 1 / k
    expected = a3[..., None] * q.loc.unflatten(-1, (3, 3))
    se = z.std(0) / math.sqrt(z.shape[0])
    assert ((z.mean(0) - expected).abs() < 4.5 * se + 1e-12).all()
    assert q.support.check(q.sample()).all()


def test_each_factor_has_its_own_concentration_gradient():
    """d KL / d scale_raw[j] is the derivative of factor j's closed-form KL alone."""
    loc_raw, scale_raw = raw(n=1, k=3)
    scale_raw.requires_grad_(True)
    lat = make_latent("vmf", 9, factors=3)
    lat.kl(lat.distribution(loc_raw, scale_raw)).sum().backward()
    h = 1e-6
    for j in range(3):
        up, down = scale_raw.detach().clone(), scale_raw.detach().clone()
        up[0, j] += h
        down[0, j] -= h
        f = [kl_vmf_s2((torch.nn.functional.softplus(s) + 1).numpy()).sum() for s in (up, down)]
        assert scale_raw.grad[0, j].item() == pytest.approx((f[0] - f[1]) / (2 * h), rel=1e-5)


def test_prior_kl_and_uniform_samples():
    lat = make_latent("power", 8, factors=4)
    p = lat.prior(dtype=torch.float64)
    assert isinstance(p.base, HypersphericalUniform) and p.batch_shape == ()
    torch.testing.assert_close(kl_divergence(p, p), torch.zeros((), dtype=torch.float64))
    torch.manual_seed(0)
    z = lat.prior().sample((20000,)).unflatten(-1, (4, 2))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(20000, 4))
    se = 1 / math.sqrt(2 * 20000)  # each coordinate of a uniform point on S^1 has variance 1/2
    assert z.mean(0).abs().max() < 4.5 * se


def test_a_dim_wide_head_is_averaged_per_factor():
    lat = make_latent("vmf", 6, factors=2)
    loc_raw = torch.randn(4, 6, dtype=torch.float64)
    head = torch.randn(4, 6, dtype=torch.float64)
    q = lat.distribution(loc_raw, head)
    expected = torch.nn.functional.softplus(head.unflatten(-1, (2, 3)).mean(-1)) + 1
    torch.testing.assert_close(q.concentration, expected)


@pytest.mark.parametrize("kwargs,message", [
    ({"dim": 10, "factors": 3}, "dividing dim"),
    ({"dim": 6, "factors": 6}, "at least 2 coordinates"),
    ({"dim": 6, "factors": 0}, "dividing dim"),
])
def test_bad_factors_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_latent("vmf", **kwargs)


def test_expand_and_a_wrong_base_shape():
    q = ProductOfSpheres(VonMisesFisher(torch.eye(3)[:2], torch.ones(2)))
    e = q.expand((5,))
    assert e.batch_shape == (5,) and e.sample().shape == (5, 6)
    with pytest.raises(ValueError, match="batch shape"):
        ProductOfSpheres(VonMisesFisher(torch.eye(3)[0], torch.tensor(1.0)))


@pytest.mark.parametrize("latent", ["vmf", "power"])
def test_models_train_with_a_product_latent(latent):
    torch.manual_seed(0)
    x = (torch.rand(64, 784) < 0.3).float()
    model = VAE(latent=latent, dim=6, factors=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss, _, _ = model.loss(x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 50, losses[::10]
    m = M1M2(z1_latent="vmf", z1_dim=4, z2_latent=latent, z2_dim=6, z2_options={"factors": 3})
    assert m.latent2.factors == 3 and m.latent1.factors == 1


def test_log_prob_of_a_value_of_the_wrong_width_is_one_clear_error():
    base = VonMisesFisher(torch.eye(3)[:2], torch.ones(2))
    q = ProductOfSpheres(base, validate_args=False)  # as the latent layers build it
    with pytest.raises(ValueError, match="last dimension 5, expected 6 \\(2 factors of 3\\)"):
        q.log_prob(torch.randn(4, 5))
    with pytest.raises(ValueError, match="event_shape"):  # torch's check, when validating
        ProductOfSpheres(base, validate_args=True).log_prob(torch.randn(4, 5))


def test_a_wrong_scale_head_width_names_the_widths_accepted():
    layer = make_latent("vmf", 6, factors=3)
    with pytest.raises(ValueError, match=r"width 3 \(one per factor\) or 6") as e:
        layer(torch.randn(4, 6), torch.randn(4, 1))
    assert "1 or dim" not in str(e.value)
    with pytest.raises(ValueError, match=r"width 1 or 6"):
        make_latent("vmf", 6)(torch.randn(4, 6), torch.randn(4, 2))
