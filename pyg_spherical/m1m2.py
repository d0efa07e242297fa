r"""The stacked semi-supervised M1+M2 model (Kingma, Mohamed, Rezende & Welling, 2014), trained
end-to-end, with a vMF, Power Spherical or Gaussian latent for each of ``z1`` and ``z2`` (paper section 5.3,
Table 3, Figure 10; Appendix F.2).

Model
-----
Generative model (``K = 10`` classes, ``y`` one-hot):

.. math::
    p(y) = \mathrm{Cat}(1/K), \quad p(z_2) = \text{prior of the } z_2 \text{ layer}, \quad
    p(z_1 \mid y, z_2) = \text{family of the } z_1 \text{ layer}, \quad
    p(x \mid z_1) = \prod_{i=1}^{784} \mathrm{Bernoulli}(x_i \mid \pi_i(z_1)).

Inference model:

.. math::
    q(z_1 \mid x), \qquad q(y \mid z_1) = \mathrm{Cat}(\mathrm{softmax}\, f(z_1)), \qquad
    q(z_2 \mid z_1, y).

Each of the five maps (``x -> z1``, ``z1 -> x``, ``z1 -> y``, ``(z1, y) -> z2``,
``(z2, y) -> z1``) is a Glorot-initialised MLP with one hidden layer of 500 ReLU units (Appendix
F.2). Both latents are :func:`~pyg_spherical.nn.latent.make_latent` layers, so ``N+N``, ``S+S``
and ``S+N`` (``z1`` first) differ only in the two ``latent`` arguments; :math:`p(z_1 \mid y, z_2)`
is of the ``z1`` layer's family, the prior of ``z2`` :math:`U(\mathcal{S}^{d_2-1})` or
:math:`N(0, I)`.

Bounds (Kingma et al., 2014, eqs. 6-9, stacked on M1)
------------------------------------------------------
M2's bound for an observed class, at a given ``z1`` (one draw :math:`z_2 \sim q(z_2|z_1,y)`):

.. math::
    -\mathcal{L}_2(z_1, y) = \mathbb{E}_{q(z_2|z_1,y)}[\log p(z_1 \mid y, z_2)] + \log p(y)
                            - \mathrm{KL}(q(z_2 \mid z_1, y) \,\|\, p(z_2)).

Labelled pair ``(x, y)``, one draw :math:`z_1 \sim q(z_1|x)`:

.. math::
    -\mathcal{L}(x, y) = \log p(x \mid z_1) + \mathcal{H}[q(z_1 \mid x)] - \mathcal{L}_2(z_1, y)
    \;\le\; \log p(x, y).

Unlabelled ``x``: the class is marginalised exactly (a sum over the ``K`` classes, evaluated as
one batch of ``K x B`` rows, see :func:`marginalise_labels`):

.. math::
    -\mathcal{U}(x) = \log p(x \mid z_1) + \mathcal{H}[q(z_1 \mid x)]
        + \sum_{y} q(y \mid z_1)\,\big(-\mathcal{L}_2(z_1, y)\big) + \mathcal{H}[q(y \mid z_1)]
    \;\le\; \log p(x).

The entropies of ``q(z1|x)`` (vMF: :math:`\log|\mathcal{S}^{d-1}| - \mathrm{KL}(q\|U)`,
paper eq. 5; Gaussian: :math:`\sum_j \log\sigma_j + \tfrac d2 \log 2\pi e`) and the KL of
``z2`` are exact; the rest is a one-sample Monte Carlo estimate. The whole stack is trained
jointly ("end-to-end, not by parts"): the gradients of every term, including the
classification loss, reach the M1 encoder.

Training objective (per step, mini-batches of labelled and unlabelled data)
---------------------------------------------------------------------------
.. math::
    J^\alpha = w_l \operatorname{mean}_{(x,y) \in \text{lab}} \mathcal{L}(x, y)
             + \operatorname{mean}_{x \in \text{unl}} \mathcal{U}(x)
             + \alpha \operatorname{mean}_{(x,y) \in \text{lab}} [-\log q(y \mid z_1(x))].

Kingma et al.'s :math:`\sum_l \mathcal{L} + \sum_u \mathcal{U} + 0.1 N\,\mathbb{E}_l[-\log q]`,
divided by :math:`N_u` and estimated on mini-batches, gives ``w_l = N_l / N_u`` (each image
weighs the same in the bound) and ``alpha = 0.1 N / N_u`` (about 0.1; Appendix F.2 chose it in
``[0.1, 1]``). ``w_l = 1`` weighs the labelled and unlabelled bounds equally per step (common in
re-implementations; the labelled images are then fitted much more closely). The classification
loss uses the *sampled* ``z1``; predictions (:meth:`M1M2.class_logits`) its posterior mode.

Example
-------
>>> model = M1M2(z1_latent="vmf", z1_dim=10, z2_latent="normal", z2_dim=10)   # S+N
>>> xl, yl, xu = torch.bernoulli(torch.rand(8, 784)), torch.arange(8), torch.bernoulli(torch.rand(8, 784))
>>> loss, metrics = model.loss(xl, yl, xu, alpha=1.0)
>>> pred = model.predict(xu)                       # (8,) class indices
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from .nn.latent import LatentLayer, make_latent
from .vae import MLP, bernoulli_log_prob, glorot_init_

__all__ = ["COMBINATIONS", "M1M2", "LabelledBound", "marginalise_labels"]

#: the paper's names of the latent combinations -> (z1 latent, z2 latent)
COMBINATIONS = {"N+N": ("normal", "normal"), "S+S": ("vmf", "vmf"), "S+N": ("vmf", "normal"),
                "N+S": ("normal", "vmf"), "S+P": ("vmf", "power")}


def marginalise_labels(logits: Tensor, bounds: Tensor) -> Tensor:
    r"""``sum_y q(y) b_y + H(q)`` with ``q = softmax(logits)``: the class-marginalised bound.

    For per-class lower bounds ``b_y <= log p(x, y)`` this is a lower bound on
    ``log p(x) = logsumexp_y log p(x, y)``; it equals ``logsumexp_y b_y`` exactly when
    ``q(y) = softmax(b)_y`` (and is smaller for any other ``q``).

    Args:
        logits: ``(..., K)`` unnormalised class log-probabilities of ``q(y|.)``.
        bounds: ``(..., K)`` per-class bounds ``b_y``.

    Returns:
        ``(...)``.
    """
    log_q = torch.log_softmax(logits, dim=-1)
    q = log_q.exp()
    return (q * (bounds - log_q)).sum(-1)


class LabelledBound(NamedTuple):
    """Per-example terms of a bound, each ``(B,)`` (see the module docstring).

    ``elbo = rec + entropy_z1 + m2``; ``m2 = log_pz1 + log_py - kl_z2`` for a labelled bound and
    the class-marginalised M2 term (including ``H[q(y|z1)]``) for an unlabelled one.
    ``logits`` are the classifier's ``(B, K)`` logits at the sampled ``z1``.
    """

    elbo: Tensor
    rec: Tensor
    entropy_z1: Tensor
    m2: Tensor
    logits: Tensor


class M1M2(nn.Module):
    r"""Stacked M1+M2 semi-supervised VAE with spherical (vMF, Power Spherical) or Gaussian
    ``z1`` and ``z2``.

    Args:
        z1_latent (str): ``"vmf"``, ``"power"`` or ``"normal"`` (aliases of :func:`make_latent`):
            M1's latent.
        z1_dim (int): ``d1`` (vMF: unit vectors in ``R^{d1}``, the sphere ``S^{d1-1}``).
        z2_latent (str): ``"vmf"``, ``"power"`` or ``"normal"``: M2's style latent.
        z2_dim (int): ``d2``.
        num_classes (int): ``K`` (10).
        in_features (int): ``D`` (784).
        hidden (int): width of the single hidden layer of every MLP (500).
        activation: activation class (:class:`~torch.nn.ReLU`).
        z1_options (dict, optional): keyword arguments of ``z1``'s latent layer only.
        z2_options (dict, optional): keyword arguments of ``z2``'s latent layer only (e.g.
            ``{"min_concentration": 10.0}`` for a vMF, ``{"isotropic": True}`` for a Gaussian).
        **latent_kwargs: forwarded to both latent layers (e.g. ``min_concentration``).

    Attributes:
        latent1, latent2 (LatentLayer): the two latent layers.
        latent_pz1 (LatentLayer): the family of ``p(z1|y,z2)``: ``latent1``.
        m1_encoder, z1_loc, z1_scale: ``x (B, D) -> q(z1|x)`` raw parameters.
        m1_decoder: ``z1 (..., d1) -> (..., D)`` Bernoulli logits.
        classifier: ``z1 (..., d1) -> (..., K)`` logits of ``q(y|z1)``.
        m2_encoder, z2_loc, z2_scale: ``[z1, y] (..., d1 + K) -> q(z2|z1,y)``.
        m2_decoder, pz1_loc, pz1_scale: ``[z2, y] (..., d2 + K) -> p(z1|y,z2)``.
    """

    def __init__(self, z1_latent: str = "vmf", z1_dim: int = 10, z2_latent: str = "normal",
                 z2_dim: int = 10, num_classes: int = 10, in_features: int = 784,
                 hidden: int = 500, activation: type[nn.Module] = nn.ReLU,
                 z1_options: dict | None = None, z2_options: dict | None = None,
                 **latent_kwargs):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"M1M2: num_classes must be >= 2, got {num_classes}.")
        self.latent1: LatentLayer = make_latent(z1_latent, z1_dim,
                                                **{**latent_kwargs, **(z1_options or {})})
        self.latent2: LatentLayer = make_latent(z2_latent, z2_dim,
                                                **{**latent_kwargs, **(z2_options or {})})
        self.latent_pz1: LatentLayer = self._pz1_latent()
        self.z1_dim, self.z2_dim = int(z1_dim), int(z2_dim)
        self.num_classes, self.in_features, self.hidden = int(num_classes), int(in_features), int(hidden)
        K, D, H, d1, d2 = self.num_classes, self.in_features, self.hidden, self.z1_dim, self.z2_dim
        # M1
        self.m1_encoder = MLP([D, H], activation, final_activation=True)
        self.z1_loc = glorot_init_(nn.Linear(H, d1))
        self.z1_scale = glorot_init_(nn.Linear(H, self.latent1.scale_dim))
        self.m1_decoder = MLP([d1, H, D], activation)
        # M2
        self.classifier = MLP([d1, H, K], activation)
        self.m2_encoder = MLP([d1 + K, H], activation, final_activation=True)
        self.z2_loc = glorot_init_(nn.Linear(H, d2))
        self.z2_scale = glorot_init_(nn.Linear(H, self.latent2.scale_dim))
        self.m2_decoder = MLP([d2 + K, H], activation, final_activation=True)
        self.pz1_loc = glorot_init_(nn.Linear(H, d1))
        self.pz1_scale = glorot_init_(nn.Linear(H, self.latent_pz1.scale_dim))

    def _pz1_latent(self) -> LatentLayer:
        """The layer of ``p(z1|y,z2)``: the family of ``q(z1|x)`` (a subclass may choose another;
        the head of ``p(z1|y,z2)`` is sized by its ``scale_dim``)."""
        return self.latent1

    @property
    def combination(self) -> str:
        """``"S+N"`` etc. (``z1`` first): the paper's name of the latent pair."""
        name = {"vmf": "S", "normal": "N", "power": "P"}
        return f"{name[self.latent1.kind]}+{name[self.latent2.kind]}"

    def _ref(self) -> Tensor:
        return self.z1_loc.weight

    def log_prior_y(self) -> float:
        """``log p(y) = -log K`` (uniform class prior)."""
        return -math.log(self.num_classes)

    def one_hot(self, y: Tensor) -> Tensor:
        """``(...,)`` integer labels -> ``(..., K)`` one-hot in the parameters' dtype."""
        return F.one_hot(y.long(), self.num_classes).to(self._ref().dtype)

    # ------------------------------------------------------------------ distributions
    def q_z1(self, x: Tensor) -> Distribution:
        """``q(z1 | x)``: batch shape ``x.shape[:-1]``, event ``(d1,)``."""
        h = self.m1_encoder(x.to(self._ref().dtype))
        return self.latent1.distribution(self.z1_loc(h), self.z1_scale(h))

    def q_z2(self, z1: Tensor, y_onehot: Tensor) -> Distribution:
        """``q(z2 | z1, y)``: ``z1 (..., d1)``, ``y_onehot (..., K)`` -> batch shape ``(...)``."""
        h = self.m2_encoder(torch.cat([z1, y_onehot], dim=-1))
        return self.latent2.distribution(self.z2_loc(h), self.z2_scale(h))

    def p_z1(self, z2: Tensor, y_onehot: Tensor) -> Distribution:
        """``p(z1 | y, z2)``: the family of ``q(z1|x)`` (vMF on ``S^{d1-1}``, Power Spherical or
        Gaussian)."""
        h = self.m2_decoder(torch.cat([z2, y_onehot], dim=-1))
        return self.latent_pz1.distribution(self.pz1_loc(h), self.pz1_scale(h))

    def p_z2(self) -> Distribution:
        """The prior of ``z2``: ``U(S^{d2-1})`` or ``N(0, I)``."""
        p = self._ref()
        return self.latent2.prior(p.device, p.dtype)

    def decode(self, z1: Tensor) -> Tensor:
        """``z1 (..., d1) -> (..., D)`` Bernoulli logits of ``p(x | z1)``."""
        return self.m1_decoder(z1)

    def classify(self, z1: Tensor) -> Tensor:
        """``z1 (..., d1) -> (..., K)`` logits of ``q(y | z1)``."""
        return self.classifier(z1)

    # ----------------------------------------------------------------------- bounds
    def m2_bound(self, z1: Tensor, y_onehot: Tensor, sample: bool = True,
                 kl_weight: float = 1.0) -> Tensor:
        r"""``-L2(z1, y) = log p(z1|y,z2) + log p(y) - KL(q(z2|z1,y) || p(z2))``, shape ``(...)``.

        Args:
            z1: ``(..., d1)``.
            y_onehot: ``(..., K)``.
            sample: draw ``z2 ~ q(z2|z1,y)`` (reparameterised); ``False`` plugs in the posterior
                mode instead (deterministic; for tests and diagnostics).
            kl_weight: weight ``beta`` of the KL term (a warm-up; only ``1`` gives a bound).
        """
        q2 = self.q_z2(z1, y_onehot)
        z2 = q2.rsample() if sample else self.latent2.point(q2)
        log_pz1 = self.p_z1(z2, y_onehot).log_prob(z1)
        kl2 = self.latent2.kl(q2)
        return log_pz1 + self.log_prior_y() - kl_weight * kl2

    def _m1(self, x: Tensor, sample: bool):
        q1 = self.q_z1(x)
        z1 = q1.rsample() if sample else self.latent1.point(q1)
        rec = bernoulli_log_prob(self.decode(z1), x)
        return z1, rec, q1.entropy()

    def labelled_bound(self, x: Tensor, y: Tensor, sample: bool = True,
                       z1: Tensor | None = None) -> LabelledBound:
        r"""``-L(x, y)`` per example and its terms (module docstring).

        Args:
            x: ``(B, D)`` binary images.
            y: ``(B,)`` integer labels.
            sample: draw ``z1`` and ``z2`` (training); ``False`` uses the posterior modes.
            z1: optional ``(B, d1)`` value of ``z1`` to use instead of a draw (tests).
        """
        z1, rec, ent = self._m1_at(x, sample, z1)
        m2 = self.m2_bound(z1, self.one_hot(y), sample)
        return LabelledBound(rec + ent + m2, rec, ent, m2, self.classify(z1))

    def unlabelled_bound(self, x: Tensor, sample: bool = True,
                         z1: Tensor | None = None) -> LabelledBound:
        r"""``-U(x)`` per example: the class marginalised with one batched pass over all ``K``.

        ``z1 (B, d1)`` is broadcast to ``(K, B, d1)`` and paired with ``y = e_k`` along the
        first axis, so M2 runs once on ``K * B`` rows; the ``K`` bounds are then combined by
        :func:`marginalise_labels` with ``q(y | z1)``. One ``z2`` draw per ``(x, y)`` pair.
        """
        z1, rec, ent = self._m1_at(x, sample, z1)
        K, B = self.num_classes, z1.shape[0]
        eye = torch.eye(K, dtype=z1.dtype, device=z1.device)
        ys = eye.unsqueeze(1).expand(K, B, K)
        bounds = self.m2_bound(z1.unsqueeze(0).expand(K, B, z1.shape[-1]), ys, sample)  # (K, B)
        logits = self.classify(z1)
        m2 = marginalise_labels(logits, bounds.transpose(0, 1))
        return LabelledBound(rec + ent + m2, rec, ent, m2, logits)

    def _m1_at(self, x: Tensor, sample: bool, z1: Tensor | None):
        if z1 is None:
            return self._m1(x, sample)
        q1 = self.q_z1(x)
        return z1, bernoulli_log_prob(self.decode(z1), x), q1.entropy()

    def loss(self, x_l: Tensor, y_l: Tensor, x_u: Tensor, alpha: float = 1.0,
             labelled_weight: float = 1.0, sample: bool = True, kl_z2_weight: float = 1.0
             ) -> tuple[Tensor, dict[str, Tensor]]:
        r"""``J^alpha`` (module docstring) and detached per-batch metrics.

        .. math::
            J^\alpha = w_l \operatorname{mean}_l \mathcal{L}(x, y)
                     + \operatorname{mean}_u \mathcal{U}(x)
                     + \alpha \operatorname{mean}_l [-\log q(y \mid z_1)]

        Labelled and unlabelled images share one pass: M1 runs on the ``B_l + B_u`` images,
        M2 on ``B_l + K B_u`` rows (the labelled pairs and every class of every unlabelled
        image), the classifier on ``B_l + B_u`` codes. Same values as :meth:`labelled_bound`
        and :meth:`unlabelled_bound` (and the same expectations when sampling).

        Args:
            x_l: ``(B_l, D)`` labelled images, ``y_l``: ``(B_l,)`` their labels.
            x_u: ``(B_u, D)`` unlabelled images.
            alpha: weight of the classification loss per labelled point.
            labelled_weight: ``w_l``, weight of the labelled bound (``1``: labelled and
                unlabelled bounds weigh the same per step; ``N_l / N_u``: every image weighs
                the same in the bound, as in Kingma et al.'s :math:`\sum_l + \sum_u`).
            sample: draw ``z1, z2`` (training); ``False`` uses posterior modes (tests).
            kl_z2_weight: weight of ``KL(q(z2|z1,y) || p(z2))`` (a warm-up schedule; the
                objective is the bound only at ``1``, the default).

        Returns:
            ``(loss, metrics)``: scalar loss; metrics ``elbo_l (B_l,)``, ``elbo_u (B_u,)``
            (the bounds, nats), ``ce (B_l,)`` and ``acc_l (B_l,)`` (training accuracy at the
            ``z1`` used for the loss), all detached (no host synchronisation).
        """
        B_l, B_u, K = x_l.shape[0], x_u.shape[0], self.num_classes
        z1, rec, ent = self._m1(torch.cat([x_l, x_u.to(x_l.dtype)]), sample)
        logits = self.classify(z1)
        z1_l, z1_u = z1[:B_l], z1[B_l:]
        eye = torch.eye(K, dtype=z1.dtype, device=z1.device)
        y_rows = torch.cat([self.one_hot(y_l), eye.repeat_interleave(B_u, dim=0)])
        z_rows = torch.cat([z1_l, z1_u.repeat(K, 1)])  # row B_l + k B_u + b: (z1_u[b], e_k)
        m2 = self.m2_bound(z_rows, y_rows, sample, kl_weight=kl_z2_weight)
        m2_l = m2[:B_l]
        m2_u = marginalise_labels(logits[B_l:], m2[B_l:].reshape(K, B_u).transpose(0, 1))
        base = rec + ent
        elbo_l, elbo_u = base[:B_l] + m2_l, base[B_l:] + m2_u
        ce = F.cross_entropy(logits[:B_l], y_l.long(), reduction="none")
        loss = -(labelled_weight * elbo_l.mean() + elbo_u.mean()) + alpha * ce.mean()
        acc = (logits[:B_l].argmax(-1) == y_l).to(elbo_l.dtype)
        return loss, {"elbo_l": elbo_l.detach(), "elbo_u": elbo_u.detach(),
                      "ce": ce.detach(), "acc_l": acc.detach()}

    # -------------------------------------------------------------------- inference
    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """The posterior mode of ``z1`` (unit vectors for a vMF), ``(B, d1)``."""
        return self.latent1.point(self.q_z1(x))

    @torch.no_grad()
    def class_logits(self, x: Tensor) -> Tensor:
        """``(B, K)`` logits of ``q(y | z1)`` at the posterior mode of ``z1`` (deterministic)."""
        return self.classify(self.embed(x))

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 10_000) -> Tensor:
        """Predicted classes ``(B,)``, evaluated ``batch_size`` rows at a time."""
        out = [self.class_logits(xb).argmax(-1) for xb in x.split(batch_size)]
        return torch.cat(out) if out else x.new_zeros((0,), dtype=torch.long)

    @torch.no_grad()
    def accuracy(self, x: Tensor, y: Tensor, batch_size: int = 10_000) -> Tensor:
        """Classification accuracy in ``[0, 1]`` as a 0-d tensor (no host sync)."""
        return (self.predict(x, batch_size) == y.to(x.device)).double().mean()

    @torch.no_grad()
    def class_bounds(self, x: Tensor, num_samples: int = 1) -> Tensor:
        r"""M2's per-class bounds ``-L2(z1, y)`` for all ``K`` classes, ``(B, K)``.

        ``z1`` is the posterior mode; ``-L2`` is averaged over ``num_samples`` draws of
        ``z2 ~ q(z2 | z1, y)`` (``num_samples = 0``: the mode of ``z2``). ``argmax_y`` is the
        *generative* classifier of M2 (the class under which the generative model explains
        ``z1`` best), to compare with :meth:`class_logits`, the inference network ``q(y|z1)``
        that the unlabelled term pulls towards it.
        """
        if num_samples < 0:
            raise ValueError(f"class_bounds: num_samples must be >= 0, got {num_samples}.")
        z1 = self.embed(x)
        K, B, S = self.num_classes, z1.shape[0], max(num_samples, 1)
        # rows (S, K, B): every class for every image, S draws of z2 each, in one batched pass
        ys = torch.eye(K, dtype=z1.dtype, device=z1.device)[None, :, None].expand(S, K, B, K)
        z = z1.expand(S, K, B, z1.shape[-1])
        bounds = self.m2_bound(z, ys, sample=num_samples > 0)
        return bounds.mean(0).transpose(0, 1)

    @torch.no_grad()
    def infer_style(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The posterior mode of ``z2`` for images ``x (B, D)``: ``(z2 (B, d2), y (B,))``.

        ``z1`` is the posterior mode; ``y`` defaults to the classifier's prediction (so no test
        labels are needed).
        """
        z1 = self.embed(x)
        if y is None:
            y = self.classify(z1).argmax(-1)
        return self.latent2.point(self.q_z2(z1, self.one_hot(y))), y

    @torch.no_grad()
    def generate(self, z2: Tensor, y: Tensor, probs: bool = True) -> Tensor:
        """Decode ``(z2 (..., d2), y (...))`` through the mode of ``p(z1|y,z2)``: ``(..., D)``.

        Returns Bernoulli means (``probs=True``, what Figure 10 shows) or logits.
        """
        z1 = self.latent_pz1.point(self.p_z1(z2, self.one_hot(y)))
        logits = self.decode(z1)
        return torch.sigmoid(logits) if probs else logits

    @torch.no_grad()
    def analogies(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Figure 10: ``(B, K, D)`` images, row ``b`` = the style ``z2`` of ``x[b]`` rendered as
        every class ``0 .. K-1``."""
        z2, _ = self.infer_style(x, y)
        K, B = self.num_classes, x.shape[0]
        ys = torch.arange(K, device=x.device).unsqueeze(0).expand(B, K)
        return self.generate(z2.unsqueeze(1).expand(B, K, z2.shape[-1]), ys)
