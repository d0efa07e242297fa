"""Tests of the MNIST VAE (pyg_spherical.vae) and the generic trainer (pyg_spherical.repro.training).

References are independent of the code under test: the marginal likelihood of small models is
computed by deterministic quadrature over the latent space (R^1, S^1, S^2), Monte Carlo checks use
tolerances derived from their own standard errors, and Glorot bounds / warm-up values are closed
forms. Everything runs on tiny models (data dimension 8-64) in a few seconds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyg_spherical.repro.training import EarlyStopping, Trainer, linear_warmup, training_segments
from pyg_spherical.vae import MLP, VAE, bernoulli_log_prob

torch.set_num_threads(1)


def tiny(latent, dim, D=8, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    return VAE(latent, dim, in_features=D, encoder_hidden=(16,), decoder_hidden=(16,), **kw).to(dtype)


def binary(n, D, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, D), 0.4, dtype=dtype), generator=g)


# ---------------------------------------------------------------- exact marginal likelihoods
def log_px_quadrature(model, x):
    r"""log p(x) = log \int p(x|z) p(z) dz by deterministic quadrature over the latent space."""
    kind, d = model.kind, model.dim
    with torch.no_grad():
        if kind == "normal" and d == 1:
            z = torch.linspace(-12, 12, 48001, dtype=torch.float64).unsqueeze(-1)
            log_w = -0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi) + math.log(24 / 48000)
        elif kind in ("vmf", "power") and d == 2:  # periodic trapezoid rule: spectrally accurate
            n = 4000
            th = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
            z = torch.stack([th.cos(), th.sin()], -1)
            log_w = torch.full((n,), math.log(1 / n))  # prior 1/(2 pi) x d theta
        elif kind in ("vmf", "power") and d == 3:  # Gauss-Legendre in cos(theta) x trapezoid in phi
            t, wt = np.polynomial.legendre.leggauss(300)
            nphi = 600
            phi = np.arange(nphi) * (2 * np.pi / nphi)
            T, P = np.meshgrid(t, phi, indexing="ij")
            r = np.sqrt(1 - T**2)
            z = torch.tensor(np.stack([r * np.cos(P), r * np.sin(P), T], -1).reshape(-1, 3))
            W = (wt[:, None] * np.full(nphi, 2 * np.pi / nphi)[None, :]).reshape(-1) / (4 * np.pi)
            log_w = torch.tensor(np.log(W))
        else:
            raise NotImplementedError
        lp = bernoulli_log_prob(model.decode(z).unsqueeze(1), x.unsqueeze(0))  # (Z, B)
        return torch.logsumexp(lp + log_w.unsqueeze(1), dim=0)


@pytest.mark.parametrize("latent,dim", [("normal", 1), ("vmf", 2), ("vmf", 3), ("power", 2),
                                        ("power", 3)])
def test_iwae_matches_exact_marginal_likelihood(latent, dim):
    kw = {"min_concentration": 0.0} if latent == "power" else {}
    model = tiny(latent, dim, **kw).eval()
    with torch.no_grad():  # sharpen the decoder so that p(x|z) varies strongly with z
        model.decoder[-1].weight.mul_(4.0)
        if latent == "power":
            # q(z|x) vanishes at -mu like (1 + mu^T z)^kappa, so the importance weights
            # p(x|z) p(z) / q(z|x) have infinite variance once kappa >= (d - 1) / 2 (and the
            # standard errors below mean nothing); kappa = 0.2 keeps it finite for d = 2, 3
            model.scale_head.weight.zero_()
            model.scale_head.bias.fill_(math.log(math.expm1(0.2)))
    x = binary(6, 8)
    exact = log_px_quadrature(model, x)
    S = 4000
    torch.manual_seed(0)
    ll = model.log_likelihood(x, num_samples=S, batch_size=3)
    torch.manual_seed(1)
    lw = model.iw_log_weights(x, 20000).detach()
    w = torch.exp(lw - lw.max(0).values)
    se = (w.std(0) / w.mean(0)) / math.sqrt(S)  # delta method: sd of log(mean of S weights)
    assert ll.shape == (6,) and ll.dtype == torch.float64
    assert torch.all(se < 0.1), se  # the check below is meaningful
    assert torch.all((ll - exact).abs() < 5 * se + 1e-6), (ll, exact, se)
    # and it is not trivially true: a single-sample ELBO is far from log p(x)
    elbo, _, _ = model.elbo(x, num_samples=2000)
    assert torch.all(exact - elbo > 10 * se)


@pytest.mark.parametrize("latent,dim", [("normal", 4), ("vmf", 4), ("power", 4)])
def test_ll_at_least_elbo_and_one_sample_weights_average_to_elbo(latent, dim):
    model = tiny(latent, dim).eval()
    x = binary(10, 8, seed=3)
    torch.manual_seed(0)
    elbo, rec, kl = model.elbo(x, num_samples=4000)
    ll = model.log_likelihood(x, num_samples=500)
    assert torch.all(ll >= elbo), (ll - elbo)
    # E_q[log p(x|z) + log p(z) - log q(z|x)] = RE - KL: log_prob of q and p agree with the KL
    lw = model.iw_log_weights(x, 20000)
    se = lw.std(0) / math.sqrt(lw.shape[0])
    assert torch.all((lw.mean(0) - elbo).abs() < 5 * se + 0.05), (lw.mean(0), elbo, se)
    assert torch.allclose(elbo, rec - kl)


def _mp_kl_to_prior(latent, m, kappa_or_sigma, mu=None):
    """KL(q || p) of one posterior, with mpmath at 50 digits: vMF (paper eq. 5), Power
    Spherical (lgamma / digamma closed form) or a diagonal Gaussian against N(0, I)."""
    import mpmath as mp

    mp.mp.dps = 50
    if latent == "normal":
        return float(sum(0.5 * (mp.mpf(s) ** 2 + mp.mpf(u) ** 2 - 1) - mp.log(mp.mpf(s))
                         for s, u in zip(kappa_or_sigma, mu)))
    k, h = mp.mpf(kappa_or_sigma), mp.mpf(m) / 2
    log_area = mp.log(2) + h * mp.log(mp.pi) - mp.loggamma(h)
    if latent == "vmf":
        a = mp.besseli(h, k) / mp.besseli(h - 1, k)
        log_c = (h - 1) * mp.log(k) - h * mp.log(2 * mp.pi) - mp.log(mp.besseli(h - 1, k))
        return float(k * a + log_c + log_area)
    b = mp.mpf(m - 1) / 2
    a = b + k
    return float(mp.loggamma(a + b) - mp.loggamma(a) - mp.loggamma(2 * b) + mp.loggamma(b)
                 - k * (mp.digamma(a + b) - mp.digamma(a)))


@pytest.mark.parametrize("latent", ["vmf", "power", "normal"])
def test_elbo_kl_near_zero_matches_mpmath(latent):
    """Posteriors a hair away from the prior (KL ~ 1e-9 nats): the ELBO's KL term equals the
    50-digit closed form to 1e-8 relative, so a KL that cancels (or is clamped at 0) fails."""
    m = 4
    model = tiny(latent, m, min_concentration=1e-4) if latent != "normal" else tiny(latent, m)
    with torch.no_grad():
        for head in (model.loc_head, model.scale_head):
            head.weight.zero_()
        model.loc_head.bias.copy_(torch.tensor([1.0, 1e-5, 2e-5, -1e-5][:m]))
        # vMF / Power: kappa = softplus(-30) + 1e-4; Gaussian: log sigma = 3e-5
        model.scale_head.bias.fill_(-30.0 if latent != "normal" else 3e-5)
        if latent == "normal":
            model.loc_head.bias.mul_(1e-4)
    x = binary(3, 8, seed=7)
    with torch.no_grad():
        _, _, kl = model.elbo(x)
        q = model.posterior(x)
    if latent == "normal":
        ref = _mp_kl_to_prior(latent, m, q.base_dist.scale[0].tolist(), q.base_dist.loc[0].tolist())
    else:
        ref = _mp_kl_to_prior(latent, m, float(q.concentration[0]))
    assert 1e-11 < ref < 1e-6
    np.testing.assert_allclose(kl.numpy(), ref, rtol=1e-8, atol=0)


def test_renamed_arguments_still_work_and_warn():
    """``VAE(latent_dim=...)`` and ``sample(generator=...)`` keep working, with a warning."""
    with pytest.warns(DeprecationWarning, match="latent_dim"):
        old = VAE("vmf", latent_dim=3, in_features=8, encoder_hidden=(16,), decoder_hidden=(16,))
    assert old.dim == 3 and old.latent.dim == 3
    g = torch.Generator().manual_seed(0)
    with pytest.warns(DeprecationWarning, match="generator"):
        a = old.sample(5, generator=g)
    with pytest.warns(DeprecationWarning):
        b = old.sample(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)  # the generator's seed still fixes the draws


@pytest.mark.parametrize("latent", ["vmf", "normal"])
def test_samples_decode_draws_of_the_prior(latent):
    """``sample`` decodes draws of ``prior()``: under one seed, the same images as decoding the
    prior's own draws, which are unit vectors (vMF) or standard normal (Gaussian)."""
    model = tiny(latent, 3)
    torch.manual_seed(5)
    got = model.sample(2000, probs=False)
    torch.manual_seed(5)
    z = model.prior().sample((2000,))
    with torch.no_grad():
        torch.testing.assert_close(got, model.decode(z))
    if latent == "vmf":
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(2000, dtype=z.dtype))
    else:  # each coordinate N(0, 1): mean within 4 standard errors, variance within 10%
        assert z.mean(0).abs().max() < 4 / math.sqrt(2000)
        assert (z.var(0) - 1).abs().max() < 0.1


