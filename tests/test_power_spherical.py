"""PowerSpherical against independent references.

References: numerical integration of the density on S^1 and S^2 (normalisation, mean, covariance,
entropy), the distribution of ``t = mu^T z`` (``(1 + t) / 2 ~ Beta(alpha, beta)``, scipy), mpmath
transcriptions of the closed forms of De Cao & Aziz (2020), one-dimensional mpmath integrals for
``E[exp(a^T z)]`` (differentiated numerically for the gradient checks), finite differences
(``gradcheck``), Monte Carlo with tolerances of 4 standard errors (gradients: 3.5), and the
``power-spherical`` package (skipped if not installed).
"""
import math

import mpmath as mp
import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as st
import torch
from test_distributions import kl_uniform, unit
from torch.distributions import kl_divergence

from pyg_spherical import HypersphericalUniform
from pyg_spherical.distributions import PowerSpherical, log_sphere_area

mp.mp.dps = 40
F64 = torch.float64


def mp_closed_forms(m, k):
    """(KL to uniform, entropy, log N) from the paper's formulas, in mpmath."""
    k = mp.mpf(k)
    b = mp.mpf(m - 1) / 2
    a = b + k
    log_n = (a + b) * mp.log(2) + b * mp.log(mp.pi) + mp.loggamma(a) - mp.loggamma(a + b)
    ent = log_n - k * (mp.log(2) + mp.digamma(a) - mp.digamma(a + b))
    log_s = mp.log(2) + mp.mpf(m) / 2 * mp.log(mp.pi) - mp.loggamma(mp.mpf(m) / 2)
    return log_s - ent, ent, log_n


# ------------------------------------------------------------------------------------------
# the density, integrated numerically
@pytest.mark.parametrize("kappa", [0.3, 1.0, 7.5, 60.0])
def test_density_on_s1_integrates_to_one_with_the_right_moments(kappa):
    phi0 = 2.1
    mu = torch.tensor([math.cos(phi0), math.sin(phi0)], dtype=F64)
    q = PowerSpherical(mu, torch.tensor(kappa, dtype=F64))

    def dens(phi, f=lambda z: 1.0):
        z = torch.tensor([math.cos(phi), math.sin(phi)], dtype=F64)
        return math.exp(q.log_prob(z).item()) * f(z)

    # the density is not smooth at -mu: split the circle there
    pts = (phi0 - math.pi, phi0, phi0 + math.pi)

    def integral(f):
        return sum(si.quad(dens, lo, hi, args=(f,), epsabs=1e-13, epsrel=1e-12, limit=200)[0]
                   for lo, hi in zip(pts[:-1], pts[1:]))

    assert abs(integral(lambda z: 1.0) - 1) < 1e-9
    mean = [integral(lambda z, i=i: z[i].item()) for i in range(2)]
    np.testing.assert_allclose(mean, q.mean.numpy(), rtol=1e-8, atol=1e-10)
    var = [integral(lambda z, i=i: z[i].item() ** 2) - mean[i] ** 2 for i in range(2)]
    np.testing.assert_allclose(var, q.variance.numpy(), rtol=1e-7, atol=1e-10)
    ent = -integral(lambda z: q.log_prob(z).item())
    assert abs(ent - q.entropy().item()) < 1e-8


def _sphere_grid(n_u=200, n_phi=400):
    """Gauss-Legendre in cos(polar angle) about e_3, trapezoid in azimuth: points and weights."""
    u, wu = np.polynomial.legendre.leggauss(n_u)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    U, P = np.meshgrid(u, phi, indexing="ij")
    s = np.sqrt(1 - U**2)
    z = np.stack([s * np.cos(P), s * np.sin(P), U], -1).reshape(-1, 3)
    w = (wu[:, None] * np.full(n_phi, 2 * np.pi / n_phi)[None, :]).reshape(-1)
    return torch.as_tensor(z), torch.as_tensor(w)


