"""Tests for the hyperspherical latent-recovery experiment (paper section 5.1, Figure 1)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import i0e, i1e
from torch.distributions import kl_divergence

from pyg_spherical.distributions import HypersphericalUniform, VonMisesFisher
from pyg_spherical.repro import synthetic as S

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread avoids oversubscription slow-downs on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ data
def test_mixture_components_match_vmf_moments():
    u, labels = S.sample_circle_mixture(30000, seed=3, dtype=torch.float64)
    assert u.shape == (30000, 2) and labels.shape == (30000,)
    assert torch.allclose(u.norm(dim=1), torch.ones(30000, dtype=torch.float64), atol=1e-12)
    counts = torch.bincount(labels, minlength=3).double() / 30000
    assert torch.allclose(counts, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.015)
    for c, (mean, kappa) in enumerate(zip(S.DEFAULT_MEANS, S.DEFAULT_KAPPAS)):
        uc = u[labels == c]
        r = uc.mean(0)
        # mean direction and mean resultant length A_2(kappa) = I_1 / I_0
        assert abs(math.atan2(r[1], r[0]) - math.atan2(math.sin(mean), math.cos(mean))) < 0.03
        assert abs(float(r.norm()) - i1e(kappa) / i0e(kappa)) < 0.015


def test_mixture_weights_and_validation():
    _, labels = S.sample_circle_mixture(20000, weights=(0.7, 0.2, 0.1), seed=0)
    frac = torch.bincount(labels, minlength=3).double() / 20000
    assert torch.allclose(frac, torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64), atol=0.015)
    with pytest.raises(ValueError):
        S.sample_circle_mixture(0)
    with pytest.raises(ValueError):
        S.sample_circle_mixture(10, means=(0.0,), kappas=(1.0, 2.0))
    with pytest.raises(ValueError):
        S.sample_circle_mixture(10, kappas=(1.0, -1.0, 2.0))
    with pytest.raises(ValueError):
        S.make_circle_data(10, noise=-0.1)


def test_mixture_log_prob_normalised():
    theta = torch.linspace(-math.pi, math.pi, 20001, dtype=torch.float64)[:-1]
    dens = S.circle_mixture_log_prob(torch.stack([theta.cos(), theta.sin()], -1)).exp()
    assert abs(float(dens.mean() * 2 * math.pi) - 1) < 1e-8
    # matches the component densities
    u = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    q = VonMisesFisher(S._unit(torch.tensor(S.DEFAULT_MEANS, dtype=torch.float64)),
                       torch.tensor(S.DEFAULT_KAPPAS, dtype=torch.float64))
    expected = torch.log(q.log_prob(u).exp().mean())
    assert torch.allclose(S.circle_mixture_log_prob(u)[0], expected)


def test_data_deterministic_and_rng_neutral():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = S.make_circle_data(300, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = S.make_circle_data(300, seed=5)
    c = S.make_circle_data(300, seed=6)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (300, 100) and a.x.dtype == torch.float32
    assert torch.allclose(a.theta, torch.atan2(a.u[:, 1], a.u[:, 0]))


def test_embedding_standardised_noisy_and_nonlinear():
    emb = S.CircleEmbedding(100, map_seed=0)
    theta = torch.rand(20000, dtype=torch.float64) * 2 * math.pi
    fu = emb(S._unit(theta))
    # standardised over the uniform distribution on the circle
    assert fu.mean(0).abs().max() < 0.05
    assert (fu.std(0) - 1).abs().max() < 0.05
    # the same seed gives the same map, another seed another one
    assert torch.equal(S.CircleEmbedding(100, map_seed=0)(fu[:3, :2]), emb(fu[:3, :2]))
    assert not torch.allclose(S.CircleEmbedding(100, map_seed=1)(fu[:3, :2]), emb(fu[:3, :2]))
    # the noise is the one requested
    d = S.make_circle_data(4000, noise=0.1, seed=0, embedding=emb, dtype=torch.float64)
    resid = d.x - emb(d.u)
    assert abs(float(resid.std()) - 0.1) < 0.002
    # non-linear: a linear map of (cos, sin) leaves a large residual
    u = S._unit(theta)
    design = torch.cat([u, torch.ones(len(u), 1, dtype=u.dtype)], 1)
    coef = torch.linalg.lstsq(design, fu).solution
    r2 = 1 - ((fu - design @ coef) ** 2).sum() / ((fu - fu.mean(0)) ** 2).sum()
    assert r2 < 0.9


def test_embedding_is_injective_on_the_circle():
    """Points far apart on the circle stay far apart in R^100 (so the circle is recoverable)."""
    emb = S.CircleEmbedding(100, map_seed=0)
    theta = torch.arange(720, dtype=torch.float64) * (2 * math.pi / 720)
    f = emb(S._unit(theta))
    dist = torch.cdist(f, f)
    gap = (theta[:, None] - theta[None, :]).abs()
    gap = torch.minimum(gap, 2 * math.pi - gap)
    far = gap > 0.2
    assert float(dist[far].min()) > 1.0  # noise 0.1 per coordinate -> ~1 in norm
    # and the manifold distance of clean points is ~0, of noisy points ~noise^2
    assert float(S.manifold_distance(f[:50].float(), emb).max()) < 1e-4
    d = S.make_circle_data(500, noise=0.1, seed=2, embedding=emb)
    assert 0.007 < float(S.manifold_distance(d.x, emb).mean()) < 0.011


# --------------------------------------------------------------------------------------- metrics
def test_circular_correlation_properties():
    rng = np.random.default_rng(0)
    a = rng.uniform(-np.pi, np.pi, 2000)
    assert S.circular_correlation(a, a) == pytest.approx(1.0)
    assert S.circular_correlation(a, a + 1.3) == pytest.approx(1.0)  # rotation
    assert S.circular_correlation(a, -a + 0.4) == pytest.approx(-1.0)  # reflection
    assert abs(S.circular_correlation(a, rng.uniform(-np.pi, np.pi, 2000))) < 0.08
    noisy = S.circular_correlation(a, a + rng.normal(0, 0.5, 2000))
    assert 0.3 < noisy < 0.95
    # the O(N) formula equals the pairwise definition
    x, y = a[:60], (a[:60] + rng.normal(0, 1, 60))
    dx, dy = np.subtract.outer(x, x), np.subtract.outer(y, y)
    iu = np.triu_indices(60, 1)
    sx, sy = np.sin(dx[iu]), np.sin(dy[iu])
    ref = (sx * sy).sum() / np.sqrt((sx**2).sum() * (sy**2).sum())
    assert S.circular_correlation(x, y) == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError):
        S.circular_correlation(a[:5], a[:6])


def test_code_angles_and_radial_spread():
    theta = torch.linspace(-3, 3, 100, dtype=torch.float64)
    u = S._unit(theta)
    assert np.allclose(S.code_angles(u), theta.numpy())
    shifted = 5 * u + torch.tensor([10.0, -4.0], dtype=torch.float64)  # a loop around (10, -4)
    assert S.circular_correlation(theta, S.code_angles(shifted)) == pytest.approx(1.0, abs=1e-3)
    assert S.radial_spread(u) == pytest.approx(0.0, abs=1e-12)
    blob = torch.randn(5000, 2, generator=torch.Generator().manual_seed(0))
    assert S.radial_spread(blob) > 0.4  # Rayleigh radius: CV ~ 0.52
    with pytest.raises(ValueError):
        S.code_angles(torch.zeros(3, 3))


def test_aggregate_kl_known_cases():
    # posteriors that are the prior: KL(q_agg || p) = 0
    n = 400
    g = HypersphericalUniform(2, dtype=torch.float64)
    q = VonMisesFisher(S._unit(torch.rand(n, dtype=torch.float64) * 2 * math.pi),
                       torch.full((n,), 1e-4, dtype=torch.float64))
    assert abs(S.aggregate_kl(q, g, num_samples=2)) < 0.01
    # all posteriors identical: q_agg = q, KL = KL(q || p) in closed form
    q1 = VonMisesFisher(torch.tensor([[0.0, 1.0]], dtype=torch.float64).expand(n, 2),
                        torch.full((n,), 8.0, dtype=torch.float64))
    est = S.aggregate_kl(q1, g, num_samples=5)
    assert est == pytest.approx(float(kl_divergence(q1, g)[0]), rel=0.03)
    # Gaussian: N(m, 1) aggregated over symmetric means +-m vs N(0, I) (positive, below KL(q||p))
    from torch.distributions import Independent, Normal

    loc = torch.zeros(n, 2, dtype=torch.float64)
    loc[: n // 2, 0], loc[n // 2:, 0] = 2.0, -2.0
    qn = Independent(Normal(loc, torch.ones_like(loc)), 1)
    pn = Independent(Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)), 1)
    est = S.aggregate_kl(qn, pn, num_samples=20)
    assert 0.3 < est < 2.0  # each component alone has KL 2
    # the true mixture vs uniform is positive and matches numerical integration
    theta = torch.linspace(-math.pi, math.pi, 200001, dtype=torch.float64)[:-1]
    lp = S.circle_mixture_log_prob(S._unit(theta))
    exact = float((lp.exp() * (lp + math.log(2 * math.pi))).mean() * 2 * math.pi)
    u, _ = S.sample_circle_mixture(50000, seed=1, dtype=torch.float64)
    assert S.true_aggregate_kl(u) == pytest.approx(exact, abs=0.01)


# ---------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("kind", ["ae", "normal", "vmf"])
def test_model_shapes_and_loss(kind):
    torch.manual_seed(0)
    m = S.CircleAutoEncoder(kind, in_features=20, hidden=(16,))
    x = torch.randn(7, 20)
    loss, rec, kl = m.loss(x, beta=0.5)
    assert loss.shape == () and rec.shape == (7,) and kl.shape == (7,)
    assert torch.allclose(loss, (rec + 0.5 * kl).mean())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n_, p in m.named_parameters() if not n_.startswith("scale_head") or kind != "ae")
    z = m.embed(x)
    assert z.shape == (7, 2)
    if kind == "vmf":
        assert torch.allclose(z.norm(dim=1), torch.ones(7), atol=1e-6)
        assert isinstance(m.prior(), HypersphericalUniform)
    if kind == "ae":
        assert (kl == 0).all() and m.latent is None
        with pytest.raises(TypeError):
            m.posterior(x)
    else:
        assert m.posterior(x).batch_shape == (7,)
    with pytest.raises(ValueError):
        S.CircleAutoEncoder(kind, sigma=0.0)


def test_fit_is_seeded_and_learns():
    data = S.make_circle_data(300, seed=0)
    torch.manual_seed(0)
    m1 = S.CircleAutoEncoder("vmf")
    torch.manual_seed(0)
    m2 = S.CircleAutoEncoder("vmf")
    state = torch.get_rng_state()
    h1 = S.fit(m1, data.x, epochs=3, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    h2 = S.fit(m2, data.x, epochs=3, seed=4)
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2]
    assert h1[-1]["loss"] < h1[0]["loss"]
    assert len(h1) == 3 and set(h1[0]) == {"epoch", "loss", "rec", "kl", "beta"}
    h = S.fit(S.CircleAutoEncoder("normal"), data.x, epochs=4, beta=0.5, warmup_epochs=2)
    assert [r["beta"] for r in h] == [0.25, 0.5, 0.5, 0.5]


@pytest.mark.slow
def test_svae_recovers_the_circle():
    """A short S-VAE run recovers the angle, matches the prior and samples on the data curve;
    an untrained model does not."""
    emb = S.CircleEmbedding()
    train = S.make_circle_data(1000, seed=0, embedding=emb)
    test = S.make_circle_data(400, seed=1, embedding=emb)
    torch.manual_seed(0)
    m = S.CircleAutoEncoder("vmf")
    before = S.evaluate_recovery(m, test, emb)
    S.fit(m, train.x, epochs=10, lr=3e-3, seed=0)
    after = S.evaluate_recovery(m, test, emb)
    assert after["circ_corr_mode"] > 0.95
    assert after["circ_corr_mode"] > before["circ_corr_mode"] + 0.2
    assert after["aggregate_kl"] < 0.5
    assert after["prior_sample_error"] < 0.2
    assert before["prior_sample_error"] > 0.5
    assert after["test_mse"] < 0.2
    assert before["test_mse"] > 0.5
    assert after["radial_spread"] < 1e-5
    assert after["z_mode"].shape == (400, 2) and after["z_sample"].shape == (400, 2)


# ------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow  # a CLI run: ~7 s
def test_cli_smoke(tmp_path):
    """The benchmark runs end to end on a tiny setting and writes JSON + PNGs (to --out-dir)."""
    out = "test_circle_smoke"
    cmd = [sys.executable, str(REPO / "benchmarks" / "circle.py"), "--epochs", "1", "--n-train",
           "200", "--n-test", "100", "--hidden", "16", "--no-progress", "--out", out,
           "--out-dir", str(tmp_path)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "(e) S-VAE" in res.stdout and f"wrote {tmp_path / out}.json" in res.stdout
    payload = json.loads((tmp_path / f"{out}.json").read_text())
    summ = payload["by_sigma"]["1"]["summary"]
    assert set(summ) == {"original", "ae", "nvae", "nvae_beta", "svae"}
    assert summ["ae"]["aggregate_kl"] is None
    assert (tmp_path / "figures" / f"{out}_fig1.png").stat().st_size > 10_000
    assert not (REPO / "results" / f"{out}.json").exists()


def test_cli_bad_input_is_one_error_line():
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "circle.py"), "--epochs", "0"],
                         check=False, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 2
    expected = "error: argument --epochs: must be > 0 and finite, got 0"
    assert res.stderr.strip().splitlines() == [expected]
