r"""The MNIST variational auto-encoder of paper section 5.2 (S-VAE and N-VAE).

Model (Appendix F.1)
--------------------
.. code-block:: text

    x (784, binary) -> Linear 256 -> ReLU -> Linear 128 -> ReLU -> (loc head: Linear d,
                                                                    scale head: Linear scale_dim)
                    -> latent layer (make_latent("vmf" | "normal", d)) -> z
    z -> Linear 128 -> ReLU -> Linear 256 -> ReLU -> Linear 784 -> Bernoulli logits

All weights are Glorot-uniform initialised (Glorot & Bengio, 2010), biases are zero. The latent
layer is the one shared with the graph model (:mod:`pyg_spherical.nn.latent`):

* ``latent="vmf"`` (S-VAE): ``q(z|x) = vMF(mu(x), kappa(x))``, prior :math:`U(\mathcal{S}^{d-1})`.
  **The paper's convention**: ``dim = d`` puts the codes on :math:`\mathcal{S}^{d-1}` *in*
  :math:`\mathbb{R}^d`, so "d = 2" in Table 1 is the circle; Figure 2's S-VAE on
  :math:`\mathcal{S}^2` has ``dim = 3``.
* ``latent="normal"`` (N-VAE): ``q(z|x) = N(mu(x), diag sigma(x)^2)``, prior ``N(0, I_d)``.

Objectives
----------
Evidence lower bound (paper eq. 1), per example:

.. math::
    \mathcal{L}(x) = \underbrace{\mathbb{E}_{q(z|x)}[\log p(x|z)]}_{\text{RE}}
                     - \underbrace{\mathrm{KL}(q(z|x) \,\|\, p(z))}_{\text{KL}},
    \qquad \log p(x|z) = \sum_{i=1}^{784} x_i \log \pi_i(z) + (1 - x_i) \log(1 - \pi_i(z)).

RE is estimated with ``num_samples`` reparameterised draws (one by default), the KL is exact
(paper eq. 5 for the vMF; closed form for the Gaussian). Training with KL warm-up minimises
``-(RE - beta * KL)`` (Bowman et al., 2016), ``beta`` rising linearly from 0 to 1.

Marginal log-likelihood by importance sampling (Burda et al., 2016), with ``S`` draws
:math:`z_s \sim q(z|x)`:

.. math::
    \log p(x) \approx \log \frac{1}{S} \sum_{s=1}^{S}
        \frac{p(x|z_s)\, p(z_s)}{q(z_s|x)}
    = \operatorname{logsumexp}_s \big[\log p(x|z_s) + \log p(z_s) - \log q(z_s|x)\big] - \log S,

a lower bound on :math:`\log p(x)` in expectation, tighter as ``S`` grows (``S = 1``: the ELBO);
``p`` and ``q`` on the sphere are both densities w.r.t. its surface measure.

Example
-------
>>> model = VAE(latent="vmf", dim=5)
>>> x = torch.bernoulli(torch.rand(8, 784))
>>> elbo, rec, kl = model.elbo(x)          # each of shape (8,)
>>> ll = model.log_likelihood(x, num_samples=50)
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from ._utils import renamed
from .nn.latent import LatentLayer, make_latent

__all__ = ["MLP", "VAE", "bernoulli_log_prob", "glorot_init_"]


def glorot_init_(module: nn.Module) -> nn.Module:
    """Glorot/Xavier-uniform weights and zero biases for every :class:`~torch.nn.Linear` inside."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class MLP(nn.Sequential):
    """``Linear -> act -> ... -> Linear`` through ``sizes = [in, h_1, ..., out]``.

    The activation follows every layer except the last unless ``final_activation=True``.
    Glorot-initialised.
    """

    def __init__(self, sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU,
                 final_activation: bool = False):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"MLP: sizes must be >= 2 positive ints, got {sizes}.")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2 or final_activation:
                layers.append(activation())
        super().__init__(*layers)
        glorot_init_(self)


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    r"""``log p(x | z) = sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i)``.

    Args:
        logits: ``(..., D)`` decoder logits (broadcast against ``x``).
        x: ``(..., D)`` binary (or ``[0, 1]``-valued) data.

    Returns:
        ``(...)``: the log-likelihood summed over the last dimension (nats).
    """
    x = x.to(logits.dtype)
    if x.shape != logits.shape:
        logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