@pytest.mark.parametrize("kappa", [1.0, 2.5, 20.0])
def test_density_on_s2_integrates_to_one_with_the_right_moments(kappa):
    mu = unit(3, seed=5)
    q = PowerSpherical(mu, torch.tensor(kappa, dtype=F64))
    z, w = _sphere_grid()
    p = q.log_prob(z).exp() * w
    assert abs(p.sum().item() - 1) < 1e-9
    mean = (p.unsqueeze(-1) * z).sum(0)
    torch.testing.assert_close(mean, q.mean, rtol=1e-8, atol=1e-10)
    var = (p.unsqueeze(-1) * z**2).sum(0) - mean**2
    torch.testing.assert_close(var, q.variance, rtol=1e-8, atol=1e-10)
    ent = -(p * q.log_prob(z)).sum()
    assert abs(ent.item() - q.entropy().item()) < 1e-8


# ------------------------------------------------------------------------------------------
# closed forms over the whole range
@pytest.mark.parametrize("dtype,rtol", [(F64, 1e-12), (torch.float32, 3e-7)])
@pytest.mark.parametrize("m", [2, 3, 10, 100, 1000, 4096])
def test_kl_entropy_normalizer_over_the_whole_range(m, dtype, rtol, device):
    kappas = [1e-6, 1e-3, 0.1, 0.24 * (m - 1) / 2, 0.26 * (m - 1) / 2, 1.0, 9.9, 10.1, 1e3, 1e6]
    k = torch.tensor(kappas, dtype=dtype, device=device, requires_grad=True)
    q = PowerSpherical(unit(m, dtype=dtype).to(device).expand(len(kappas), m), k)
    kl = kl_divergence(q, HypersphericalUniform(m, dtype=dtype, device=device))
    ent, log_n = q.entropy(), q.log_normalizer()
    (g_kl,) = torch.autograd.grad(kl.sum(), k, retain_graph=True)
    (g_n,) = torch.autograd.grad(log_n.sum(), k)
    for t in (kl, ent, log_n, g_kl, g_n):
        assert t.dtype == dtype and torch.isfinite(t).all()
    for i, kk in enumerate(kappas):
        kk = float(torch.tensor(kk, dtype=dtype))  # the value actually represented
        ref_kl, ref_h, ref_n = mp_closed_forms(m, kk)
        assert math.isclose(kl[i].item(), float(ref_kl), rel_tol=10 * rtol), (m, kk)
        assert math.isclose(ent[i].item(), float(ref_h), rel_tol=rtol), (m, kk)
        assert math.isclose(log_n[i].item(), float(ref_n), rel_tol=rtol), (m, kk)
        d_kl = mp.diff(lambda t: mp_closed_forms(m, t)[0], mp.mpf(kk))
        d_n = mp.diff(lambda t: mp_closed_forms(m, t)[2], mp.mpf(kk))
        assert math.isclose(g_kl[i].item(), float(d_kl), rel_tol=10 * rtol), (m, kk)
        assert math.isclose(g_n[i].item(), float(d_n), rel_tol=10 * rtol, abs_tol=1e-9), (m, kk)


@pytest.mark.parametrize("m,kappa", [(2, 0.7), (5, 4.0), (40, 100.0)])
def test_kl_identity_and_monte_carlo(m, kappa):
    """KL = -H + log|S^{m-1}| = E_q[log q(z)] + log|S^{m-1}|, the expectation by Monte Carlo."""
    torch.manual_seed(0)
    q = PowerSpherical(unit(m, 3), torch.tensor(kappa, dtype=F64))
    kl = kl_divergence(q, HypersphericalUniform(m, dtype=F64))
    assert math.isclose(kl.item(), -q.entropy().item() + log_sphere_area(m), rel_tol=1e-13)
    lq = q.log_prob(q.sample((200_000,)))
    se = lq.std().item() / math.sqrt(len(lq))
    assert abs(lq.mean().item() + log_sphere_area(m) - kl.item()) < 4 * se


