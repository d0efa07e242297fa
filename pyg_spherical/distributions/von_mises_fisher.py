r"""The von Mises-Fisher distribution on ``S^{m-1}`` (paper section 3).

.. math::
    q(z \mid \mu, \kappa) = C_m(\kappa) \exp(\kappa \mu^\top z), \qquad
    C_m(\kappa) = \frac{\kappa^{m/2-1}}{(2\pi)^{m/2} I_{m/2-1}(\kappa)} \quad \text{(eq. 3-4)}
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import constraints

from .._utils import to_compute
from ..special import VMFTerms, iv_ratio, iv_ratio_complement, iv_ratio_derivative, vmf_terms
from ._sampling import reparameterized_theta, sample_theta, sample_w
from ._sphere import SphereDistribution, log_sphere_area
from .constraints import sphere

__all__ = ["VonMisesFisher"]


def _terms(m: int, kappa: Tensor) -> VMFTerms:
    """Bessel quantities at ``kappa`` (no autograd), computed afresh on every call so that they
    always belong to the current values of ``kappa`` (which may have been changed in place)."""
    with torch.no_grad():
        return vmf_terms(m, to_compute(kappa.detach()))


class _LogNormalizerScaled(torch.autograd.Function):
    r"""``L(kappa) = log(Gamma(m/2) (2/kappa)^{m/2-1} I_{m/2-1}(kappa)) - kappa``.

    ``log C_m(kappa) = -log|S^{m-1}| - L(kappa) - kappa``; ``dL/dkappa = A_m(kappa) - 1`` (eq. 18),
    returned as ``-(1 - A_m)`` so that it keeps its precision as ``A_m -> 1``. The values come
    in ``terms`` (:func:`_terms` at the same ``kappa``).
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
        k = to_compute(kappa)
        ctx.save_for_backward(k * terms.dA)
        small = k * terms.A - terms.ell_small
        large = -k * terms.comp - terms.lnorm
        kl = torch.where(terms.small, small, large)
        return torch.clamp(kl, min=0).to(kappa.dtype)

    @staticmethod
    def backward(ctx, grad):
        (dkl,) = ctx.saved_tensors
        return grad * dkl.to(grad.dtype), None


class _VarianceFactors(torch.autograd.Function):
    r"""``(A_m(kappa) / kappa, A_m'(kappa))``: the variance of ``z`` across ``mu`` and along it.

    ``A_m'`` comes from the cancellation-free recurrence of :mod:`..special` (it falls as
    ``(m - 1) / (2 kappa^2)``, where ``1 - A^2 - (m - 1) A / kappa`` loses every digit). The
    derivatives ``(A' - A / kappa) / kappa`` and
    ``A'' = (m - 1) A / kappa^2 - A' (2 A + (m - 1) / kappa)`` cancel to relative order
    ``max(kappa, (m / kappa)^2) eps``, so the backward pass runs in float64 where the device has
    it (relative error ~1e-7 at ``m = 100``, ``kappa = 1e-3``).
    """

    @staticmethod
    def forward(ctx, kappa, m):
        ctx.m = m
        ctx.save_for_backward(kappa)
        return iv_ratio(m / 2, kappa) / kappa, iv_ratio_derivative(m / 2, kappa)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_across, g_along):
        (kappa,) = ctx.saved_tensors
        k = to_compute(kappa, highest=True)
        A, dA, c = iv_ratio(ctx.m / 2, k), iv_ratio_derivative(ctx.m / 2, k), ctx.m - 1
        d_across = (dA - A / k) / k
        d_along = c * A / (k * k) - dA * (2 * A + c / k)
        return (g_across * d_across + g_along * d_along).to(kappa.dtype), None