def test_log_likelihood_batching_and_logspace():
    model = tiny("vmf", 3).eval()
    x = binary(7, 8, seed=4)
    torch.manual_seed(5)
    a = model.log_likelihood(x, num_samples=64, batch_size=7)
    torch.manual_seed(5)
    lw = model.iw_log_weights(x, 64)
    ref = torch.log(torch.exp(lw.double()).mean(0))  # naive (safe at this scale)
    assert torch.allclose(a, ref, atol=1e-10)
    b = model.log_likelihood(x, num_samples=64, batch_size=2)  # other chunking, other draws
    assert b.shape == (7,) and torch.all((a - b).abs() < 1.0)
    # log space: a decoder with huge logits gives log-weights ~ -1e4, still finite
    with torch.no_grad():
        model.decoder[-1].bias.add_(-2000.0)
    assert torch.isfinite(model.log_likelihood(x, num_samples=32)).all()
    with pytest.raises(ValueError):
        model.log_likelihood(x, num_samples=0)


# ------------------------------------------------------------------ shapes, dtypes, devices
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("latent", ["vmf", "normal", "power"])
def test_shapes_dtypes_devices(latent, dtype, device):
    model = VAE(latent, 5).to(device=device, dtype=dtype)
    x = torch.bernoulli(torch.rand(3, 784, device=device, dtype=dtype))
    elbo, rec, kl = model.elbo(x)
    for t in (elbo, rec, kl):
        assert t.shape == (3,) and t.dtype == dtype and t.device.type == device.type
    ll = model.log_likelihood(x, num_samples=10)
    assert ll.shape == (3,) and ll.dtype == dtype
    z = model.embed(x)
    assert z.shape == (3, 5)
    if latent in ("vmf", "power"):
        assert torch.allclose(z.norm(dim=-1), torch.ones(3, dtype=dtype, device=device), atol=1e-5)
    s = model.sample(4)
    assert s.shape == (4, 784) and s.dtype == dtype and bool(((s >= 0) & (s <= 1)).all())
    model.train()
    assert model(x).shape == (3, 784)
    loss, r, k = model.loss(x, beta=0.3)
    assert loss.shape == () and torch.allclose(loss, -(r - 0.3 * k).mean())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_architecture_and_glorot_init():
    torch.manual_seed(0)
    for latent, scale_dim in (("vmf", 1), ("normal", 10), ("power", 1)):
        model = VAE(latent, 10)
        lin = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        shapes = [tuple(m.weight.shape) for m in lin]
        assert shapes == [(256, 784), (128, 256), (10, 128), (scale_dim, 128), (128, 10),
                          (256, 128), (784, 256)]
        relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
        assert len(relus) == 4  # two in the encoder, two in the decoder, none on the outputs
        for m in lin:
            fan_out, fan_in = m.weight.shape
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert m.weight.abs().max() <= bound and torch.all(m.bias == 0)
            if m.weight.numel() > 10000:  # uniform(-a, a) has variance a^2 / 3
                assert abs(m.weight.var().item() / (bound**2 / 3) - 1) < 0.05
    with pytest.raises(ValueError):
        VAE("vmf", 1)  # the S-VAE needs the circle at least
    with pytest.raises(ValueError):
        VAE("poincare", 2)
    with pytest.raises(ValueError):
        MLP([784])


