r"""Hyperspherical latent recovery (paper section 2.3 / 5.1, Figure 1): data, models, metrics.

Data
----
Latent angles come from a mixture of three von Mises-Fisher distributions on the circle
:math:`\mathcal{S}^1` (drawn with :class:`~pyg_spherical.distributions.VonMisesFisher`, ``m = 2``):

.. math::
    c \sim \mathrm{Cat}(\pi), \qquad u \mid c \sim \mathrm{vMF}(\mu_c, \kappa_c), \qquad
    u = (\cos\theta, \sin\theta) \in \mathcal{S}^1 .

Defaults: mean angles :math:`0, 2\pi/3, 4\pi/3`, concentrations ``(2, 5, 10)`` and equal
weights, so the three clusters differ in spread and the circle is covered with varying density.

The observation is a *noisy non-linear* image of ``u`` in :math:`\mathbb{R}^{100}`
(:class:`CircleEmbedding`):

.. math::
    x = \mathrm{diag}(s)^{-1}\big(W_3 \tanh(W_2 \tanh(W_1 u + b_1) + b_2) + b_3 - c\big)
        + \sigma_x \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, I_{100}),

a random two-hidden-layer ``tanh`` MLP ``2 -> 64 -> 64 -> 100`` with Gaussian weights (variance
``gain^2 / fan_in``, ``gain = 2`` so that the units are in their non-linear range) and biases
drawn from a generator with a **fixed seed** (``map_seed``, independent of the sample seed), so
that every data set of a given ``map_seed`` lies on the same closed curve. ``c`` and ``s`` are
the mean and standard deviation of each output over the *uniform* distribution on the circle
(3600 equally spaced angles): the clean signal has zero mean and unit variance per coordinate,
and ``noise = sigma_x`` (default 0.1) is relative to that. The map is smooth and (for the default
seed, checked in ``tests/test_synthetic.py``) injective on the circle, so the circle can be
recovered from ``x`` up to a rotation and a reflection.

Models
------
:class:`CircleAutoEncoder` is an MLP auto-encoder ``100 -> 128 -> 64 -> [2] -> 64 -> 128 -> 100``
with a two-unit bottleneck, in three flavours selected by ``kind``:

* ``"ae"``: a deterministic auto-encoder, loss ``||x - f(z)||^2 / (2 sigma^2)``;
* ``"normal"``: an N-VAE (:class:`~pyg_spherical.nn.GaussianLatent`, prior ``N(0, I_2)``);
* ``"vmf"``: an S-VAE (:class:`~pyg_spherical.nn.VMFLatent`, prior ``U(S^1)``),

with a Gaussian decoder :math:`p(x|z) = \mathcal{N}(f(z), \sigma^2 I)` of fixed ``sigma`` and the
(possibly scaled, ``beta < 1``) negative ELBO

.. math:: \ell(x) = \mathbb{E}_{q(z|x)}\Big[\tfrac{\|x - f(z)\|^2}{2\sigma^2}\Big]
                    + \beta\, \mathrm{KL}(q(z|x) \,\|\, p(z))

(the constant :math:`\tfrac D2 \log 2\pi\sigma^2` is left out). :func:`fit` trains one with Adam.

Metrics (how well was the circle recovered?)
--------------------------------------------
* :func:`circular_correlation` -- the Fisher & Lee (1983) correlation between the true angle and
  the angle of the code (:func:`code_angles`); invariant to rotations, ``-1`` for a reflection,
  ``|rho| = 1`` iff the recovered angle is an isometry of the true one.
* :func:`aggregate_kl` -- :math:`\mathrm{KL}(q(z) \| p(z))` of the aggregate posterior
  :math:`q(z) = \frac1N \sum_n q(z|x_n)` to the prior, by Monte Carlo; small when samples from the
  prior land where the data are (the "holes" of section 2.3).
* :func:`manifold_distance` -- squared distance per coordinate from (decoded prior samples) to
  the clean data curve :math:`f(\mathcal{S}^1)`: do samples of the generative model land on it?
* :func:`radial_spread` -- coefficient of variation of ``||z - centre||``: 0 for a circle.

:func:`evaluate_recovery` computes all of them for a trained model on a held-out set.

All functions are pure (no printing, no files); randomness comes from explicit seeds and leaves
torch's global RNG state untouched where noted.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .._utils import renamed
from ..distributions import HypersphericalUniform, VonMisesFisher
from ..nn.latent import LatentLayer, make_latent
from ..vae import MLP, glorot_init_
from ._utils import to_numpy

__all__ = [
    "DEFAULT_KAPPAS",
    "DEFAULT_MEANS",
    "KINDS",
    "CircleAutoEncoder",
    "CircleData",
    "CircleEmbedding",
    "aggregate_kl",
    "circle_mixture_log_prob",
    "circular_correlation",
    "code_angles",
    "evaluate_recovery",
    "fit",
    "make_circle_data",
    "manifold_distance",
    "radial_spread",
    "sample_circle_mixture",
    "true_aggregate_kl",
]

#: mean angles (radians) of the three vMF components
DEFAULT_MEANS = (0.0, 2 * math.pi / 3, 4 * math.pi / 3)
#: concentrations of the three components
DEFAULT_KAPPAS = (2.0, 5.0, 10.0)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _unit(angles: Tensor) -> Tensor:
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def sample_circle_mixture(n: int, means: Sequence[float] = DEFAULT_MEANS,
                          kappas: Sequence[float] = DEFAULT_KAPPAS,
                          weights: Sequence[float] | None = None, seed: int = 0,
                          dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    r"""``n`` draws from a mixture of vMFs on :math:`\mathcal{S}^1`.

    Component ``c ~ Cat(weights)`` (equal weights by default), then
    ``u ~ VonMisesFisher((cos mean_c, sin mean_c), kappa_c)``. Torch's global RNG state is
    restored afterwards (the draws come from ``torch.manual_seed(seed)`` inside a fork).

    Returns:
        ``(u, labels)``: unit vectors ``(n, 2)`` and component labels ``(n,)`` (int64).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if len(means) != len(kappas) or len(means) == 0:
        raise ValueError("means and kappas must be non-empty and of the same length")
    k = len(means)
    w = (torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None
         else torch.as_tensor(weights, dtype=torch.float64))
    if w.shape != (k,) or (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"weights must be {k} non-negative numbers with a positive sum")
    loc = _unit(torch.as_tensor(means, dtype=dtype))
    kappa = torch.as_tensor(kappas, dtype=dtype)
    if not (kappa > 0).all():
        raise ValueError("kappas must be > 0")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        labels = torch.multinomial(w.double(), n, replacement=True)
        u = VonMisesFisher(loc[labels], kappa[labels]).sample()
    return u, labels