class VonMisesFisher(SphereDistribution):
    r"""von Mises-Fisher distribution ``vMF(mu, kappa)`` on the unit sphere ``S^{m-1} ⊂ R^m``.

    Density w.r.t. the surface measure (paper eq. 3-4):
    ``q(z) = C_m(kappa) exp(kappa mu^T z)``, ``C_m(kappa) = kappa^{m/2-1} / ((2 pi)^{m/2} I_{m/2-1}(kappa))``.

    Args:
        loc (Tensor): mean direction ``mu``, shape ``(..., m)``, unit norm, ``m >= 2``.
        concentration (Tensor or float): ``kappa > 0``, shape broadcastable with
            ``loc.shape[:-1]`` (the batch shape of ``loc``, without the event dimension ``m``).
            A concentration with as many dimensions as a batched ``loc`` and a trailing 1, such
            as ``(N, 1)`` for ``loc`` of shape ``(N, m)``, is rejected: broadcasting would pair
            every ``kappa`` with every ``mu`` (batch shape ``(N, N)``). Pass
            ``concentration.squeeze(-1)``.
        validate_args (bool, optional): check the arguments against :attr:`arg_constraints`
            (unit ``loc``, finite positive ``concentration``) and, in :meth:`log_prob`, that
            values lie on the sphere; default :meth:`Distribution.set_default_validate_args`.

    ``batch_shape = broadcast(loc.shape[:-1], concentration.shape)``, ``event_shape = (m,)``.

    As in :mod:`torch.distributions`, ``loc`` and ``concentration`` are kept as views of the
    tensors passed in (no copy when the dtypes agree), so in-place changes to them, e.g. an
    optimiser step, carry over to every later call; nothing derived from them is cached between
    calls.

    float16 and bfloat16 arguments are computed in float32 and the results cast back; float64
    stays float64.

    Sampling (:meth:`rsample`) follows Algorithm 1: ``omega = mu^T z`` by Ulrich/Wood
    acceptance-rejection (Algorithm 2; exact inverse CDF for ``m = 3``), a uniform tangent
    direction (from one Gaussian draw in ``R^m`` that also supplies the random numbers of the
    first proposal), and a Householder reflection (Algorithm 3) that maps ``±e_1`` to ``mu`` (the sign
    chosen so that ``||±e_1 - mu|| >= sqrt 2``, which keeps it stable at ``mu = ±e_1``). The
    gradient in ``mu`` is pathwise through the reflection. The gradient in ``kappa`` uses
    *implicit reparameterisation* of ``omega`` (Figurnov et al., 2018:
    ``d omega / d kappa = -(dF / d kappa) / g``, with a fixed-order quadrature for ``dF/dkappa``),
    which is unbiased for any downstream loss, unlike differentiating only through the accepted
    proposal (the authors' code), whose gradient in ``kappa`` misses the correction term
    ``g_cor`` of eq. 30. That quadrature dominates the cost of ``rsample`` + ``backward``;
    :func:`~pyg_spherical.distributions.compile_quadrature` fuses it with ``torch.compile``
    (off by default: compiling takes seconds).

    Example::

        >>> loc = torch.nn.functional.normalize(torch.randn(4, 10), dim=-1)
        >>> q = VonMisesFisher(loc, torch.full((4,), 5.0))
        >>> z = q.rsample()            # (4, 10), unit rows
        >>> q.log_prob(z).shape
        torch.Size([4])
    """

    arg_constraints = {"loc": sphere, "concentration": constraints.positive}

    # --- moments -------------------------------------------------------------------------
    @property
    def mean_resultant_length(self) -> Tensor:
        """``A_m(kappa) = E[mu^T z] = I_{m/2}(kappa) / I_{m/2-1}(kappa)``, shape ``batch_shape``."""
        return iv_ratio(self._m / 2, self.concentration)  # differentiable

    @property
    def variance(self) -> Tensor:
        r"""Diagonal of ``Cov[z] = (A/kappa) I + (1 - A^2 - m A / kappa) mu mu^T``.

        Evaluated as ``(A/kappa)(1 - mu_i^2) + A'(kappa) mu_i^2``, the variance across ``mu``
        plus ``Var[mu^T z] = A' = 1 - A^2 - (m - 1) A / kappa``, with ``A'`` from the
        cancellation-free recurrence of :mod:`..special` (see :class:`_VarianceFactors`), so that
        it keeps its relative precision at every ``kappa`` and in float32.
        """
        loc = to_compute(self.loc)
        across, along = _VarianceFactors.apply(to_compute(self.concentration), self._m)
        var = across.unsqueeze(-1) * ((1 - loc) * (1 + loc)) + along.unsqueeze(-1) * (loc * loc)
        return self._out(var)

    # --- densities -----------------------------------------------------------------------
    def _log_normalizer_scaled(self, kappa: Tensor) -> Tensor:
        return _LogNormalizerScaled.apply(kappa, _terms(self._m, kappa))

    def log_normalizer(self) -> Tensor:
        """``log C_m(kappa)`` (eq. 4), shape ``batch_shape``; finite for any ``kappa > 0``."""
        k = to_compute(self.concentration)
        return self._out(-log_sphere_area(self._m) - self._log_normalizer_scaled(k) - k)

    def log_prob(self, value: Tensor) -> Tensor:
        r"""``log C_m(kappa) + kappa mu^T z``, computed as
        ``-log|S^{m-1}| - L(kappa) - kappa ||z - mu||^2 / 2`` (no ``O(kappa)`` cancellation)."""
        out, loc, k, value = self._promoted(value)
        half_sq = 0.5 * ((value - loc) ** 2).sum(-1)  # 1 - mu^T z for unit vectors
        lp = -log_sphere_area(self._m) - self._log_normalizer_scaled(k) - k * half_sq
        return lp.to(out)

    def _kl_to_uniform(self) -> Tensor:
        """``KL(q || U(S^{m-1}))`` (eq. 5), shape ``batch_shape``: the registered
        ``kl_divergence(q, HypersphericalUniform(m))``."""
        k = to_compute(self.concentration)
        return self._out(_KLUniform.apply(k, _terms(self._m, k)))

    # --- sampling ------------------------------------------------------------------------
    def _angle(self, kappa: Tensor, first: Tensor, sq: Tensor, norm: Tensor) -> Tensor:
        """``theta`` by Ulrich/Wood rejection (Algorithm 2; the exact inverse CDF on ``S^2``),
        its first proposal from ``first`` and ``sq / 2 ~ Gamma((m - 1) / 2)``."""
        theta, _, _ = sample_theta(kappa.detach(), self._m, (first, 0.5 * sq))
        return self._kappa_gradient(kappa, theta) if kappa.requires_grad else theta

    def _kappa_gradient(self, kappa: Tensor, theta: Tensor) -> Tensor:
        """``theta`` with its gradient in ``kappa`` by implicit reparameterisation."""
        m = self._m
        # 1 - A_m(kappa) for the quadrature, once per batch element and at the current kappa
        # (nothing cached between calls); S^2 needs none
        comp_a = (None if m == 3 else iv_ratio_complement(
            m / 2, to_compute(self.concentration).detach()).expand(kappa.shape))
        return reparameterized_theta(kappa, theta, m, comp_a)

    def rejection_attempts(self, sample_shape=torch.Size()) -> Tensor:
        """Number of proposals the Ulrich/Wood sampler needed per draw (paper Table 5).

        Shape ``sample_shape + batch_shape``; always 1 for ``m = 3`` (exact inverse CDF).
        """
        kappa = to_compute(self.concentration.detach()).expand(
            self._extended_shape(sample_shape)[:-1])
        return sample_w(kappa, self._m)[1]