def test_kappa_zero_is_the_uniform_distribution():
    m = 6
    q = PowerSpherical(unit(m), torch.tensor(0.0, dtype=F64), validate_args=True)
    u = HypersphericalUniform(m, dtype=F64)
    z = u.sample((5,))
    torch.testing.assert_close(q.log_prob(z), u.log_prob(z))
    torch.testing.assert_close(q.entropy(), u.entropy())
    assert kl_divergence(q, u).item() == 0.0
    assert (q.mean == 0).all()


# ------------------------------------------------------------------------------------------
# sampling
@pytest.mark.parametrize("m", [2, 3, 10, 300])
@pytest.mark.parametrize("kappa", [1e-6, 0.5, 20.0, 1e5])
def test_t_is_a_shifted_beta(m, kappa, device):
    torch.manual_seed(m)
    mu = unit(m, m)
    z = PowerSpherical(mu.to(device), torch.tensor(kappa, dtype=F64, device=device))
    z = z.sample((5000,)).cpu()
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(5000, dtype=F64))
    b = (m - 1) / 2
    # (1 + t) / 2 = 1 - ||z - mu||^2 / 4 ~ Beta(alpha, beta); test the complement, which keeps
    # its precision at large kappa
    x = (0.25 * ((z - mu) ** 2).sum(-1)).numpy()
    assert st.kstest(x, st.beta(b, b + kappa).cdf).pvalue > 1e-3


@pytest.mark.parametrize("m,kappa", [(3, 2.0), (5, 0.7), (50, 30.0)])
def test_monte_carlo_moments(m, kappa, device):
    torch.manual_seed(1)
    mu = unit(m, 2)
    q = PowerSpherical(mu.to(device), torch.tensor(kappa, dtype=F64, device=device))
    n = 100_000
    z = q.sample((n,)).cpu()
    q = PowerSpherical(mu, torch.tensor(kappa, dtype=F64))  # the moments' closed forms
    se = z.std(0) / math.sqrt(n)
    assert ((z.mean(0) - q.mean).abs() < 4 * se).all()
    sq = z**2
    ref = q.variance + q.mean**2
    assert ((sq.mean(0) - ref).abs() < 4 * sq.std(0) / math.sqrt(n)).all()
    # the tangent part is isotropic: E[(z - t mu)(z - t mu)^T] = E[1 - t^2] / (m - 1) (I - mu mu^T)
    t = z @ mu
    j = min(m, 6)  # a corner of the covariance is enough
    tang = (z - t.unsqueeze(-1) * mu)[:, :j]
    cov = tang.T @ tang / n
    e_perp = (1 - t**2).mean() / (m - 1)
    ref_cov = e_perp * (torch.eye(j, dtype=F64) - torch.outer(mu[:j], mu[:j]))
    se_cov = (tang.unsqueeze(-1) * tang.unsqueeze(-2)).std(0) / math.sqrt(n)
    assert ((cov - ref_cov).abs() < 4.5 * se_cov + 1e-12).all()


@pytest.mark.parametrize("m", [2, 3, 8])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_loc_at_plus_minus_e1(m, sign):
    torch.manual_seed(0)
    mu = torch.zeros(m, dtype=F64)
    mu[0] = sign
    mu.requires_grad_(True)
    k = torch.tensor(3.0, dtype=F64, requires_grad=True)
    q = PowerSpherical(mu, k)
    z = q.rsample((20_000,))
    se = z.detach().std(0) / math.sqrt(len(z))
    assert ((z.detach().mean(0) - q.mean.detach()).abs() < 4 * se).all()
    z.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(k.grad).all()


# ------------------------------------------------------------------------------------------
# gradients
def mp_expect_exp(m, k, a_par, a_perp):
    r"""``E[exp(a^T z)]`` as a 1-D integral over ``t = mu^T z``: the tangent direction is uniform
    on ``S^{m-2}``, where ``E[exp(c v_1)] = Gamma(nu + 1) (2 / c)^nu I_nu(c)``, ``nu = (m-3)/2``
    (``cosh c`` for ``m = 2``)."""
    k, b = mp.mpf(k), mp.mpf(m - 1) / 2
    nu = b - 1

    def inner(c):
        if m == 2:
            return mp.cosh(c)
        if c == 0:
            return mp.mpf(1)
        return mp.gamma(nu + 1) * (2 / c) ** nu * mp.besseli(nu, c)

    dens = lambda t: (1 + t) ** k * (1 - t * t) ** (b - 1)
    num = mp.quad(lambda t: dens(t) * mp.exp(a_par * t) * inner(a_perp * mp.sqrt(1 - t * t)),
                  [-1, 0, 1])
    return num / mp.quad(dens, [-1, 0, 1])