def circle_mixture_log_prob(u: Tensor, means: Sequence[float] = DEFAULT_MEANS,
                            kappas: Sequence[float] = DEFAULT_KAPPAS,
                            weights: Sequence[float] | None = None) -> Tensor:
    r"""Log density of the mixture on :math:`\mathcal{S}^1` (w.r.t. arc length), shape ``u.shape[:-1]``.

    ``log sum_c pi_c C_2(kappa_c) exp(kappa_c mu_c^T u)``.
    """
    k = len(means)
    w = (torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None
         else torch.as_tensor(weights, dtype=torch.float64))
    w = (w / w.sum()).to(u.dtype)
    q = VonMisesFisher(_unit(torch.as_tensor(means, dtype=u.dtype)),
                       torch.as_tensor(kappas, dtype=u.dtype))
    lp = q.log_prob(u.unsqueeze(-2))  # (..., k)
    return torch.logsumexp(lp + torch.log(w), dim=-1)


class CircleEmbedding(nn.Module):
    r"""A fixed random smooth map :math:`f: \mathcal{S}^1 \to \mathbb{R}^{D}` (no trainable parameters).

    ``f(u) = (W_3 tanh(W_2 tanh(W_1 u + b_1) + b_2) + b_3 - c) / s`` (see the module docstring),
    weights ``N(0, gain^2 / fan_in)``, biases ``N(0, 0.5^2)``, drawn from
    ``torch.Generator().manual_seed(map_seed)``; ``c``, ``s`` standardise every output over the
    uniform distribution on the circle.

    Args:
        out_features (int): ``D`` (paper: 100).
        hidden (sequence of int): widths of the hidden ``tanh`` layers (default ``(64, 64)``).
        gain (float): weight scale (default 2: clearly non-linear, not saturated).
        map_seed (int): seed of the weights; the same seed gives the same map.

    Shapes:
        ``u (..., 2) -> (..., D)``; ``u`` need not be unit length (the map is defined on
        :math:`\mathbb{R}^2`), but the standardisation refers to the circle.
    """

    def __init__(self, out_features: int = 100, hidden: Sequence[int] = (64, 64),
                 gain: float = 2.0, map_seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(map_seed))
        sizes = [2, *[int(h) for h in hidden], int(out_features)]
        self.out_features = int(out_features)
        self.map_seed = int(map_seed)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.register_buffer(f"weight{i}", torch.randn(b, a, generator=g, dtype=torch.float64)
                                 * (gain / math.sqrt(a)))
            self.register_buffer(f"bias{i}", 0.5 * torch.randn(b, generator=g, dtype=torch.float64))
        self.num_layers = len(sizes) - 1
        self.register_buffer("center", torch.zeros(out_features, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float64))
        ref = self._raw(_unit(torch.arange(3600, dtype=torch.float64) * (2 * math.pi / 3600)))
        self.center.copy_(ref.mean(0))
        self.scale.copy_(ref.std(0))

    def _raw(self, u: Tensor) -> Tensor:
        h = u
        for i in range(self.num_layers):
            h = h @ getattr(self, f"weight{i}").T + getattr(self, f"bias{i}")
            if i < self.num_layers - 1:
                h = torch.tanh(h)
        return h

    def forward(self, u: Tensor) -> Tensor:
        """``f(u)``: ``(..., 2) -> (..., D)``, computed in float64 and returned in ``u.dtype``."""
        dtype = u.dtype
        return ((self._raw(u.to(torch.float64)) - self.center) / self.scale).to(dtype)

    def extra_repr(self) -> str:
        return f"out_features={self.out_features}, map_seed={self.map_seed}"


