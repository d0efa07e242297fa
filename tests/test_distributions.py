"""VonMisesFisher / HypersphericalUniform against independent references.

References: scipy.stats.vonmises_fisher (log-density, entropy, samples), mpmath (Bessel
functions, quadrature), closed forms (mean resultant length, surface areas, the S^2 inverse
CDF, E[exp(a^T z)] = C_m(kappa) / C_m(||kappa mu + a||)) and Monte Carlo. Monte Carlo checks use
fixed seeds and tolerances of 4 standard errors (gradients: 3.5);
two-sample KS tests use p > 1e-3 per case.
"""
import contextlib
import math
import shutil

import mpmath as mp
import numpy as np
import pytest
import scipy.stats as st
import torch
from torch.distributions import kl_divergence

from pyg_spherical import HypersphericalUniform, VonMisesFisher
from pyg_spherical._utils import accelerator_path
from pyg_spherical.distributions import _sampling, log_sphere_area, sphere
from pyg_spherical.distributions._sampling import dtheta_dkappa, dw_dkappa, sample_theta, sample_w
from pyg_spherical.repro.host_syncs import HostSyncCounter
from pyg_spherical.special import iv_ratio

mp.mp.dps = 40
F64 = torch.float64


def unit(m, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(m, generator=g, dtype=dtype), dim=-1)


def mp_A(m, k):
    k = mp.mpf(k)
    return mp.besseli(m / 2, k, maxterms=10**6) / mp.besseli(m / 2 - 1, k, maxterms=10**6)


def mp_kl(m, k):
    """eq. 5 in mpmath: k A + log C_m(k) + log |S^{m-1}|."""
    k = mp.mpf(k)
    v = mp.mpf(m) / 2 - 1
    log_c = v * mp.log(k) - (mp.mpf(m) / 2) * mp.log(2 * mp.pi) - mp.log(
        mp.besseli(v, k, maxterms=10**6))
    log_s = mp.log(2) + (mp.mpf(m) / 2) * mp.log(mp.pi) - mp.loggamma(mp.mpf(m) / 2)
    return k * mp_A(m, k) + log_c + log_s


def kl_uniform(q):
    """The registered ``KL(q || U(S^{m-1}))``."""
    return kl_divergence(q, HypersphericalUniform(q.event_shape[0]))


# ------------------------------------------------------------------------------------------
# densities
@pytest.mark.parametrize("m", [2, 3, 5, 10, 100])
@pytest.mark.parametrize("kappa", [0.01, 1.0, 10.0, 300.0])
def test_log_prob_and_entropy_match_scipy(m, kappa):
    mu = unit(m, seed=m)
    q = VonMisesFisher(mu, torch.tensor(kappa, dtype=F64))
    ref = st.vonmises_fisher(mu.numpy(), kappa)
    z = torch.as_tensor(ref.rvs(50, random_state=1))
    np.testing.assert_allclose(q.log_prob(z).numpy(), ref.logpdf(z.numpy()), rtol=1e-10,
                               atol=1e-10 * kappa)
    assert math.isclose(q.entropy().item(), ref.entropy(), rel_tol=1e-10, abs_tol=1e-10)
    torch.testing.assert_close(q.mean, iv_ratio(m / 2, torch.tensor(kappa, dtype=F64)) * mu)