def _pathwise_grads(m, kappa, raw, a, n, seed):
    torch.manual_seed(seed)
    raw = raw.clone().requires_grad_(True)
    k = torch.tensor(kappa, dtype=F64, requires_grad=True)
    mu = torch.nn.functional.normalize(raw, dim=-1)
    z = PowerSpherical(mu.expand(n, m), k.expand(n)).rsample()
    f = torch.exp(z @ a)
    g_k, g_raw = torch.autograd.grad(f.mean(), (k, raw))
    return g_k.item(), g_raw


@pytest.mark.parametrize("m,kappa", [pytest.param(2, 0.5, marks=pytest.mark.slow), (3, 4.0),
                                     (10, 1.0), (10, 60.0),
                                     pytest.param(50, 20.0, marks=pytest.mark.slow)])
def test_pathwise_gradients_match_finite_differences_of_the_expectation(m, kappa):
    """d/dkappa and d/d(raw loc) of E[exp(a^T z)], mu = raw / ||raw||: Monte Carlo mean of the
    reparameterised gradients vs central differences of the mpmath integral."""
    raw = 1.3 * unit(m, 7)
    a = 0.8 * unit(m, 11)
    mu = raw / raw.norm()
    a_par = (a @ mu).item()
    a_perp = math.sqrt((a @ a).item() - a_par**2)
    k0, p0, q0 = mp.mpf(kappa), mp.mpf(a_par), mp.mpf(a_perp)
    ref_k = float(mp.diff(lambda k: mp_expect_exp(m, k, p0, q0), k0))
    # E depends on raw only through a_par = a^T mu and a_perp = sqrt(|a|^2 - a_par^2):
    # dE/draw = (dE/da_par - (a_par / a_perp) dE/da_perp) (I - mu mu^T) a / |raw|
    d_par = float(mp.diff(lambda p: mp_expect_exp(m, k0, p, q0), p0))
    d_perp = float(mp.diff(lambda p: mp_expect_exp(m, k0, p0, p), q0))
    ref_raw = (d_par - a_par / a_perp * d_perp) * (a - mu * a_par) / raw.norm()
    # 20 independent batches: their spread gives the standard error of the overall mean
    batches = [_pathwise_grads(m, kappa, raw, a, 10_000, seed) for seed in range(20)]
    gk = torch.tensor([b[0] for b in batches])
    graw = torch.stack([b[1] for b in batches])
    assert abs(gk.mean().item() - ref_k) < 4 * gk.std().item() / math.sqrt(20) + 1e-9
    se = graw.std(0) / math.sqrt(20)
    assert ((graw.mean(0) - ref_raw).abs() < 4 * se + 1e-9).all(), (graw.mean(0), ref_raw, se)


def test_gradcheck_log_prob_entropy_and_kl():
    raw = unit(4, 1).requires_grad_(True)
    k = torch.tensor([0.3, 2.0, 50.0], dtype=F64, requires_grad=True)
    torch.manual_seed(0)
    z = PowerSpherical(unit(4, 1), torch.tensor(2.0, dtype=F64)).sample((3,))

    def lp(r, k_):
        mu = torch.nn.functional.normalize(r, dim=-1).expand(3, 4)
        return PowerSpherical(mu, k_, validate_args=False).log_prob(z)

    assert torch.autograd.gradcheck(lp, (raw, k))
    mu = raw.detach().expand(3, 4)
    assert torch.autograd.gradcheck(lambda k_: kl_uniform(PowerSpherical(mu, k_)), (k,))
    assert torch.autograd.gradcheck(lambda k_: PowerSpherical(mu, k_).entropy(), (k,))
    assert torch.autograd.gradcheck(lambda k_: PowerSpherical(mu, k_).log_normalizer(), (k,))
    assert torch.autograd.gradcheck(lambda k_: PowerSpherical(mu, k_).variance, (k,))


