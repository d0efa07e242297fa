r"""The von Mises-Fisher distribution on ``S^{m-1}`` (paper section 3).

.. math::
    q(z \mid \mu, \kappa) = C_m(\kappa) \exp(\kappa \mu^\top z), \qquad
    C_m(\kappa) = \frac{\kappa^{m/2-1}}{(2\pi)^{m/2} I_{m/2-1}(\kappa)} \quad \text{(eq. 3-4)}
"""
from __future__ import annotations

import math
from numbers import Number

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from .. import special
from ._sampling import reparameterized_theta, sample_theta, sample_w
from .constraints import sphere, unit_norm_tolerance

__all__ = ["VonMisesFisher", "log_sphere_area"]

_TINY = 1e-30  # guards a zero-norm Gaussian draw (probability ~0)


def log_sphere_area(m: int) -> float:
    r"""``log |S^{m-1}| = log(2 pi^{m/2} / Gamma(m/2))``, the surface area of the unit sphere in R^m (eq. 10)."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def _compute(kappa: Tensor) -> Tensor:
    return kappa if kappa.dtype == torch.float64 else kappa.float()


class _LogNormalizerScaled(torch.autograd.Function):
    r"""``L(kappa) = log(Gamma(m/2) (2/kappa)^{m/2-1} I_{m/2-1}(kappa)) - kappa``.

    ``log C_m(kappa) = -log|S^{m-1}| - L(kappa) - kappa``; ``dL/dkappa = A_m(kappa) - 1`` (eq. 18),
    returned as ``-(1 - A_m)`` so that it keeps its precision as ``A_m -> 1``. The values come
    precomputed in ``terms`` (:func:`pyg_spherical.special._vmf_terms`).
    """

    @staticmethod
    def forward(ctx, kappa, terms):
        ctx.save_for_backward(terms.comp)
        return terms.lnorm.to(kappa.dtype)

    @staticmethod
    def backward(ctx, grad):
        (comp,) = ctx.saved_tensors
        return -grad * comp.to(grad.dtype), None


class _KLUniform(torch.autograd.Function):
    r"""``KL(vMF(mu, kappa) || U(S^{m-1})) = kappa A_m(kappa) + log C_m(kappa) + log|S^{m-1}|`` (eq. 5).

    Evaluated as ``kappa A_m - l(kappa)`` with ``l = log(Gamma(m/2)(2/kappa)^{m/2-1} I_{m/2-1})``
    for ``kappa <= 2`` (both terms are ``O(kappa^2)``, the KL tends to ``kappa^2 / (2m)``) and as
    ``-kappa (1 - A_m) - (l - kappa)`` above (no ``O(kappa)`` terms cancel). The gradient is
    ``kappa A_m'(kappa)`` (eq. 19-21), from the cancellation-free ``A_m'`` of :mod:`..special`.
    """

    @staticmethod
    def forward(ctx, kappa, terms):
        k = _compute(kappa)
        ctx.save_for_backward(k * terms.dA)
        small = k * terms.A - terms.ell_small
        large = -k * terms.comp - terms.lnorm
        kl = torch.where(k <= special._SERIES_X, small, large)
        return torch.clamp(kl, min=0).to(kappa.dtype)

    @staticmethod
    def backward(ctx, grad):
        (dkl,) = ctx.saved_tensors
        return grad * dkl.to(grad.dtype), None


def _check_concentration(kappa: Tensor, name: str = "VonMisesFisher",
                         allow_zero: bool = False) -> None:
    bad = ~((kappa >= 0) if allow_zero else (kappa > 0)) | ~torch.isfinite(kappa)
    if bad.any():
        raise ValueError(
            f"{name}: concentration must be finite and {'>=' if allow_zero else '>'} 0, got "
            f"{kappa[bad].flatten()[:5].tolist()} (shape {tuple(kappa.shape)})."
        )


def _check_loc(loc: Tensor, name: str = "VonMisesFisher") -> None:
    if not torch.isfinite(loc).all():
        raise ValueError(f"{name}: loc contains NaN or inf.")
    norm = torch.linalg.vector_norm(loc, dim=-1)
    if (norm == 0).any():
        raise ValueError(f"{name}: loc has a zero vector; it must be a unit vector.")
    tol = unit_norm_tolerance(loc.dtype)
    if ((norm - 1).abs() > tol).any():
        worst = (norm - 1).abs().max().item()
        raise ValueError(
            f"{name}: loc must have unit norm along its last dimension (|norm - 1| <= "
            f"{tol:g}); found |norm - 1| = {worst:.3g}. Normalise it, e.g. "
            "torch.nn.functional.normalize(loc, dim=-1)."
        )


class _Reflect(torch.autograd.Function):
    r"""``z = H(mu) (s cos(theta), sin(theta) v)``: tangent-normal decomposition and Householder reflection.

    ``v`` is a unit vector in ``R^{m-1}`` and ``H = I - 2 u u^T`` with ``u ∝ s e_1 - mu``,
    ``s = -sign(mu_1)`` (so ``||s e_1 - mu||^2 = 2 (1 + |mu_1|) >= 2``: stable also at
    ``mu = ±e_1``). With ``omega = cos(theta)`` (computed as ``1 - 2 sin^2(theta/2)``),
    ``r = sin(theta)``, ``a = mu_1``, ``M = mu_{2:}``, ``V = r v``, ``P = M^T V / (1 - s a)`` and a
    unit ``mu``:

    ``z_1 = a omega + (s - a) P``,  ``z_{2:} = V + M (omega - P)``.

    One function with a hand-derived backward (gradients in ``mu`` and ``theta``), which avoids
    the full-size zero-filled buffers autograd allocates for slices and concatenations.
    """

    @staticmethod
    def forward(ctx, loc, theta, v):
        a, M = loc[..., 0], loc[..., 1:]
        sh = torch.sin(theta / 2)
        omega = 1 - 2 * sh * sh
        r = torch.sin(theta)
        V = v * r.unsqueeze(-1)
        s = torch.where(a >= 0, -1.0, 1.0).to(loc.dtype)
        den = 1 - s * a
        P = (M * V).sum(-1) / den
        c = omega - P
        z = torch.empty(loc.shape, dtype=loc.dtype, device=loc.device)
        z[..., 0] = a * omega + (s - a) * P
        torch.addcmul(V, M, c.unsqueeze(-1), out=z[..., 1:])
        ctx.save_for_backward(loc, v, omega, r, s, den, P)
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        loc, v, omega, r, s, den, P = ctx.saved_tensors
        a, M = loc[..., 0], loc[..., 1:]
        g1, gr = g[..., 0], g[..., 1:]
        gM = (gr * M).sum(-1)
        dP = g1 * (s - a) - gM  # dL/dP
        k = (dP / den).unsqueeze(-1)
        dloc = dtheta = None
        if ctx.needs_input_grad[0]:
            dloc = torch.empty_like(loc)
            dloc[..., 0] = g1 * (omega - P) + dP * P * s / den
            torch.addcmul(gr * (omega - P).unsqueeze(-1), k, v * r.unsqueeze(-1), out=dloc[..., 1:])
        if ctx.needs_input_grad[1]:
            domega = g1 * a + gM
            dr = ((gr + k * M) * v).sum(-1)  # dL/dV . v
            dtheta = dr * omega - domega * r  # d(cos, sin)/d theta = (-sin, cos)
        return dloc, dtheta, None


class VonMisesFisher(Distribution):
    r"""von Mises-Fisher distribution ``vMF(mu, kappa)`` on the unit sphere ``S^{m-1} ⊂ R^m``.

    Density w.r.t. the surface measure (paper eq. 3-4):
    ``q(z) = C_m(kappa) exp(kappa mu^T z)``, ``C_m(kappa) = kappa^{m/2-1} / ((2 pi)^{m/2} I_{m/2-1}(kappa))``.

    Args:
        loc (Tensor): mean direction ``mu``, shape ``(..., m)``, unit norm, ``m >= 2``.
        concentration (Tensor or float): ``kappa > 0``, shape broadcastable with ``loc.shape[:-1]``;
            a trailing singleton dimension (shape ``(..., 1)``) is accepted.
        validate_args (bool, optional): check arguments (unit ``loc``, finite positive
            ``concentration``) and, in :meth:`log_prob`, that values lie on the sphere.

    ``batch_shape = broadcast(loc.shape[:-1], concentration.shape)``, ``event_shape = (m,)``.

    Sampling (:meth:`rsample`) follows Algorithm 1: ``omega = mu^T z`` by Ulrich/Wood
    acceptance-rejection (Algorithm 2; exact inverse CDF for ``m = 3``), a uniform tangent
    direction, and a Householder reflection (Algorithm 3) that maps ``±e_1`` to ``mu`` (the sign
    chosen so that ``||±e_1 - mu|| >= sqrt 2``, which keeps it stable at ``mu = ±e_1``). The
    gradient in ``mu`` is pathwise through the reflection. The gradient in ``kappa`` uses
    *implicit reparameterisation* of ``omega`` (Figurnov et al., 2018:
    ``d omega / d kappa = -(dF / d kappa) / g``, with a fixed-order quadrature for ``dF/dkappa``),
    which is unbiased for any downstream loss, unlike differentiating only through the accepted
    proposal (the authors' code), whose gradient in ``kappa`` misses the correction term
    ``g_cor`` of eq. 30.

    Example::

        >>> loc = torch.nn.functional.normalize(torch.randn(4, 10), dim=-1)
        >>> q = VonMisesFisher(loc, torch.full((4,), 5.0))
        >>> z = q.rsample()            # (4, 10), unit rows
        >>> q.log_prob(z).shape
        torch.Size([4])
    """

    arg_constraints = {"loc": sphere, "concentration": constraints.positive}
    support = sphere
    has_rsample = True

    def __init__(self, loc: Tensor, concentration, validate_args=None):
        if not isinstance(loc, Tensor) or loc.dim() < 1:
            raise ValueError("VonMisesFisher: loc must be a tensor of shape (..., m) with m >= 2.")
        if not loc.is_floating_point():
            loc = loc.to(torch.get_default_dtype())
        m = loc.shape[-1]
        if m < 2:
            raise ValueError(f"VonMisesFisher: needs m >= 2 (the sphere S^(m-1) in R^m), got m = {m}.")
        if isinstance(concentration, Number):
            concentration = torch.tensor(float(concentration), dtype=loc.dtype, device=loc.device)
        elif not isinstance(concentration, Tensor):
            raise TypeError("VonMisesFisher: concentration must be a tensor or a number.")
        else:
            concentration = concentration.to(loc.dtype)
        if concentration.dim() == loc.dim() and concentration.shape[-1] == 1:
            concentration = concentration.squeeze(-1)
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        self.loc = loc.expand(batch_shape + (m,))
        self.concentration = concentration.expand(batch_shape)
        if validate_args if validate_args is not None else Distribution._validate_args:
            _check_loc(self.loc)
            _check_concentration(self.concentration)
        super().__init__(batch_shape, torch.Size((m,)), validate_args=False)
        self._validate_args = (
            validate_args if validate_args is not None else Distribution._validate_args
        )

    @property
    def _m(self) -> int:
        return self.event_shape[0]

    @property
    def _terms(self) -> special._VMFTerms:
        """Bessel quantities at ``kappa`` (computed once per distribution, no autograd)."""
        terms = self.__dict__.get("_terms_cache")
        if terms is None:
            with torch.no_grad():
                terms = special._vmf_terms(self._m, _compute(self.concentration.detach()))
            self.__dict__["_terms_cache"] = terms
        return terms

    def expand(self, batch_shape, _instance=None):
        """A copy with batch shape ``batch_shape``: ``loc`` and ``concentration`` are broadcast views."""
        new = self._get_checked_instance(VonMisesFisher, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        super(VonMisesFisher, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # --- moments -------------------------------------------------------------------------
    @property
    def mean_resultant_length(self) -> Tensor:
        """``A_m(kappa) = E[mu^T z] = I_{m/2}(kappa) / I_{m/2-1}(kappa)``, shape ``batch_shape``."""
        return special.iv_ratio(self._m / 2, self.concentration)  # differentiable

    @property
    def mean(self) -> Tensor:
        """``E[z] = A_m(kappa) mu``."""
        return self.mean_resultant_length.unsqueeze(-1) * self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        r"""Diagonal of ``Cov[z] = (A/kappa) I + (1 - A^2 - m A / kappa) mu mu^T``."""
        A = self.mean_resultant_length.unsqueeze(-1)
        k = self.concentration.unsqueeze(-1)
        along = 1 - A * A - self._m * A / k
        return A / k + along * self.loc * self.loc

    # --- densities -----------------------------------------------------------------------
    def log_normalizer(self) -> Tensor:
        """``log C_m(kappa)`` (eq. 4), shape ``batch_shape``; finite for any ``kappa > 0``."""
        L = _LogNormalizerScaled.apply(self.concentration, self._terms)
        return -log_sphere_area(self._m) - L - self.concentration

    def log_prob(self, value: Tensor) -> Tensor:
        r"""``log C_m(kappa) + kappa mu^T z``, computed as
        ``-log|S^{m-1}| - L(kappa) - kappa ||z - mu||^2 / 2`` (no ``O(kappa)`` cancellation)."""
        if self._validate_args:
            self._validate_sample(value)
        L = _LogNormalizerScaled.apply(self.concentration, self._terms)
        half_sq = 0.5 * ((value - self.loc) ** 2).sum(-1)  # 1 - mu^T z for unit vectors
        return -log_sphere_area(self._m) - L - self.concentration * half_sq

    def entropy(self) -> Tensor:
        """``H = log|S^{m-1}| - KL(q || U(S^{m-1}))``."""
        return log_sphere_area(self._m) - self.kl_to_uniform()

    def kl_to_uniform(self) -> Tensor:
        """``KL(q || U(S^{m-1}))`` (eq. 5), shape ``batch_shape``."""
        return _KLUniform.apply(self.concentration, self._terms)

    # --- sampling ------------------------------------------------------------------------
    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        """Reparameterised sample of shape ``sample_shape + batch_shape + (m,)``.

        Differentiable in ``loc`` (pathwise) and ``concentration`` (implicit
        reparameterisation); unit norm to rounding error. See the class docstring.
        """
        shape = self._extended_shape(sample_shape)
        m = self._m
        kappa = self.concentration.expand(shape[:-1])
        theta, _, _ = sample_theta(kappa.detach(), m)  # angle to mu, no grad
        if kappa.requires_grad:
            # 1 - A_m(kappa) for the quadrature (shared with KL / log_prob); S^2 needs none
            comp_a = None if m == 3 else self._terms.comp.to(kappa.dtype).expand(kappa.shape)
            theta = reparameterized_theta(kappa, theta, m, comp_a)
        v = torch.randn(shape[:-1] + (m - 1,), dtype=kappa.dtype, device=kappa.device)
        v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(_TINY)
        return _Reflect.apply(self.loc.expand(shape), theta, v)

    def rejection_attempts(self, sample_shape=torch.Size()) -> Tensor:
        """Number of proposals the Ulrich/Wood sampler needed per draw (paper Table 5).

        Shape ``sample_shape + batch_shape``; always 1 for ``m = 3`` (exact inverse CDF).
        """
        kappa = self.concentration.detach().expand(self._extended_shape(sample_shape)[:-1])
        return sample_w(kappa, self._m)[1]

    def __repr__(self):
        return (
            f"VonMisesFisher(loc: {tuple(self.loc.shape)}, concentration: "
            f"{tuple(self.concentration.shape)}, m={self._m})"
        )