class CircleData(NamedTuple):
    """A synthetic data set (:func:`make_circle_data`).

    Attributes:
        x (Tensor): observations ``(N, D)``.
        u (Tensor): true latent points on :math:`\\mathcal{S}^1`, ``(N, 2)``.
        theta (Tensor): true angles ``atan2(u_2, u_1)`` in ``(-pi, pi]``, ``(N,)``.
        labels (Tensor): mixture component of each point, ``(N,)`` int64.
    """

    x: Tensor
    u: Tensor
    theta: Tensor
    labels: Tensor


def make_circle_data(n: int = 2000, out_features: int = 100, noise: float = 0.1, seed: int = 0,
                     map_seed: int = 0, means: Sequence[float] = DEFAULT_MEANS,
                     kappas: Sequence[float] = DEFAULT_KAPPAS,
                     weights: Sequence[float] | None = None,
                     embedding: CircleEmbedding | None = None,
                     dtype: torch.dtype = torch.float32) -> CircleData:
    r"""Paper section 5.1 data: vMF mixture on :math:`\mathcal{S}^1` -> noisy :math:`\mathbb{R}^{D}`.

    ``x = f(u) + noise * eps`` with ``f`` = :class:`CircleEmbedding` ``(out_features, map_seed)``
    (or the given ``embedding``), ``u`` from :func:`sample_circle_mixture` ``(n, seed)`` and
    ``eps ~ N(0, I)`` from the same seeded stream. Deterministic in ``(seed, map_seed)``; torch's
    global RNG state is left untouched. Use different ``seed`` values (same ``map_seed``) for
    training and test sets.

    Returns:
        :class:`CircleData` with ``x (n, out_features)``, ``u (n, 2)``, ``theta (n,)``,
        ``labels (n,)``.
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    u, labels = sample_circle_mixture(n, means, kappas, weights, seed=seed, dtype=torch.float64)
    f = embedding if embedding is not None else CircleEmbedding(out_features, map_seed=map_seed)
    g = torch.Generator().manual_seed(int(seed) + 7919)
    x = f(u) + noise * torch.randn(n, f.out_features, generator=g, dtype=torch.float64)
    theta = torch.atan2(u[:, 1], u[:, 0])
    return CircleData(x.to(dtype), u.to(dtype), theta.to(dtype), labels)


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
KINDS = ("ae", "normal", "vmf")


class CircleAutoEncoder(nn.Module):
    r"""MLP auto-encoder with a small bottleneck: AE, N-VAE or S-VAE (paper Figure 1).

    ``x (B, D) -> MLP(hidden) -> loc head (d) [+ scale head] -> z (B, d) -> MLP(reversed hidden)
    -> f(z) (B, D)``, ReLU activations, Glorot initialisation.

    Args:
        kind (str): ``"ae"`` (deterministic code ``z = loc``), ``"normal"`` (N-VAE) or
            ``"vmf"`` (S-VAE; codes on :math:`\mathcal{S}^{d-1}`). Aliases of
            :func:`~pyg_spherical.nn.make_latent` accepted.
        in_features (int): ``D``.
        dim (int): ``d`` (the paper's "2 hidden units"; ``latent_dim`` before 0.3, deprecated).
        hidden (sequence of int): encoder widths; the decoder uses them reversed.
        sigma (float): fixed standard deviation of the Gaussian decoder (scales the
            reconstruction term against the KL).
        **latent_kwargs: forwarded to the latent layer (e.g. ``min_concentration``).

    Attributes:
        latent (LatentLayer or None): the shared latent layer (``None`` for ``"ae"``).
    """

    def __init__(self, kind: str = "vmf", in_features: int = 100, dim: int = 2,
                 hidden: Sequence[int] = (128, 64), sigma: float = 1.0, **latent_kwargs):
        super().__init__()
        dim = renamed(latent_kwargs, "latent_dim", "dim", dim, "CircleAutoEncoder")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.latent: LatentLayer | None
        if isinstance(kind, str) and kind.lower() in ("ae", "autoencoder", "deterministic"):
            self.kind, self.latent = "ae", None
        else:
            self.latent = make_latent(kind, dim, **latent_kwargs)
            self.kind = self.latent.kind
        self.in_features, self.dim, self.sigma = int(in_features), int(dim), float(sigma)
        sizes = [self.in_features, *[int(h) for h in hidden]]
        self.encoder = MLP(sizes, final_activation=True)
        self.loc_head = glorot_init_(nn.Linear(sizes[-1], self.dim))
        self.scale_head = (glorot_init_(nn.Linear(sizes[-1], self.latent.scale_dim))
                           if self.latent is not None else None)
        self.decoder = MLP([self.dim, *reversed(sizes[1:]), self.in_features])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``x (B, D) -> (loc_raw (B, d), scale_raw (B, s) or None for the AE)``."""
        h = self.encoder(x)
        return self.loc_head(h), (self.scale_head(h) if self.scale_head is not None else None)

    def posterior(self, x: Tensor) -> Distribution:
        """``q(z | x)``, batch shape ``(B,)``, event shape ``(d,)`` (not defined for the AE)."""
        if self.latent is None:
            raise TypeError("a deterministic auto-encoder has no posterior")
        return self.latent.distribution(*self.encode(x))

    def prior(self) -> Distribution:
        """``p(z)``: ``U(S^{d-1})`` (vMF) or ``N(0, I_d)`` (normal)."""
        if self.latent is None:
            raise TypeError("a deterministic auto-encoder has no prior")
        p = self.loc_head.weight
        return self.latent.prior(p.device, p.dtype)

    def decode(self, z: Tensor) -> Tensor:
        """``z (..., d) -> f(z) (..., D)``, the decoder mean."""
        return self.decoder(z)

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Deterministic codes ``(B, d)``: the AE code, the Gaussian mean or the vMF mean direction."""
        loc_raw, scale_raw = self.encode(x)
        if self.latent is None:
            return loc_raw
        return self.latent.point(self.latent.distribution(loc_raw, scale_raw))

    def loss(self, x: Tensor, beta: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        r"""Mean over the batch of ``||x - f(z)||^2 / (2 sigma^2) + beta KL`` (one draw of ``z``).

        Returns:
            ``(loss, rec, kl)``: the scalar loss and the per-example reconstruction term
            ``(B,)`` and KL ``(B,)`` (zeros for the AE), both detached.
        """
        loc_raw, scale_raw = self.encode(x)
        if self.latent is None:
            z, kl = loc_raw, torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        else:
            q = self.latent.distribution(loc_raw, scale_raw)
            z = q.rsample()
            kl = self.latent.kl(q)
        rec = ((x - self.decode(z)) ** 2).sum(-1) / (2 * self.sigma**2)
        loss = (rec + beta * kl).mean()
        return loss, rec.detach(), kl.detach()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, dim={self.dim}, sigma={self.sigma}"


def fit(model: CircleAutoEncoder, x: Tensor, *, epochs: int = 100, batch_size: int = 100,
        lr: float = 1e-3, beta: float = 1.0, warmup_epochs: int = 0, seed: int = 0,
        callback: Callable[[int, dict], None] | None = None) -> list[dict]:
    r"""Train ``model`` on ``x (N, D)`` with Adam, shuffled mini-batches, optional KL warm-up.

    The KL weight at epoch ``e`` is ``beta * min(1, (e + 1) / warmup_epochs)`` (``beta`` throughout
    if ``warmup_epochs == 0``). Mini-batch order and posterior draws come from
    ``torch.manual_seed(seed)`` in a fork of the global RNG (left untouched).

    Args:
        callback: called as ``callback(epoch, record)`` after every epoch (e.g. a progress bar).

    Returns:
        One record per epoch: ``{"epoch", "loss", "rec", "kl", "beta"}`` (means over examples).
    """
    if epochs < 0 or batch_size < 1 or not lr > 0 or beta < 0:
        raise ValueError("fit: need epochs >= 0, batch_size >= 1, lr > 0, beta >= 0")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[dict] = []
    n = x.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        for epoch in range(epochs):
            b = beta * (min(1.0, (epoch + 1) / warmup_epochs) if warmup_epochs > 0 else 1.0)
            perm = torch.randperm(n)
            tot = torch.zeros(3, dtype=torch.float64)
            for idx in perm.split(batch_size):
                xb = x[idx]
                loss, rec, kl = model.loss(xb, beta=b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += torch.stack([loss.detach() * len(idx), rec.sum(), kl.sum()]).double()
            rec_ = {"epoch": epoch, "loss": float(tot[0] / n), "rec": float(tot[1] / n),
                    "kl": float(tot[2] / n), "beta": b}
            history.append(rec_)
            if callback is not None:
                callback(epoch, rec_)
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def code_angles(z, on_sphere: bool | None = None) -> np.ndarray:
    r"""Angle of each 2-d code: ``atan2`` about the origin for codes on :math:`\mathcal{S}^1`,
    about the centroid of the codes otherwise (an AE's loop need not be centred at 0).

    Args:
        z: ``(N, 2)`` codes (tensor or array).
        on_sphere: force the choice; default: ``True`` iff all rows have unit norm (1e-4).

    Returns:
        float64 array ``(N,)`` in ``(-pi, pi]``.
    """
    z = to_numpy(z, np.float64)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"code_angles expects codes of shape (N, 2), got {z.shape}")
    if on_sphere is None:
        on_sphere = bool(np.all(np.abs(np.linalg.norm(z, axis=1) - 1) < 1e-4))
    c = np.zeros(2) if on_sphere else z.mean(0)
    return np.arctan2(z[:, 1] - c[1], z[:, 0] - c[0])


def circular_correlation(alpha, beta) -> float:
    r"""Fisher & Lee (1983) circular correlation :math:`\hat\rho_T` of two samples of angles.

    .. math::
        \hat\rho_T = \frac{\sum_{i<j} \sin(\alpha_i - \alpha_j)\sin(\beta_i - \beta_j)}
                          {\sqrt{\sum_{i<j} \sin^2(\alpha_i - \alpha_j)\,
                                 \sum_{i<j} \sin^2(\beta_i - \beta_j)}}
                   = \frac{\det(A^\top B)}{\sqrt{\det(A^\top A)\det(B^\top B)}},

    with rows :math:`A_i = (\cos\alpha_i, \sin\alpha_i)`, :math:`B_i = (\cos\beta_i,
    \sin\beta_i)` (an :math:`O(N)` identity of the pairwise sum). In :math:`[-1, 1]`, unchanged
    by rotating either sample, sign-flipped by a reflection, :math:`\pm1` iff
    :math:`\beta = \pm\alpha + c`; well defined for (near-)uniform angles, unlike correlations
    built on circular means.

    Args:
        alpha, beta: angles (radians) of shape ``(N,)``.

    Returns:
        float (NaN if either sample has all angles equal modulo :math:`\pi`).
    """
    a, b = to_numpy(alpha, np.float64).ravel(), to_numpy(beta, np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError("circular_correlation needs two samples of the same size >= 2")
    A = np.stack([np.cos(a), np.sin(a)], 1)
    B = np.stack([np.cos(b), np.sin(b)], 1)
    den = np.linalg.det(A.T @ A) * np.linalg.det(B.T @ B)
    return float(np.linalg.det(A.T @ B) / np.sqrt(den)) if den > 0 else float("nan")


def radial_spread(z, on_sphere: bool | None = None) -> float:
    r"""Coefficient of variation ``std(r) / mean(r)`` of ``r = ||z - centre||`` (0 for a circle).

    ``centre`` as in :func:`code_angles`. ``z``: ``(N, 2)``.
    """
    z = to_numpy(z, np.float64)
    if on_sphere is None:
        on_sphere = bool(np.all(np.abs(np.linalg.norm(z, axis=1) - 1) < 1e-4))
    c = np.zeros(z.shape[1]) if on_sphere else z.mean(0)
    r = np.linalg.norm(z - c, axis=1)
    return float(r.std() / r.mean())


@torch.no_grad()
def aggregate_kl(q: Distribution, prior: Distribution, num_samples: int = 1,
                 seed: int = 0) -> float:
    r"""Monte Carlo estimate of :math:`\mathrm{KL}(\bar q \,\|\, p)`, :math:`\bar q(z) = \frac1N\sum_n q(z|x_n)`.

    .. math::
        \widehat{\mathrm{KL}} = \frac{1}{SN}\sum_{s, n}\Big[\log \frac1N \sum_{m} q(z_{sn}|x_m)
                                - \log p(z_{sn})\Big], \qquad z_{sn} \sim q(z|x_n),

    an ``(SN) x N`` matrix of log densities (consistent as ``N`` grows; keep ``N`` to a few
    thousand). For the vMF posterior and uniform prior both densities are w.r.t. the sphere's
    surface measure, for the Gaussian w.r.t. Lebesgue measure.

    Args:
        q: posterior with batch shape ``(N,)`` and event shape ``(d,)``.
        prior: ``p(z)`` with event shape ``(d,)``.
        num_samples: draws ``S`` per posterior.
        seed: seed of the draws (global RNG state restored).

    Returns:
        float, in nats.
    """
    if len(q.batch_shape) != 1:
        raise ValueError("aggregate_kl expects a posterior with batch shape (N,)")
    n = q.batch_shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = q.sample((num_samples,)).reshape(num_samples * n, 1, -1)  # (SN, 1, d)
    total = 0.0
    for zc in z.split(max(1, 2_000_000 // max(n, 1))):
        log_q = torch.logsumexp(q.log_prob(zc), dim=-1) - math.log(n)  # (chunk,)
        log_p = prior.log_prob(zc.squeeze(1))
        total += float((log_q - log_p).double().sum())
    return total / (num_samples * n)


def true_aggregate_kl(u: Tensor, means: Sequence[float] = DEFAULT_MEANS,
                      kappas: Sequence[float] = DEFAULT_KAPPAS,
                      weights: Sequence[float] | None = None) -> float:
    r"""``KL(mixture || U(S^1))`` estimated on the samples ``u (N, 2)`` of the mixture itself:
    ``mean(log p_mix(u)) + log(2 pi)`` -- the reference value of panel (a)."""
    lp = circle_mixture_log_prob(u.double(), means, kappas, weights)
    return float(lp.mean() - HypersphericalUniform(2, dtype=torch.float64).log_prob(u.double()).mean())


@torch.no_grad()
def manifold_distance(x: Tensor, embedding: CircleEmbedding, num_grid: int = 3600) -> Tensor:
    r"""Squared distance per coordinate from each row of ``x`` to the clean curve :math:`f(\mathcal{S}^1)`.

    .. math:: \delta(x) = \frac1D \min_{\theta \in G} \|x - f(\cos\theta, \sin\theta)\|^2

    over ``num_grid`` equally spaced angles ``G`` (the curve has length ~ a few dozen in
    :math:`\mathbb{R}^{100}`, so 3600 points resolve it far below the noise level). Applied to
    decoded prior draws ``f_dec(z), z ~ p(z)``, it measures whether samples of the generative
    model land on the data manifold (section 2.3: "random points in the latent space ... most
    likely not in emb(M), resulting in a poorly reconstructed sample"); the observations
    themselves score about ``noise^2``.

    Args:
        x: ``(N, D)``.
        embedding: the map ``f`` that generated the data.

    Returns:
        ``(N,)`` in the dtype of ``x``.
    """
    grid = _unit(torch.arange(num_grid, dtype=torch.float64) * (2 * math.pi / num_grid))
    curve = embedding(grid).to(x.dtype)
    d2 = torch.cdist(x, curve).pow(2).min(dim=1).values
    return d2 / x.shape[-1]


@torch.no_grad()
def evaluate_recovery(model: CircleAutoEncoder, data: CircleData, embedding: CircleEmbedding,
                      num_prior_samples: int = 2000, seed: int = 0) -> dict:
    r"""All recovery metrics of one trained model on a (held-out) data set.

    Returns a dict with the codes (tensors, for plotting) and the numbers (floats):

    * ``z_mode (N, d)``: :meth:`CircleAutoEncoder.embed`; ``z_sample (N, d)``: one draw
      ``z ~ q(z|x)`` per point (the code itself for the AE).
    * ``circ_corr_mode``, ``circ_corr_sample``: :func:`circular_correlation` of the true angle and
      :func:`code_angles` of ``z_mode`` / ``z_sample``, as absolute values (the sign only records
      the orientation).
    * ``aggregate_kl``: :func:`aggregate_kl` (``None`` for the AE).
    * ``radial_spread``: :func:`radial_spread` of ``z_mode``.
    * ``test_mse``: ``mean ||x - f(z_mode)||^2 / D`` (the noise floor is ``noise^2``).
    * ``prior_sample_error``: mean :func:`manifold_distance` of ``num_prior_samples`` decoded prior
      draws (``None`` for the AE, which has no prior).

    Randomness from ``seed`` in a fork of torch's global RNG.
    """
    model.eval()
    out: dict = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z_mode = model.embed(data.x)
        on_sphere = model.kind == "vmf"
        if model.latent is None:
            z_sample = z_mode
        else:
            q = model.posterior(data.x)
            z_sample = q.sample()
            out["aggregate_kl"] = aggregate_kl(q, model.prior(), seed=seed + 1)
            xp = model.decode(model.prior().sample((num_prior_samples,)))
            out["prior_sample_error"] = float(manifold_distance(xp, embedding).mean())
    out.setdefault("aggregate_kl", None)
    out.setdefault("prior_sample_error", None)
    out["circ_corr_mode"] = abs(circular_correlation(data.theta, code_angles(z_mode, on_sphere)))
    out["circ_corr_sample"] = abs(circular_correlation(data.theta,
                                                       code_angles(z_sample, on_sphere)))
    out["radial_spread"] = radial_spread(z_mode, on_sphere)
    out["test_mse"] = float(((data.x - model.decode(z_mode)) ** 2).mean())
    out["z_mode"], out["z_sample"] = z_mode, z_sample
    return out