# ------------------------------------------------------------------------------------------
# precision at the extremes
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("m", [2, 3, 64, 4096])
def test_extremes_are_finite(m, dtype):
    torch.manual_seed(0)
    kappas = torch.tensor([1e-6, 1.0, 1e3, 1e6], dtype=dtype)
    raw = torch.randn(4, m, dtype=dtype, requires_grad=True)
    k = kappas.clone().requires_grad_(True)
    q = PowerSpherical(torch.nn.functional.normalize(raw, dim=-1), k)
    z = q.rsample((8,))
    assert torch.isfinite(z).all() and z.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert ((z.norm(dim=-1) - 1).abs() < tol).all()
    lp = q.log_prob(z)
    kl = kl_uniform(q)
    (lp.sum() + kl.sum() + (z * torch.randn_like(z)).sum()).backward()
    for t in (lp, kl, raw.grad, k.grad):
        assert torch.isfinite(t).all()
    # at kappa = 1e6 the draws sit (m - 1) / kappa from mu on average, resolved to full precision
    w = 0.5 * ((z[:, 3] - q.loc[3]) ** 2).sum(-1).double()  # 1 - t
    mean_w = 2 * (m - 1) / 2 / (1e6 + m - 1)
    assert abs(w.mean().item() / mean_w - 1) < 4 * math.sqrt(2 / ((m - 1) * 8)) + 0.01


def test_log_prob_float32_at_large_kappa_against_float64_reference():
    torch.manual_seed(0)
    for m, kappa in ((3, 1e5), (10, 1e6), (1000, 1e4)):
        mu = unit(m, 2)
        q64 = PowerSpherical(mu, torch.tensor(kappa, dtype=F64))
        z = q64.sample((100,))
        q32 = PowerSpherical(mu.float(), torch.tensor(kappa))
        ref = q64.log_prob(z.float().double())  # the float32 points, exactly
        got = q32.log_prob(z.float()).double()
        assert ((got - ref).abs() < 1e-5 * ref.abs().max() + 1e-3).all(), (m, kappa)


def test_log_prob_near_the_antipode():
    """(1 + mu^T z) keeps its relative precision when z is close to -mu."""
    mu = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float32)
    eps = 1e-4
    z = torch.tensor([-math.cos(eps), math.sin(eps), 0.0], dtype=torch.float32)
    q = PowerSpherical(mu, torch.tensor(5.0))
    ref = 5.0 * math.log((1 - math.cos(eps)) / 2) - float(mp_closed_forms(3, 5.0)[2] - 5 * mp.log(2))
    assert math.isclose(q.log_prob(z).item(), ref, rel_tol=1e-5)


# ------------------------------------------------------------------------------------------
# API
def test_shapes_broadcasting_and_expand():
    loc = torch.nn.functional.normalize(torch.randn(4, 1, 5), dim=-1)
    q = PowerSpherical(loc, torch.rand(3) + 0.5)
    assert q.batch_shape == (4, 3) and q.event_shape == (5,)
    assert q.rsample((2,)).shape == (2, 4, 3, 5)
    assert q.log_prob(q.sample()).shape == (4, 3)
    assert q.entropy().shape == (4, 3) and q.mean.shape == (4, 3, 5) and q.mode.shape == (4, 3, 5)
    assert q.variance.shape == (4, 3, 5)
    with pytest.raises(ValueError, match="squeeze"):  # a (N, 1) concentration is refused
        PowerSpherical(loc[:, 0], torch.rand(4, 1) + 0.5)
    q2 = PowerSpherical(loc[:, 0], torch.rand(4) + 0.5)
    assert q2.batch_shape == (4,)
    e = q2.expand((6, 4))
    assert e.batch_shape == (6, 4) and e.sample().shape == (6, 4, 5)
    torch.testing.assert_close(e.entropy(), q2.entropy().expand(6, 4))
    assert PowerSpherical(loc[0, 0], 2.0).batch_shape == ()
    assert kl_divergence(q, HypersphericalUniform(5)).shape == (4, 3)
    assert q.support.check(q.sample()).all()
    assert not q.sample().requires_grad
    with pytest.raises(ValueError, match="different spheres"):
        kl_divergence(q, HypersphericalUniform(4))