@pytest.mark.parametrize("dtype,rtol", [(F64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("m", [2, 3, 10, 100, 1000])
def test_kl_uniform_matches_eq5_over_the_whole_range(m, dtype, rtol, device):
    kappas = [1e-6, 1e-3, 0.5, 1.0, 2.0, 2.5, 30.0, 1e3, 1e6]
    k = torch.tensor(kappas, dtype=dtype, device=device, requires_grad=True)
    q = VonMisesFisher(unit(m, dtype=dtype).to(device).expand(len(kappas), m), k)
    kl = kl_divergence(q, HypersphericalUniform(m, dtype=dtype, device=device))
    (g,) = torch.autograd.grad(kl.sum(), k)
    assert kl.dtype == dtype and torch.isfinite(kl).all() and torch.isfinite(g).all()
    for i, kk in enumerate(kappas):
        ref = mp_kl(m, kk)
        dref = mp.diff(lambda t: mp_kl(m, t), mp.mpf(kk))  # = kappa A_m'(kappa), eq. 19-21
        assert math.isclose(kl[i].item(), float(ref), rel_tol=rtol, abs_tol=1e-30), (m, kk)
        assert math.isclose(g[i].item(), float(dref), rel_tol=50 * rtol), (m, kk)


def test_entropy_and_log_normalizer_consistency_float32_extremes():
    for m in (2, 3, 64, 4096):
        k = torch.tensor([1e-6, 1.0, 1e6])
        q = VonMisesFisher(unit(m, dtype=torch.float32).expand(3, m), k)
        h = q.entropy()
        assert torch.isfinite(h).all() and torch.isfinite(q.log_normalizer()).all()
        ref = [log_sphere_area(m) - float(mp_kl(m, kk)) for kk in k.tolist()]
        np.testing.assert_allclose(h.numpy(), ref, rtol=1e-5, atol=1e-4)


def test_kl_vmf_vmf_closed_form_vs_monte_carlo():
    torch.manual_seed(0)
    m = 5
    p = VonMisesFisher(unit(m, 1), torch.tensor(4.0, dtype=F64))
    q = VonMisesFisher(unit(m, 2), torch.tensor(7.0, dtype=F64))
    kl = kl_divergence(p, q)
    z = p.sample((200_000,))
    d = p.log_prob(z) - q.log_prob(z)
    se = d.std() / math.sqrt(len(d))
    assert abs(kl - d.mean()) < 4 * se
    assert kl_divergence(p, p).abs().item() < 1e-12
    # gradients are finite and the KL grows as q concentrates away from p
    kq = torch.tensor([7.0, 8.0], dtype=F64, requires_grad=True)
    kl2 = kl_divergence(VonMisesFisher(p.loc.expand(2, m), p.concentration.expand(2)),
                        VonMisesFisher(q.loc.expand(2, m), kq))
    kl2.sum().backward()
    assert torch.isfinite(kq.grad).all() and kl2[1] > kl2[0]


# ------------------------------------------------------------------------------------------
# sampling
@pytest.mark.parametrize("m,kappa", [(2, 0.7), (2, 50.0), (3, 3.0), (4, 1.0), (10, 20.0),
                                     (64, 200.0), (100, 5.0)])
def test_omega_two_sample_ks_against_scipy(m, kappa, device):
    torch.manual_seed(m)
    mu = unit(m, seed=3)
    z = VonMisesFisher(mu.to(device), torch.tensor(kappa, dtype=F64, device=device))
    z = z.sample((20_000,)).cpu()
    ref = st.vonmises_fisher(mu.numpy(), kappa).rvs(20_000, random_state=m)
    assert st.ks_2samp((z @ mu).numpy(), ref @ mu.numpy()).pvalue > 1e-3


def test_s2_sampler_matches_exact_cdf():
    torch.manual_seed(1)
    for kappa in (1e-3, 1.0, 40.0):
        w, attempts = sample_w(torch.full((20_000,), kappa, dtype=F64), 3)
        omega = (1 - w).numpy()
        cdf = lambda o, k=kappa: np.expm1(k * (o + 1)) / np.expm1(2 * k)
        assert st.kstest(omega, cdf).pvalue > 1e-3
        assert (attempts == 1).all()


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("m", [2, 3, 7, 100, 4096])
@pytest.mark.parametrize("kappa", [1e-6, 1.0, 1e3, 1e6])
def test_mean_resultant_length_over_the_range(m, kappa, dtype, device):
    """E[1 - mu^T z] = 1 - A_m(kappa) for every m in [2, 4096], kappa in [1e-6, 1e6]."""
    torch.manual_seed(0)
    n = 4000 if m == 4096 else 20_000
    mu = unit(m, seed=1, dtype=dtype).to(device)
    z = VonMisesFisher(mu, torch.tensor(kappa, dtype=dtype, device=device)).sample((n,))
    assert z.dtype == dtype and z.shape == (n, m)
    norm_err = (torch.linalg.vector_norm(z, dim=-1) - 1).abs().max().item()
    assert norm_err < 50 * torch.finfo(dtype).eps
    w = 0.5 * ((z - mu) ** 2).sum(-1).double()  # 1 - mu^T z without cancellation
    ref = float(1 - mp_A(m, kappa))
    se = w.std().item() / math.sqrt(n)
    rounding = 20 * torch.finfo(dtype).eps * max(ref, 1e-30) + (1e-6 if dtype == torch.float32 else 0)
    assert abs(w.mean().item() - ref) < 4 * se + rounding, (w.mean().item(), ref, se)


def test_tangent_direction_is_uniform():
    """Cov[z] = (A / k) I + (1 - A^2 - m A / k) mu mu^T (the vMF covariance)."""
    torch.manual_seed(3)
    m, kappa, n = 6, 4.0, 200_000
    mu = unit(m, 5)
    q = VonMisesFisher(mu, torch.tensor(kappa, dtype=F64))
    z = q.sample((n,))
    A = iv_ratio(m / 2, torch.tensor(kappa, dtype=F64))
    cov_ref = (A / kappa) * torch.eye(m, dtype=F64) + (1 - A**2 - m * A / kappa) * torch.outer(mu, mu)
    zc = z - q.mean
    cov = zc.T @ zc / n
    se = ((zc.unsqueeze(-1) * zc.unsqueeze(-2)).std(0) / math.sqrt(n))
    assert ((cov - cov_ref).abs() < 4.5 * se + 1e-12).all()
    torch.testing.assert_close(q.variance, torch.diagonal(cov_ref))


@pytest.mark.parametrize("m", [2, 3, 8])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_loc_at_plus_minus_e1(m, sign):
    torch.manual_seed(0)
    mu = torch.zeros(m, dtype=F64)
    mu[0] = sign
    mu.requires_grad_(True)
    k = torch.tensor(3.0, dtype=F64, requires_grad=True)
    q = VonMisesFisher(mu, k)
    z = q.rsample((20_000,))
    zm = z.mean(0).detach()
    se = z.detach().std(0) / math.sqrt(len(z))
    assert ((zm - q.mean.detach()).abs() < 4 * se).all()
    z.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(k.grad).all()


# ------------------------------------------------------------------------------------------
# gradients
def _mc_grad(m, kappa, n, f, seed=0, device="cpu"):
    torch.manual_seed(seed)
    mu = unit(m, 7).to(device)
    k = torch.full((n,), kappa, dtype=F64, device=device, requires_grad=True)
    z = VonMisesFisher(mu.expand(n, m), k).rsample()
    (g,) = torch.autograd.grad(f(z, mu).sum(), k)
    return g.mean().item(), g.std().item() / math.sqrt(n)


@pytest.mark.parametrize("m,kappa", [(2, 2.0), (3, 0.5), (3, 30.0), (5, 3.0), (10, 1.0),
                                     (10, 100.0), (50, 20.0)])
def test_concentration_gradient_is_unbiased(m, kappa, device):
    """d/dkappa E[mu^T z] = A_m'(kappa) (the accepted-proposal-only gradient fails this)."""
    g, se = _mc_grad(m, kappa, 100_000, lambda z, mu: z @ mu, device=device)
    ref = float(mp.diff(lambda t: mp_A(m, t), mp.mpf(kappa)))
    assert abs(g - ref) < 3.5 * se, (g, ref, se)


@pytest.mark.parametrize("m,kappa", [(3, 2.0), (6, 5.0), (20, 40.0)])
def test_concentration_gradient_nonlinear_f(m, kappa):
    """f(z) = exp(a^T z): E_q[f] = C_m(kappa) / C_m(||kappa mu + a||), differentiated in mpmath."""
    a = 0.8 * unit(m, 11)
    mu = unit(m, 7)

    def expectation(k):
        r = mp.sqrt(sum((k * mp.mpf(float(mi)) + mp.mpf(float(ai))) ** 2
                        for mi, ai in zip(mu.tolist(), a.tolist())))
        v = mp.mpf(m) / 2 - 1
        log_c = lambda t: v * mp.log(t) - mp.log(mp.besseli(v, t))
        return mp.exp(log_c(k) - log_c(r))

    g, se = _mc_grad(m, kappa, 100_000, lambda z, mu_: torch.exp(z @ a))
    ref = float(mp.diff(expectation, mp.mpf(kappa)))
    assert abs(g - ref) < 3.5 * se, (g, ref, se)


def test_loc_gradient_is_unbiased():
    """d/dmu E[a^T z] = A a; only the tangential part (I - mu mu^T) A a is defined on the sphere."""
    torch.manual_seed(4)
    m, kappa, n = 7, 6.0, 100_000
    raw = unit(m, 9).requires_grad_(True)
    a = unit(m, 10)
    q = VonMisesFisher(torch.nn.functional.normalize(raw, dim=-1).expand(n, m),
                       torch.tensor(kappa, dtype=F64))
    z = q.rsample()
    (g,) = torch.autograd.grad((z @ a).mean(), raw)
    A = iv_ratio(m / 2, torch.tensor(kappa, dtype=F64))
    mu = raw.detach()
    ref = A * (a - mu * (mu @ a))
    # standard error from independent batches
    gs = []
    for s in range(10):
        torch.manual_seed(100 + s)
        zz = VonMisesFisher(torch.nn.functional.normalize(raw, dim=-1).expand(n // 10, m),
                            torch.tensor(kappa, dtype=F64)).rsample()
        gs.append(torch.autograd.grad((zz @ a).mean(), raw)[0])
    se = torch.stack(gs).std(0) / math.sqrt(10)  # SE of the full-n estimate
    assert ((g - ref).abs() < 4 * se + 1e-12).all(), (g, ref, se)


@pytest.mark.slow  # mpmath quadrature per point: ~10 s
def test_implicit_gradient_against_mpmath_quadrature():
    """dw/dkappa = -(dF/dkappa)(theta0) / p(theta0) with everything integrated by mpmath."""

    def ref(w, k, m):
        th0 = 2 * mp.asin(mp.sqrt(mp.mpf(w) / 2))
        c = m - 2
        psi = lambda t: k * mp.cos(t) + (c * mp.log(mp.sin(t)) if c else 0)
        tm = mp.acos(2 * k / (c + mp.sqrt(c * c + 4 * k * k))) if c else mp.mpf(0)
        pm = psi(tm) if c else psi(mp.mpf(0))
        f = lambda t: mp.exp(psi(t) - pm)
        sd = 1 / mp.sqrt(k + c + 1)
        pts = sorted({mp.mpf(0), tm, th0, mp.pi} | {p for p in (tm - 10 * sd, tm + 10 * sd,
                                                               th0 - 10 * sd, th0 + 10 * sd)
                                                     if 0 < p < mp.pi})
        Z = mp.quad(f, pts)
        A = mp.quad(lambda t: mp.cos(t) * f(t), pts) / Z
        dF = mp.quad(lambda t: (mp.cos(t) - A) * f(t), [p for p in pts if p <= th0] + [th0]) / Z
        return float(-mp.sin(th0) * dF / (f(th0) / Z))

    torch.manual_seed(0)
    for m, k in [(2, 5.0), (4, 0.3), (10, 30.0), (50, 2.0), (300, 3000.0), (4096, 1e4)]:
        w, _ = sample_w(torch.full((3,), k, dtype=F64), m)
        kk = torch.full((3,), k, dtype=F64)
        for dtype, tol in ((F64, 1e-8), (torch.float32, 5e-5)):
            got = dw_dkappa(w.to(dtype), kk.to(dtype), m)
            for wi, gi in zip(w.tolist(), got.tolist()):
                r = ref(wi, k, m)
                assert abs(gi - r) <= tol * abs(r), (m, k, wi, gi, r, dtype)


def test_s2_gradient_matches_derivative_of_inverse_cdf():
    """On S^2, w(kappa; u) = -log(u + (1 - u) e^{-2 kappa}) / kappa exactly; differentiate in mpmath."""
    us = [0.01, 0.2, 0.5, 0.8, 0.99]
    for kappa in (1e-5, 0.001, 0.1, 0.3, 2.0, 40.0, 1e4):
        def wfun(k, u):
            u = mp.mpf(u)  # exactly, so that u + (1 - u) = 1 at kappa -> 0
            return -mp.log(u + (1 - u) * mp.exp(-2 * k)) / k

        w = torch.tensor([float(wfun(mp.mpf(kappa), u)) for u in us], dtype=F64)
        ref = torch.tensor([float(mp.diff(lambda k, u=u: wfun(k, u), mp.mpf(kappa))) for u in us],
                           dtype=F64)
        got = dw_dkappa(w, torch.full_like(w, kappa), 3)
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=0)
        got32 = dw_dkappa(w.float(), torch.full((len(us),), kappa), 3)
        torch.testing.assert_close(got32.double(), ref, rtol=1e-4, atol=0)


def test_gradcheck_log_prob_and_kl():
    mu = unit(4, 1).requires_grad_(True)
    k = torch.tensor([0.3, 2.0, 50.0], dtype=F64, requires_grad=True)
    z = torch.as_tensor(st.vonmises_fisher(mu.detach().numpy(), 2.0).rvs(3, random_state=0))

    def lp(mu_, k_):
        return VonMisesFisher(torch.nn.functional.normalize(mu_, dim=-1).expand(3, 4), k_,
                              validate_args=False).log_prob(z)

    assert torch.autograd.gradcheck(lp, (mu, k))
    kl = lambda k_: kl_uniform(VonMisesFisher(mu.detach().expand(3, 4), k_))
    assert torch.autograd.gradcheck(kl, (k,))
    ent = lambda k_: VonMisesFisher(mu.detach().expand(3, 4), k_).entropy()
    assert torch.autograd.gradcheck(ent, (k,))


# ------------------------------------------------------------------------------------------
# API
def test_shapes_broadcasting_and_expand():
    loc = torch.nn.functional.normalize(torch.randn(4, 1, 5), dim=-1)
    q = VonMisesFisher(loc, torch.rand(3) + 0.5)
    assert q.batch_shape == (4, 3) and q.event_shape == (5,)
    assert q.rsample((2,)).shape == (2, 4, 3, 5)
    assert q.log_prob(q.sample()).shape == (4, 3)
    assert q.entropy().shape == (4, 3) and q.mean.shape == (4, 3, 5) and q.mode.shape == (4, 3, 5)
    q2 = VonMisesFisher(loc[:, 0], torch.rand(4) + 0.5)
    assert q2.batch_shape == (4,)
    e = q2.expand((6, 4))
    assert e.batch_shape == (6, 4) and e.sample().shape == (6, 4, 5)
    assert VonMisesFisher(loc[0, 0], 2.0).batch_shape == ()
    assert kl_divergence(q, HypersphericalUniform(5)).shape == (4, 3)


def test_argument_validation_messages():
    good = torch.tensor([0.6, 0.8])
    with pytest.raises(ValueError, match="unit norm"):
        VonMisesFisher(torch.tensor([1.0, 1.0]), 1.0, validate_args=True)
    with pytest.raises(ValueError, match="zero vector"):
        VonMisesFisher(torch.zeros(3), 1.0, validate_args=True)
    with pytest.raises(ValueError, match="concentration"):
        VonMisesFisher(good, 0.0, validate_args=True)
    with pytest.raises(ValueError, match="concentration"):
        VonMisesFisher(good, float("nan"), validate_args=True)
    with pytest.raises(ValueError, match="concentration"):
        VonMisesFisher(good, torch.tensor([1.0, -2.0]), validate_args=True)
    with pytest.raises(ValueError, match="m >= 2"):
        VonMisesFisher(torch.tensor([1.0]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        VonMisesFisher(torch.tensor([float("nan"), 1.0]), 1.0, validate_args=True)
    q = VonMisesFisher(good, 1.0, validate_args=True)
    with pytest.raises(ValueError):
        q.log_prob(torch.tensor([2.0, 0.0]))
    VonMisesFisher(torch.tensor([1.0, 1.0]), 1.0, validate_args=False)  # no check when disabled


def test_concentration_broadcasts_against_the_batch_shape_of_loc():
    loc = torch.nn.functional.normalize(torch.randn(4, 5), dim=-1)
    with pytest.raises(ValueError, match=r"squeeze\(-1\)"):
        VonMisesFisher(loc, torch.rand(4, 1) + 0.5)  # would pair every kappa with every mu
    with pytest.raises(ValueError, match="broadcast"):
        VonMisesFisher(loc, torch.rand(3) + 0.5)
    # otherwise the usual broadcasting rules, as for torch's own distributions
    for loc_shape, k_shape in (((5,), (1,)), ((5,), (3, 1)), ((2, 1, 5), (3,)), ((4, 5), ())):
        q = VonMisesFisher(torch.nn.functional.normalize(torch.randn(loc_shape), dim=-1),
                           torch.rand(k_shape) + 0.5)
        normal = torch.distributions.Normal(torch.zeros(loc_shape[:-1]), torch.ones(k_shape))
        assert q.batch_shape == normal.batch_shape


def test_validation_goes_through_the_base_class_and_the_sphere_constraint(monkeypatch):
    calls = []
    check = type(sphere).check

    def spy(self, value):
        calls.append(value.shape)
        return check(self, value)

    monkeypatch.setattr(type(sphere), "check", spy)
    loc = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    q = VonMisesFisher(loc, torch.tensor([1.0, 2.0]), validate_args=True)
    assert q._validate_args and calls == [(2, 2)]  # the arguments, by Distribution.__init__
    q.log_prob(loc)
    assert calls[-1] == (2, 2) and len(calls) == 2  # the value, by _validate_sample
    calls.clear()
    q = VonMisesFisher(loc, torch.tensor([1.0, 2.0]), validate_args=False)
    q.log_prob(torch.tensor([2.0, 0.0]))
    assert not q._validate_args and calls == []
    assert VonMisesFisher.arg_constraints["loc"] is sphere
    with pytest.raises(ValueError, match="concentration"):
        VonMisesFisher(loc, torch.tensor([1.0, float("inf")]), validate_args=True)


def test_dtype_is_preserved():
    for dtype in (torch.float32, F64):
        q = VonMisesFisher(unit(3, dtype=dtype), torch.tensor(2.0, dtype=dtype))
        z = q.rsample((4,))
        assert z.dtype == dtype
        assert q.log_prob(z).dtype == dtype and q.entropy().dtype == dtype


def test_hyperspherical_uniform():
    for m, area in ((2, 2 * math.pi), (3, 4 * math.pi), (4, 2 * math.pi**2)):
        u = HypersphericalUniform(m)
        z = u.sample((50_000,))
        assert z.shape == (50_000, m)
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(50_000))
        assert (z.mean(0).abs() < 4 / math.sqrt(50_000)).all()
        assert math.isclose(u.log_prob(z[:3])[0].item(), -math.log(area), rel_tol=1e-6)
        assert math.isclose(u.entropy().item(), math.log(area), rel_tol=1e-6)
    # the uniform is the kappa -> 0 limit of the vMF
    z = HypersphericalUniform(5, dtype=F64).sample((4,))
    torch.testing.assert_close(VonMisesFisher(unit(5), 1e-9).log_prob(z),
                               HypersphericalUniform(5).log_prob(z).double(), rtol=1e-8, atol=1e-8)
    # same convention as scipy: dim is the ambient dimension
    assert HypersphericalUniform(7).event_shape == st.uniform_direction(7).rvs(1).shape[-1:]
    with pytest.raises(ValueError, match="dim"):
        HypersphericalUniform(1)
    with pytest.raises(ValueError, match="dim"):
        HypersphericalUniform(2.5)
    assert HypersphericalUniform(3, batch_shape=(2,)).expand((4, 2)).sample().shape == (4, 2, 3)


@pytest.mark.parametrize("path", ["device's", "accelerator's"])
def test_rejection_attempts_match_wood_acceptance_rate(device, path):
    """Mean attempts = 1 / P(accept); compare with the paper's Table 5 (1000-sample MC there)."""
    torch.manual_seed(0)
    for m, kappa, paper in ((5, 10.0, 1.268), (10, 100.0, 1.411), (100, 1.0, 1.000)):
        q = VonMisesFisher(unit(m).to(device), torch.tensor(kappa, device=device))
        with accelerator_path() if path == "accelerator's" else contextlib.nullcontext():
            att = q.rejection_attempts((20_000,)).double()
        # the paper's estimate has its own MC error (1000 samples): allow 4 SE of each
        se = math.sqrt(att.var().item() / 20_000 + att.var().item() / 1000)
        assert abs(att.mean().item() - paper) < 4 * se + 1e-9


def test_a_proposal_is_rejected_with_probability_below_the_bound_of_the_fixed_rounds():
    """Off the CPU the sampler draws a fixed number of proposals before its first check, sized
    by a bound on the rejection probability: it holds where the rejection is largest (large
    kappa, small m), with 5 standard errors to spare."""
    torch.manual_seed(0)
    n = 200_000
    for m in (2, 4, 10, 100):
        kappa = torch.full((n,), 1e5, dtype=F64)
        att = VonMisesFisher(unit(m).expand(n, m), kappa).rejection_attempts().double()
        rejected = 1 - n / att.sum().item()  # rejections per proposal
        se = math.sqrt(rejected * (1 - rejected) / att.sum().item())
        assert rejected + 5 * se < _sampling._REJECTION, (m, rejected)


@pytest.mark.parametrize("m,kappa", [(2, 1e4), (5, 10.0), (64, 200.0)])
def test_accelerator_path_draws_the_same_distribution_with_one_check(m, kappa, monkeypatch):
    """The accelerator's path (a fixed number of proposals, then one host read) samples the
    vMF (KS against scipy), checks once per call, and still finishes every entry when the
    fixed proposals leave some pending (then it reads again)."""
    torch.manual_seed(m)
    mu = unit(m, seed=3)
    q = VonMisesFisher(mu.expand(20_000, m), torch.full((20_000,), kappa, dtype=F64))
    ref = st.vonmises_fisher(mu.numpy(), kappa).rvs(20_000, random_state=m) @ mu.numpy()
    with HostSyncCounter() as syncs:
        z = q.sample()
    assert syncs.count == 1 and syncs.events[0].op == "aten::nonzero"
    assert st.ks_2samp((z @ mu).numpy(), ref).pvalue > 1e-3
    monkeypatch.setattr(_sampling, "unchecked_proposals", lambda size: 1)
    with HostSyncCounter() as syncs:
        z = q.sample()
    assert syncs.count > 1
    assert st.ks_2samp((z @ mu).numpy(), ref).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_kl_vmf_vmf_extremes_are_finite_and_nonnegative(dtype):
    m = 6
    ks = torch.tensor([1e-6, 1.0, 1e3, 1e6], dtype=dtype)
    kp, kq = torch.meshgrid(ks, ks, indexing="ij")
    kp, kq = kp.reshape(-1).requires_grad_(True), kq.reshape(-1).requires_grad_(True)
    mu_p = unit(m, 1, dtype).expand(16, m)
    mu_q = unit(m, 2, dtype).expand(16, m)
    kl = kl_divergence(VonMisesFisher(mu_p, kp), VonMisesFisher(mu_q, kq))
    kl.sum().backward()
    assert torch.isfinite(kl).all() and torch.isfinite(kp.grad).all() and torch.isfinite(kq.grad).all()
    assert (kl >= -1e-6 * (1 + kl.abs())).all()
    # identical distributions: zero
    same = kl_divergence(VonMisesFisher(mu_p, kp.detach()), VonMisesFisher(mu_p, kp.detach()))
    assert same.abs().max().item() < 1e-5


def test_log_prob_float32_at_large_kappa_against_float64_reference():
    """kappa (mu^T z - 1) is evaluated as -kappa ||z - mu||^2 / 2: no O(kappa) cancellation."""
    m, kappa = 10, 1e5
    mu = unit(m, 3)
    ref = st.vonmises_fisher(mu.numpy(), kappa)
    z = torch.as_tensor(ref.rvs(20, random_state=0))
    lp32 = VonMisesFisher(mu.float(), torch.tensor(kappa)).log_prob(z.float()).double()
    lp64 = VonMisesFisher(mu, torch.tensor(kappa, dtype=F64)).log_prob(z)
    # the float32 inputs themselves are rounded: |d log p| <= kappa |mu||dz| ~ 1e5 * 1e-7
    assert (lp32 - lp64).abs().max().item() < 0.05
    np.testing.assert_allclose(lp64.numpy(), ref.logpdf(z.numpy()), rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_gradients_finite_at_pole_draws_float32(m):
    """Regression: float32 draws that round onto a pole (w = 0 or 2, ~1e-4 of them at m = 2)
    must not give inf/NaN gradients (the angle parameterisation keeps d z / d kappa finite)."""
    torch.manual_seed(0)
    n = 200_000
    loc = torch.nn.functional.normalize(torch.randn(n, m), dim=-1).requires_grad_(True)
    k = torch.full((n,), 1.0, requires_grad=True)
    z = VonMisesFisher(loc, k, validate_args=False).rsample()
    a = torch.nn.functional.normalize(torch.randn(m), dim=-1)
    (z @ a).exp().sum().backward()
    assert torch.isfinite(k.grad).all() and torch.isfinite(loc.grad).all()
    assert k.grad.abs().max() < 100 and torch.isfinite(z).all()


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(c) for c in ("c++", "g++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_quadrature_matches_eager():
    """compile_quadrature(): the torch.compile'd quadrature gives the eager gradients."""
    from pyg_spherical.distributions import compile_quadrature

    torch.manual_seed(0)
    kappa = torch.tensor([0.5, 3.0, 40.0, 2000.0]).repeat(50)
    theta, _, _ = sample_theta(kappa, 10)
    eager = dtheta_dkappa(theta, kappa, 10)
    try:
        compile_quadrature()
        fused = dtheta_dkappa(theta, kappa, 10)
        k = kappa.clone().requires_grad_(True)
        z = VonMisesFisher(unit(10, dtype=torch.float32).expand(len(k), 10), k).rsample()
        z.sum().backward()
        assert torch.isfinite(k.grad).all()
    finally:
        compile_quadrature(False)
    torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------------------------
# parameters changed in place (an optimiser step): every call sees the current values
def _uses(q, z, other):
    """Every value of q that depends on its concentration, as a list of tensors."""
    u = HypersphericalUniform(q.event_shape[0], dtype=q.loc.dtype)
    return [q.entropy(), q.log_prob(z), q.log_normalizer(), kl_uniform(q), q.variance,
            kl_divergence(q, u), kl_divergence(q, other), kl_divergence(other, q)]


def test_entropy_after_in_place_concentration_change():
    k = torch.tensor(1.0)
    q = VonMisesFisher(torch.eye(10)[0], k)
    q.entropy()
    k.mul_(100)
    ref = st.vonmises_fisher(np.eye(10)[0], 100.0).entropy()
    assert math.isclose(q.entropy().item(), ref, rel_tol=1e-5)


@pytest.mark.parametrize("m", [3, 10])
def test_in_place_concentration_change_matches_a_fresh_distribution(m):
    """Values and gradients after ``k.mul_`` equal those of a distribution built afterwards."""
    loc = unit(m, 4).expand(2, m)
    other = VonMisesFisher(unit(m, 5), torch.tensor(3.0, dtype=F64))
    z = torch.as_tensor(st.vonmises_fisher(loc[0].numpy(), 50.0).rvs(2, random_state=0))
    k = torch.tensor([1.0, 0.3], dtype=F64, requires_grad=True)
    q = VonMisesFisher(loc, k)
    _uses(q, z, other)  # fills anything a distribution might keep
    q.rsample()
    with torch.no_grad():
        k.mul_(100)
    k_new = k.detach().clone().requires_grad_(True)
    fresh = VonMisesFisher(loc, k_new)
    for got, want in zip(_uses(q, z, other), _uses(fresh, z, other)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
        (g,) = torch.autograd.grad(got.sum(), k)
        (g_ref,) = torch.autograd.grad(want.sum(), k_new)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=0)
    # the implicit reparameterisation gradient of a sample uses 1 - A_m at the current kappa
    a = unit(m, 6)
    grads = []
    for dist, kk in ((q, k), (fresh, k_new)):
        torch.manual_seed(0)
        (g,) = torch.autograd.grad((dist.rsample((50,)) @ a).exp().sum(), kk)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=0)
    # and both agree with scipy at the new kappa
    for i, kk in enumerate(k.tolist()):
        ref = st.vonmises_fisher(loc[i].numpy(), kk)
        assert math.isclose(q.entropy()[i].item(), ref.entropy(), rel_tol=1e-10)


def test_expand_matches_the_distribution_built_from_expanded_arguments():
    m = 5
    loc = torch.stack([unit(m, 1), unit(m, 2)])
    k = torch.tensor([0.5, 40.0], dtype=F64)
    q = VonMisesFisher(loc, k).expand((3, 2))
    ref = VonMisesFisher(loc.expand(3, 2, m), k.expand(3, 2))
    assert q.batch_shape == (3, 2) and q.event_shape == (m,)
    z = torch.as_tensor(st.vonmises_fisher(loc[0].numpy(), 2.0).rvs(6, random_state=1)).view(3, 2, m)
    other = VonMisesFisher(unit(m, 3), torch.tensor(2.0, dtype=F64))
    for got, want in zip(_uses(q, z, other), _uses(ref, z, other)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(q.mean, ref.mean)
    assert q.rsample((4,)).shape == (4, 3, 2, m)
    k.mul_(3)  # views: the expanded copy follows the original parameters
    torch.testing.assert_close(q.entropy(), VonMisesFisher(loc, k).entropy().expand(3, 2))


# ------------------------------------------------------------------------------------------
# variance
def mp_variance(m, k, mu):
    """Diagonal of Cov[z] = (A/k) I + (1 - A^2 - m A / k) mu mu^T at 40 digits."""
    k = mp.mpf(k)
    A = mp_A(m, k)
    return [A / k + (1 - A * A - m * A / k) * mp.mpf(float(x)) ** 2 for x in mu]


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 5e-5), (F64, 1e-10)])
@pytest.mark.parametrize("m", [3, 10, 100])
def test_variance_without_cancellation(m, dtype, rtol):
    kappas = [1e-3, 0.1, 1.0, 2.5, 30.0, 1e3, 1e4, 1e5, 1e6]
    for mu in (torch.eye(m, dtype=dtype)[0], unit(m, 8, dtype)):
        k = torch.tensor(kappas, dtype=dtype, requires_grad=True)
        var = VonMisesFisher(mu.expand(len(kappas), m), k).variance
        assert var.dtype == dtype and (var > 0).all()
        (g,) = torch.autograd.grad(var.sum(), k)
        for i, kk in enumerate(kappas):
            ref = mp_variance(m, kk, mu.tolist())
            np.testing.assert_allclose(var[i].detach().double().numpy(),
                                       [float(r) for r in ref], rtol=rtol, atol=0,
                                       err_msg=f"m={m} kappa={kk}")
            dref = mp.diff(lambda t, u=mu.tolist(): mp.fsum(mp_variance(m, t, u)), mp.mpf(kk))
            # the backward pass runs in float64; its terms cancel to ~eps64 (m / kappa)^2
            tol = max(1e-8, 10 * rtol) + 1e-15 * (m / kk) ** 2
            assert math.isclose(g[i].item(), float(dref), rel_tol=tol), (m, kk)


# ------------------------------------------------------------------------------------------
# float16 / bfloat16: computed in float32, returned in the argument dtype
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m,kappa", [(3, 5.0), (10, 20.0)])
def test_half_precision(m, kappa, dtype):
    torch.manual_seed(0)
    n = 20_000
    mu = unit(m, 2, torch.float32)
    loc = mu.to(dtype).requires_grad_(True)
    k = torch.tensor(kappa, dtype=dtype, requires_grad=True)
    q = VonMisesFisher(loc, k, validate_args=True)
    z = q.rsample((n,))
    assert z.dtype == dtype and z.shape == (n, m) and torch.isfinite(z).all()
    lp = q.log_prob(z)  # validates that the draws lie on the sphere
    assert lp.dtype == dtype
    ((z.float() @ mu).exp().mean() + lp.float().mean()).backward()
    assert loc.grad.dtype == dtype and k.grad.dtype == dtype
    assert torch.isfinite(loc.grad.float()).all() and torch.isfinite(k.grad.float()).all()
    # E[mu^T z] = A_m(kappa), up to the dtype's rounding of z and of kappa
    w = 0.5 * ((z.detach().double() - mu.double()) ** 2).sum(-1)
    k_used = float(k.detach())
    ref = float(1 - mp_A(m, k_used))
    eps = torch.finfo(dtype).eps
    assert abs(w.mean().item() - ref) < 4 * w.std().item() / math.sqrt(n) + 2 * eps
    # densities against scipy at the (rounded) parameters
    sp = st.vonmises_fisher(loc.detach().double().numpy() / loc.detach().double().norm().item(),
                            k_used)
    zz = z[:5].detach().double()
    zz = zz / zz.norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(q.log_prob(zz.to(dtype)).detach().double().numpy(), sp.logpdf(zz.numpy()),
                               rtol=eps, atol=eps * kappa)  # z rounded: |dz| ~ eps / 2
    assert math.isclose(q.entropy().item(), sp.entropy(), rel_tol=2 * eps, abs_tol=eps)
    var = q.variance.detach().double()
    ref_var = torch.tensor([float(v) for v in mp_variance(m, k_used, loc.detach().tolist())],
                           dtype=F64)
    torch.testing.assert_close(var, ref_var, rtol=2 * eps, atol=0)
    assert (q.rejection_attempts((10,)) >= 1).all()


@pytest.mark.parametrize("kappa", [float("nan"), -1.0, 0.0, float("inf")])
def test_vmf_rsample_refuses_an_invalid_concentration_even_unvalidated(kappa):
    q = VonMisesFisher(unit((3, 5)), torch.full((3,), kappa, dtype=F64), validate_args=False)
    with pytest.raises(RuntimeError, match="VonMisesFisher: concentration"):
        q.rsample()


def test_a_concentration_that_overflows_the_dtype_is_named_as_such():
    with pytest.raises(ValueError, match="overflows float32"):
        VonMisesFisher(unit((3, 5), dtype=torch.float32), 1e300)