class VAE(nn.Module):
    r"""Variational auto-encoder with a Bernoulli decoder and a vMF (S-VAE) or Gaussian (N-VAE)
    latent, as in section 5.2 / Appendix F.1 of Davidson et al. (2018).

    Args:
        latent (str): ``"vmf"`` (S-VAE, uniform prior on :math:`\mathcal{S}^{d-1}`),
            ``"power"`` (P-VAE: a Power Spherical posterior, same prior) or ``"normal"``
            (N-VAE, ``N(0, I)`` prior). Aliases of :func:`make_latent` accepted.
        dim (int): ``d`` (``latent_dim`` before 0.3, deprecated). For the vMF the codes are unit vectors in ``R^d`` (paper
            convention: the sphere :math:`\mathcal{S}^{d-1}`, of intrinsic dimension ``d - 1``).
        in_features (int): data dimension ``D`` (784 for MNIST).
        encoder_hidden (sequence of int): hidden widths of the encoder MLP (default ``[256, 128]``).
        decoder_hidden (sequence of int): hidden widths of the decoder MLP (default ``[128, 256]``).
        activation: activation module class (default :class:`~torch.nn.ReLU`).
        **latent_kwargs: forwarded to the latent layer (e.g. ``min_concentration`` for the vMF).

    Attributes:
        encoder (MLP): ``D -> encoder_hidden`` with activations.
        loc_head, scale_head (Linear): raw posterior parameters, widths ``d`` and
            ``latent.scale_dim``.
        latent (LatentLayer): the shared latent layer.
        decoder (MLP): ``d -> decoder_hidden -> D`` logits.
    """

    def __init__(self, latent: str = "vmf", dim: int = 5, in_features: int = 784,
                 encoder_hidden: Sequence[int] = (256, 128),
                 decoder_hidden: Sequence[int] = (128, 256),
                 activation: type[nn.Module] = nn.ReLU, **latent_kwargs):
        super().__init__()
        dim = renamed(latent_kwargs, "latent_dim", "dim", dim, "VAE")
        self.latent: LatentLayer = make_latent(latent, dim, **latent_kwargs)
        self.dim = int(dim)
        self.in_features = int(in_features)
        enc = [self.in_features, *encoder_hidden]
        self.encoder = MLP(enc, activation, final_activation=True) if len(enc) > 1 else nn.Identity()
        h = enc[-1]
        self.loc_head = glorot_init_(nn.Linear(h, self.dim))
        self.scale_head = glorot_init_(nn.Linear(h, self.latent.scale_dim))
        self.decoder = MLP([self.dim, *decoder_hidden, self.in_features], activation)

    @property
    def kind(self) -> str:
        """``"vmf"``, ``"power"`` or ``"normal"``."""
        return self.latent.kind

    # ------------------------------------------------------------------ building blocks
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (..., D) -> (loc_raw (..., d), scale_raw (..., scale_dim))``."""
        h = self.encoder(x)
        return self.loc_head(h), self.scale_head(h)

    def posterior(self, x: Tensor) -> Distribution:
        """``q(z | x)`` with batch shape ``x.shape[:-1]`` and event shape ``(d,)``."""
        return self.latent.distribution(*self.encode(x))

    def prior(self, device=None, dtype=None) -> Distribution:
        """``p(z)``: ``U(S^{d-1})`` or ``N(0, I_d)``; defaults to the parameters' device/dtype."""
        p = next(self.parameters())
        return self.latent.prior(device or p.device, dtype or p.dtype)

    def decode(self, z: Tensor) -> Tensor:
        """``z (..., d) -> Bernoulli logits (..., D)``."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction logits ``(..., D)``: a posterior sample in training mode, the posterior
        mode (vMF ``mu`` / Gaussian mean) in eval mode (the latent layer's convention)."""
        z = self.latent(*self.encode(x))
        return self.decode(z)

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Deterministic codes ``(..., d)``: the posterior mode (unit vectors for the vMF)."""
        return self.latent.point(self.posterior(x))

    # ---------------------------------------------------------------------- objectives
    def elbo(self, x: Tensor, num_samples: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        r"""Per-example ELBO and its two terms (paper eq. 1, Table 1 columns).

        Samples from ``q(z|x)`` in both training and eval mode (RE is an expectation).

        Args:
            x: ``(B, D)`` binary data (any floating dtype; the model's dtype is used).
            num_samples: draws used for the Monte Carlo estimate of RE.

        Returns:
            ``(elbo, rec, kl)``, each of shape ``(B,)``: ``rec = E_q[log p(x|z)]`` (the negative
            reconstruction error, "RE"), ``kl = KL(q(z|x) || p(z))`` (exact), ``elbo = rec - kl``.
        """
        q = self.latent.distribution(*self.encode(x))
        z = q.rsample((num_samples,))  # (S, B, d)
        rec = bernoulli_log_prob(self.decode(z), x).mean(0)
        kl = self.latent.kl(q)
        return rec - kl, rec, kl

    def loss(self, x: Tensor, beta: float | Tensor = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        r"""Training loss ``-mean(rec - beta * kl)`` (KL warm-up factor ``beta``; ``beta = 1`` is
        the negative ELBO), and the per-example ``rec`` and ``kl`` (detached) for logging."""
        _, rec, kl = self.elbo(x)
        loss = -(rec - beta * kl).mean()
        return loss, rec.detach(), kl.detach()

    def iw_log_weights(self, x: Tensor, num_samples: int) -> Tensor:
        r"""Log importance weights ``log p(x|z_s) + log p(z_s) - log q(z_s|x)``, ``z_s ~ q(z|x)``.

        Args:
            x: ``(B, D)``.
            num_samples: ``S``.

        Returns:
            ``(S, B)``.
        """
        q = self.posterior(x)
        z = q.sample((num_samples,))  # (S, B, d)
        log_px_z = bernoulli_log_prob(self.decode(z), x)
        log_pz = self.prior(x.device, z.dtype).log_prob(z)
        log_qz = q.log_prob(z)
        return log_px_z + log_pz - log_qz

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, num_samples: int = 500, batch_size: int | None = None,
                       max_rows: int = 10_000) -> Tensor:
        r"""Importance-sampled marginal log-likelihood ``log p(x)`` (Burda et al., 2016), ``(B,)``.

        ``logsumexp_s w_s - log S`` with the log weights of :meth:`iw_log_weights`, evaluated for
        ``batch_size`` examples at a time (``S * batch_size`` decoder rows per call; by default
        ``batch_size = max(1, max_rows // S)``). No gradients.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if batch_size is None:
            batch_size = max(1, max_rows // num_samples)
        out = []
        for xb in x.split(batch_size):
            lw = self.iw_log_weights(xb, num_samples)
            out.append(torch.logsumexp(lw, dim=0) - math.log(num_samples))
        return torch.cat(out) if out else x.new_zeros((0,))

    # ------------------------------------------------------------------------- samples
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               probs: bool = True) -> Tensor:
        """Decode ``num_samples`` draws of :meth:`prior` (paper Figures 7 and 8); seed them
        with ``torch.manual_seed`` (``generator`` is deprecated).

        Returns the Bernoulli means ``(num_samples, D)`` (``probs=True``, what the figures show)
        or logits (``probs=False``).
        """
        p = next(self.parameters())
        if generator is not None:
            warnings.warn("VAE.sample(generator=...) is deprecated and will be removed in the "
                          "next release; seed with torch.manual_seed", DeprecationWarning,
                          stacklevel=3)
            seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
            with torch.random.fork_rng(devices=[p.device] if p.device.type == "cuda" else []):
                torch.manual_seed(seed)
                return self.sample(num_samples, probs=probs)
        z = self.prior().sample((num_samples,))
        logits = self.decode(z)
        return torch.sigmoid(logits) if probs else logits