def test_argument_validation_messages():
    good = torch.tensor([0.6, 0.8])
    with pytest.raises(ValueError, match="PowerSpherical: loc must have unit norm"):
        PowerSpherical(torch.tensor([1.0, 1.0]), 1.0, validate_args=True)
    with pytest.raises(ValueError, match="zero vector"):
        PowerSpherical(torch.zeros(3), 1.0, validate_args=True)
    with pytest.raises(ValueError, match="concentration"):
        PowerSpherical(good, -1e-3, validate_args=True)
    with pytest.raises(ValueError, match="concentration"):
        PowerSpherical(good, float("inf"), validate_args=True)
    with pytest.raises(ValueError, match="m >= 2"):
        PowerSpherical(torch.tensor([1.0]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        PowerSpherical(torch.tensor([float("nan"), 1.0]), 1.0, validate_args=True)
    with pytest.raises(TypeError):
        PowerSpherical(good, "1")
    q = PowerSpherical(good, 1.0, validate_args=True)
    with pytest.raises(ValueError):
        q.log_prob(torch.tensor([2.0, 0.0]))
    PowerSpherical(good, 0.0, validate_args=True)  # kappa = 0 is the uniform distribution
    PowerSpherical(torch.tensor([1.0, 1.0]), 1.0, validate_args=False)  # no check when disabled


def test_dtype_is_preserved():
    for dtype in (torch.float32, F64):
        q = PowerSpherical(unit(3, dtype=dtype), torch.tensor(2.0, dtype=dtype))
        z = q.rsample((4,))
        assert z.dtype == dtype
        for t in (q.log_prob(z), q.entropy(), kl_uniform(q), q.log_normalizer(), q.mean,
                  q.variance):
            assert t.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m,kappa", [(3, 5.0), (10, 20.0)])
def test_half_precision(m, kappa, dtype):
    """float16 / bfloat16 are computed in float32 and cast back (as for the vMF): samples,
    densities and gradients are finite and in the argument dtype, E[mu^T z] is right."""
    torch.manual_seed(0)
    n = 20_000
    mu = unit(m, 2, torch.float32)
    loc = mu.to(dtype).requires_grad_(True)
    k = torch.tensor(kappa, dtype=dtype, requires_grad=True)
    q = PowerSpherical(loc, k, validate_args=True)
    z = q.rsample((n,))
    assert z.dtype == dtype and z.shape == (n, m) and torch.isfinite(z).all()
    lp = q.log_prob(z)  # validates that the draws lie on the sphere
    assert lp.dtype == dtype and torch.isfinite(lp).all()
    ((z.float() @ mu).exp().mean() + lp.float().mean() + q.entropy().float()).backward()
    assert loc.grad.dtype == dtype and k.grad.dtype == dtype
    assert torch.isfinite(loc.grad.float()).all() and torch.isfinite(k.grad.float()).all()
    for t in (q.mean, q.variance, q.entropy(), kl_uniform(q), q.log_normalizer()):
        assert t.dtype == dtype and torch.isfinite(t.float()).all()
    # E[1 - mu^T z] = 2 beta / (kappa + m - 1), up to the dtype's rounding of z and kappa
    w = 0.5 * ((z.detach().double() - mu.double()) ** 2).sum(-1)
    ref = (m - 1) / (float(k.detach()) + m - 1)
    eps = torch.finfo(dtype).eps
    assert abs(w.mean().item() - ref) < 4 * w.std().item() / math.sqrt(n) + 2 * eps


# ------------------------------------------------------------------------------------------
# the reference implementation
@pytest.mark.parametrize("m,kappa", [(2, 0.5), (3, 5.0), (10, 30.0), (100, 2.0), (50, 1e4)])
def test_agrees_with_the_power_spherical_package(m, kappa):
    ps = pytest.importorskip("power_spherical")
    torch.manual_seed(0)
    mu = unit(m, 4)
    k = torch.full((20,), kappa, dtype=F64)
    ours = PowerSpherical(mu.expand(20, m), k)
    ref = ps.PowerSpherical(mu.expand(20, m), k)
    z = ours.sample()
    torch.testing.assert_close(ours.log_prob(z), ref.log_prob(z), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.entropy(), ref.entropy(), rtol=1e-9, atol=1e-9)
    ref_mean = mu * ref.base_dist.marginal_t.mean.unsqueeze(-1)  # its .mean needs no batch
    torch.testing.assert_close(ours.mean, ref_mean, rtol=1e-12, atol=1e-12)
    # (the package's own uniform distribution computes its entropy in float32)
    kl_ref = log_sphere_area(m) - ref.entropy()
    torch.testing.assert_close(kl_uniform(ours), kl_ref, rtol=1e-9, atol=1e-9)
    if m <= 10:  # the package's covariance is a full (m, m) matrix
        cov = ps.PowerSpherical(mu, k[:1]).variance
        torch.testing.assert_close(ours.variance[0], torch.diagonal(cov.squeeze(0)),
                                   rtol=1e-12, atol=1e-12)
    # same law of t = mu^T z (two-sample KS)
    t_ours = (ours.sample((500,)) @ mu).flatten().numpy()
    t_ref = (ref.sample((500,)) @ mu).flatten().numpy()
    assert st.ks_2samp(t_ours, t_ref).pvalue > 1e-3


@pytest.mark.cpu_only("the Marsaglia-Tsang sampler runs on the CPU only (torch's elsewhere)")
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_gamma_sampler_against_scipy(dtype):
    """The Marsaglia-Tsang Gamma sampler behind rsample, over the shapes alpha = kappa + beta
    takes (boosted below 1), against scipy's Gamma CDF."""
    from pyg_spherical.distributions.power_spherical import _standard_gamma

    torch.manual_seed(0)
    for a in (0.5 + 1e-6, 0.8, 1.0, 4.5, 60.0, 1e6 + 2047.5):
        x = _standard_gamma(torch.full((20_000,), a, dtype=dtype))  # >= 4096: Marsaglia-Tsang
        assert x.dtype == dtype and (x > 0).all()
        assert st.kstest(x.double().numpy(), st.gamma(a).cdf).pvalue > 1e-3, a
    # mixed shapes in one call: the boosted (alpha < 1) and the other entries each follow their
    # own Gamma, and a uniform draw of exactly 0 on an unboosted entry cannot make a NaN
    alpha = torch.tensor([0.3, 3.0], dtype=dtype).repeat(10_000)
    x = _standard_gamma(alpha)
    assert torch.isfinite(x).all()
    for a, xs in ((0.3, x[0::2]), (3.0, x[1::2])):
        assert st.kstest(xs.double().numpy(), st.gamma(a).cdf).pvalue > 1e-3, a


@pytest.mark.parametrize("kappa", [float("nan"), -1.0, float("inf")])
def test_rsample_refuses_an_invalid_concentration_even_unvalidated(kappa):
    """A NaN, negative or infinite kappa used to give finite points (at -mu for some): a
    silent wrong answer. The sampler raises, as the vMF's does."""
    loc = unit((3, 4))
    q = PowerSpherical(loc, torch.full((3,), kappa, dtype=F64), validate_args=False)
    with pytest.raises(RuntimeError, match="PowerSpherical: concentration"):
        q.rsample()


@pytest.mark.parametrize("kind", ["power", "vmf"])
def test_a_nan_raw_scale_raises_in_every_spherical_latent(kind):
    from pyg_spherical import make_latent

    layer = make_latent(kind, 4).train()
    with pytest.raises(RuntimeError, match="concentration|kappa"):
        layer(torch.randn(3, 4), torch.full((3, 1), float("nan")))