def test_bernoulli_log_prob_closed_form():
    logits = torch.tensor([[0.0, 2.0, -3.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    p = torch.sigmoid(logits)
    ref = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    assert torch.allclose(bernoulli_log_prob(logits, x), ref)
    assert torch.allclose(bernoulli_log_prob(logits.expand(4, 1, 3), x), ref.expand(4, 1))


def test_vmf_pole_draws_do_not_poison_gradients():
    """Regression: float32 vMF draws that round onto a pole at d = 2 (~1e-4 of them) once gave
    NaN in d z / d kappa; the sampler's angle parameterisation keeps every gradient finite."""
    model = tiny("vmf", 2, D=8, dtype=torch.float32)
    with torch.no_grad():
        model.scale_head.bias.fill_(-30.0)  # kappa = 1 (+ 1e-13): where pole draws show up
        model.loc_head.bias.fill_(0.1)  # an all-zero input would otherwise give loc_raw = 0
    x = binary(50000, 8, dtype=torch.float32)
    torch.manual_seed(0)
    loss, _, _ = model.loss(x)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_power_latent_training_steps_lower_the_loss():
    """A Power Spherical latent (P-VAE) trains end to end: a few Adam steps on a fixed batch lower
    the negative ELBO, with finite gradients everywhere, in float32."""
    torch.manual_seed(0)
    model = VAE("power", 10, in_features=64, encoder_hidden=(32,), decoder_hidden=(32,))
    assert model.kind == "power" and model.scale_head.out_features == 1
    x = _toy_problem()[0][:128].float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at(seed):
        torch.manual_seed(seed)
        return model.loss(x)[0]

    with torch.no_grad():
        before = sum(loss_at(s).item() for s in range(5)) / 5
    for step in range(40):
        loss = loss_at(100 + step)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
    with torch.no_grad():
        after = sum(loss_at(s).item() for s in range(5)) / 5
    assert after < before - 5.0, (before, after)
    z = model.embed(x)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(128))


# ---------------------------------------------------------------------------- training utils
def test_linear_warmup_and_early_stopping():
    assert [linear_warmup(e, 4) for e in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert linear_warmup(0, 0) == 1.0
    es = EarlyStopping(patience=3, mode="max", min_epochs=5)
    vals = [1.0, 2.0, 1.5, 1.9, 1.8, 1.7, 1.6]
    flags = [es.step(v) for v in vals]
    assert flags == [True, True, False, False, False, False, False]
    assert es.best == 2.0 and es.best_epoch == 1
    assert es.should_stop  # 5 bad epochs >= 3, 7 seen >= 5
    es2 = EarlyStopping(patience=3, mode="max", min_epochs=10)
    for v in vals:
        es2.step(v)
    assert not es2.should_stop  # min_epochs not reached
    es3 = EarlyStopping(patience=2, mode="min")
    es3.load_state_dict(es.state_dict() | {"mode": "min", "patience": 2})
    assert es3.best == 2.0 and es3.is_better(1.0) and not es3.is_better(float("nan"))


def _toy_problem(seed=0):
    """Binary data from 4 prototypes with 5% pixel flips; a VAE learns it within a few epochs."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.bernoulli(torch.full((4, 64), 0.5), generator=g)
    lab = torch.randint(0, 4, (768,), generator=g)
    flip = torch.bernoulli(torch.full((768, 64), 0.05), generator=g)
    data = (protos[lab] + flip) % 2
    return data[:512], data[512:]


def _make_trainer(latent, tmp_path, train, max_epochs=6):
    from pyg_spherical.repro.datasets import DynamicBinarizedLoader

    torch.manual_seed(0)
    model = VAE(latent, 3, in_features=64, encoder_hidden=(32,), decoder_hidden=(32,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def step(xb, epoch):
        loss, rec, kl = model.loss(xb, linear_warmup(epoch, 2))
        return {"loss": loss, "elbo": rec - kl}

    def evaluate(m, epoch):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            e, _, _ = m.elbo(train[1])
        return {"elbo": e.mean().item()}

    trainer = Trainer(model, opt, step, evaluate, monitor="elbo", max_epochs=max_epochs,
                      early_stopping=EarlyStopping(patience=50, min_epochs=2),
                      checkpoint_dir=tmp_path)
    # binarize=False: the toy data are already binary (the loader still shuffles per epoch)
    loader = DynamicBinarizedLoader(train[0], batch_size=32, seed=0, binarize=False)
    return model, trainer, loader


@pytest.mark.parametrize("latent", ["vmf", "normal", "power"])
def test_short_training_improves_elbo_and_resumes_exactly(latent, tmp_path):
    data = _toy_problem()
    model, trainer, loader = _make_trainer(latent, tmp_path / "a", data)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        before = model.elbo(data[1])[0].mean().item()
    hist = trainer.fit(loader)
    assert [r["epoch"] for r in hist] == list(range(1, 7)) and trainer.stop_reason == "max_epochs"
    after = max(r["val_elbo"] for r in hist)
    assert after > before + 5.0, (before, after)  # ~44 nats per image for uniform pixels
    assert hist[-1]["train_elbo"] > hist[0]["train_elbo"]
    assert (tmp_path / "a" / "best.pt").is_file() and (tmp_path / "a" / "last.pt").is_file()
    best_epoch = max(range(6), key=lambda i: hist[i]["val_elbo"]) + 1
    assert trainer.stopper.best_epoch + 1 == best_epoch

    # interrupted after 3 epochs and resumed in a new trainer: bit-identical to the straight run
    _, t1, l1 = _make_trainer(latent, tmp_path / "b", data)
    t1.fit(l1, max_new_epochs=3)
    assert t1.epoch == 3 and not t1.finished
    m2, t2, l2 = _make_trainer(latent, tmp_path / "b", data)
    assert t2.resume()
    t2.fit(l2)
    assert t2.epoch == 6
    for (k, a), b in zip(model.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert [r["val_elbo"] for r in t2.history] == [r["val_elbo"] for r in hist]
    # a finished run is not trained further; a larger cap continues it
    _m3, t3, l3 = _make_trainer(latent, tmp_path / "b", data, max_epochs=7)
    t3.resume()
    assert not t3.finished
    t3.fit(l3)
    assert t3.epoch == 7


def test_training_segments_survive_resume_and_old_checkpoints_load(tmp_path):
    """A run trained in two sessions lists both in its checkpoint; one written before
    segments were recorded (no such key) still resumes, with none."""
    data = _toy_problem()
    _, t1, l1 = _make_trainer("normal", tmp_path, data)
    t1.segments.append({"first_epoch": 1, "commit": "aaaa"})
    t1.fit(l1, max_new_epochs=2)
    _, t2, l2 = _make_trainer("normal", tmp_path, data)
    assert t2.resume() and t2.segments == [{"first_epoch": 1, "commit": "aaaa"}]
    t2.segments.append({"first_epoch": t2.epoch + 1, "commit": "bbbb"})
    t2.fit(l2, max_new_epochs=1)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert [seg["commit"] for seg in state["segments"]] == ["aaaa", "bbbb"]
    assert state["segments"][1]["first_epoch"] == 3
    del state["segments"]
    torch.save(state, tmp_path / "last.pt")
    _, t3, _ = _make_trainer("normal", tmp_path, data)
    assert t3.resume() and t3.epoch == 3
    assert t3.segments == [{"first_epoch": 1, "unrecorded": True}]
    assert training_segments(state) == t3.segments and training_segments({"epoch": 0}) == []


# ------------------------------------------------------------- posterior summaries
class _StubPosterior(torch.nn.Module):
    """Posteriors with known spreads and means, for :func:`posterior_summary`."""

    def __init__(self, kind, spread, means):
        super().__init__()
        self.kind, self.spread, self.means = kind, spread, means

    def posterior(self, x):
        from pyg_spherical.distributions import VonMisesFisher

        rows = self.spread[x[:, 0].long()]
        if self.kind == "normal":
            return torch.distributions.Independent(
                torch.distributions.Normal(torch.zeros_like(rows).expand(-1, 2), rows), 1)
        loc = torch.nn.functional.normalize(torch.ones(len(x), 3, dtype=torch.float64), dim=-1)
        return VonMisesFisher(loc, rows.squeeze(-1))

    def embed(self, x):
        return self.means[x[:, 0].long()]


@pytest.mark.parametrize("kind", ["normal", "vmf"])
def test_posterior_summary_quantiles_and_active_units(kind):
    """Quantiles against numpy's, and the active-unit count of means whose per-unit variances
    are known in closed form (alternating +-a over n rows: variance a^2 n / (n - 1)), across
    the 2000-image chunks the summary encodes in."""
    from pyg_spherical.repro.evaluation import posterior_summary

    n = 2500
    gen = torch.Generator().manual_seed(0)
    spread = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 50 + 0.5
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
    amplitude = torch.tensor([0.0, 0.07, 0.15, 1.0], dtype=torch.float64)  # var 0, .0049, .0225, 1
    means = sign[:, None] * amplitude
    x = torch.arange(n, dtype=torch.float64)[:, None]
    out = posterior_summary(_StubPosterior(kind, spread, means), x)
    name = "std" if kind == "normal" else "concentration"
    values = spread.expand(-1, 2 if kind == "normal" else 1).flatten().numpy()
    for q, key in ((0.1, "q10"), (0.5, "median"), (0.9, "q90")):
        assert out[f"{name}_{key}"] == pytest.approx(float(np.quantile(values, q)), rel=1e-12)
    assert out["active_units"] == 2


# ------------------------------------------------------------- LL estimators
class _LinearGaussianVAE(torch.nn.Module):
    """A 1-d Gaussian latent with ``q(z|x) = N(m, s^2)`` for every ``x`` and Bernoulli logits
    ``a z + b``: ``log p(x)`` and ``E_q log p(x|z)`` are one-dimensional integrals."""

    kind = "normal"

    def __init__(self, m=0.0, s=1.0, a=(2.0, -1.0, 0.5), b=(0.3, -0.2, 0.1)):
        super().__init__()
        self.m, self.s = m, s
        self.a, self.b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)

    def _normal(self, loc, scale, batch):
        d = torch.distributions.Normal(torch.full((batch, 1), loc, dtype=torch.float64),
                                       torch.full((batch, 1), scale, dtype=torch.float64))
        return torch.distributions.Independent(d, 1)

    def posterior(self, x):
        return self._normal(self.m, self.s, len(x))

    def prior(self, device=None, dtype=None):
        return torch.distributions.Independent(torch.distributions.Normal(
            torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)), 1)

    def decode(self, z):
        return z * self.a + self.b

    def quadrature(self, x):
        """``(log p(x), E_q log p(x|z))`` by Gauss-Hermite quadrature (numpy)."""
        nodes, weights = np.polynomial.hermite_e.hermegauss(80)
        weights = weights / weights.sum()
        logits = nodes[:, None] * self.a.numpy() + self.b.numpy()
        log_px_z = (x * logits - np.logaddexp(0, logits)).sum(-1)
        log_px = np.log(np.sum(weights * np.exp(log_px_z)))
        zq = self.m + self.s * nodes
        logits_q = zq[:, None] * self.a.numpy() + self.b.numpy()
        e_log = np.sum(weights * (x * logits_q - np.logaddexp(0, logits_q)).sum(-1))
        return log_px, e_log


def test_ll_estimators_against_quadrature():
    """The importance-sampled LL estimates ``log p(x)`` for a proposal ``q != p``; with ``q = p``
    the one-decode estimator of the authors' example code is exactly ``log p(x|z_0)``, whose
    mean is ``E_q log p(x|z)`` (below ``log p(x)`` here by Jensen, by more than the
    tolerances); each against Gauss-Hermite quadrature within 4 standard errors."""
    from pyg_spherical.repro.evaluation import ll_estimators

    xrow = np.array([1.0, 0.0, 1.0])
    x = torch.tensor(xrow).repeat(400, 1)
    log_px, _ = _LinearGaussianVAE().quadrature(xrow)
    torch.manual_seed(0)
    is_ll, _ = ll_estimators(_LinearGaussianVAE(m=0.3, s=0.9), x, num_samples=2000,
                             batch_size=100)
    se_is = is_ll.std().item() / math.sqrt(len(x))
    # the log of a 2000-sample mean is biased low by ~Var(w) / (2 S E[w]^2) < 1e-3 here
    assert abs(is_ll.mean().item() - log_px) < 4 * se_is + 1e-3
    model = _LinearGaussianVAE()
    is_ll, one = ll_estimators(model, x, num_samples=2000, batch_size=100)
    log_px, e_log = model.quadrature(xrow)
    se_is = is_ll.std().item() / math.sqrt(len(x))
    se_one = one.std().item() / math.sqrt(len(x))
    assert abs(log_px - e_log) > 8 * se_one  # the two tolerances below cannot both hold
    assert abs(is_ll.mean().item() - log_px) < 4 * se_is + 1e-3
    assert abs(one.mean().item() - e_log) < 4 * se_one
    assert ll_estimators(model, x[:0])[0].shape == (0,)


def test_ll_estimators_share_the_importance_ratios():
    """A decoder that ignores ``z`` (``a = 0``) makes ``log p(x|z)`` a constant ``c``: both
    estimators are then ``c + logmeanexp_s w_s``, ``w = p(z) / q(z|x)``, from the same draws.
    ``E_q[w] = 1``, and over rows the spread of ``log mean_s w_s`` is ``sqrt(Var_q(w) / S)``,
    with ``Var_q(w) = E_q[w^2] - 1`` by quadrature: the ratios are there, with the right sign."""
    from pyg_spherical.repro.evaluation import ll_estimators

    m, s, S, rows = 0.5, 0.8, 4000, 200
    model = _LinearGaussianVAE(m=m, s=s, a=(0.0, 0.0, 0.0))
    xrow = np.array([1.0, 0.0, 1.0])
    c = float((xrow * model.b.numpy() - np.logaddexp(0, model.b.numpy())).sum())
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z = m + s * nodes
    log_w = -z**2 / 2 + (z - m) ** 2 / (2 * s**2) + np.log(s)  # log N(z; 0, 1) - log N(z; m, s^2)
    var_w = np.sum(weights / weights.sum() * np.exp(2 * log_w)) - 1
    torch.manual_seed(1)
    is_ll, one = ll_estimators(model, torch.tensor(xrow).repeat(rows, 1), num_samples=S)
    torch.testing.assert_close(is_ll, one, rtol=0, atol=1e-12)
    assert abs(is_ll.mean().item() - c) < 4 * math.sqrt(var_w / S / rows) + 2e-3
    # the sample std over 200 rows is within ~5% of its expectation (1 standard error)
    assert is_ll.std().item() == pytest.approx(math.sqrt(var_w / S), rel=0.25)
    with pytest.raises(ValueError, match="num_samples"):
        ll_estimators(model, torch.tensor(xrow)[None], num_samples=0)
