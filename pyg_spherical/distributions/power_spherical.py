r"""The Power Spherical distribution on ``S^{m-1}`` (De Cao & Aziz, 2020, arXiv:2006.04437).

.. math::
    q(z \mid \mu, \kappa) = \frac{(1 + \mu^\top z)^\kappa}{N_m(\kappa)}, \qquad
    N_m(\kappa) = 2^{\alpha + \beta} \pi^\beta \frac{\Gamma(\alpha)}{\Gamma(\alpha + \beta)},
    \quad \alpha = \tfrac{m-1}{2} + \kappa, \ \beta = \tfrac{m-1}{2}.

An alternative to the von Mises-Fisher with the same mean direction / concentration
parameterisation, whose normaliser, entropy and KL to the uniform prior involve only ``lgamma``
and ``digamma`` (no Bessel function), and whose sampler needs no rejection step that depends on
``kappa``: ``t = mu^T z`` is ``2 B - 1`` with ``B ~ Beta(alpha, beta)``.
"""
from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from ..special import _compute, _compute_dtype
from ._sampling import _standard_gamma
from .constraints import sphere
from .von_mises_fisher import (
    _broadcast_args,
    _check_concentration,
    _check_loc,
    _Reflect,
    _rowdot,
    log_sphere_area,
)

__all__ = ["PowerSpherical"]

# Below kappa = _SERIES_RATIO * beta the KL to the uniform distribution is summed as its power
# series in kappa / beta (the closed form cancels to O(kappa^2) there); _SERIES_TERMS terms
# bring the truncation error under 1e-17 relative.
_SERIES_RATIO = 0.25
_SERIES_TERMS = 32


def _work_dtype(t: Tensor) -> torch.dtype:
    """The scalar functions of ``kappa`` are evaluated in float64 (the ``lgamma`` differences
    at large ``kappa`` need it), except where the device has none."""
    return torch.float32 if t.device.type == "mps" else torch.float64


# Above _STIRLING the differences of lgamma / digamma / trigamma at a and a + b are summed from
# their asymptotic (Stirling) series, in which the large terms cancel analytically: the direct
# differences lose about log10(a) digits. The truncation error there is < 1e-16 relative.
_STIRLING = 10.0
_LGAMMA_SERIES = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
_DIGAMMA_SERIES = (-1 / 12, 1 / 120, -1 / 252, 1 / 240, -1 / 132, 691 / 32760, -1 / 12)
_TRIGAMMA_SERIES = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6)


@cache
def _coef(coef: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(coef, dtype=dtype, device=device)


def _powers(x: Tensor, n: int) -> Tensor:
    """``(x, x^2, ..., x^n)`` along a new last dimension (one cumulative product)."""
    return torch.cumprod(x.unsqueeze(-1).expand(*x.shape, n), dim=-1)


def _odd_series(coef, x: Tensor, first: int) -> Tensor:
    """``sum_j coef[j] x^-(first + 2 j)``, as one product with a matrix of powers (a few
    operations whatever the number of terms: small batches are bound by per-op overhead)."""
    r = 1 / x
    r2 = r * r
    return (_powers(r2, len(coef)) @ _coef(coef, x.dtype, x.device)) * r**first / r2


def _lgamma_diff(a: Tensor, b: float) -> Tensor:
    r"""``lgamma(a + b) - lgamma(a)`` for ``a > 0``, ``b >= 0``, without cancellation at large ``a``:
    ``b log(a + b) + a (log1p(b / a) - b / a) - log1p(b / a) / 2 + S(a + b) - S(a)``."""
    big = a.clamp(min=_STIRLING)
    lp = torch.log1p(b / big)
    stirling = (b * torch.log(big + b) + big * lp - b - 0.5 * lp
                + _odd_series(_LGAMMA_SERIES, big + b, 1) - _odd_series(_LGAMMA_SERIES, big, 1))
    small = a.clamp(max=_STIRLING)
    direct = torch.lgamma(small + b) - torch.lgamma(small)
    return torch.where(a >= _STIRLING, stirling, direct)


def _digamma_diff(a: Tensor, b: float) -> Tensor:
    r"""``psi(a + b) - psi(a)``: ``log1p(b / a) + b / (2 a (a + b)) + [T(a + b) - T(a)]``."""
    big = a.clamp(min=_STIRLING)
    stirling = (torch.log1p(b / big) + b / (2 * big * (big + b))
                + _odd_series(_DIGAMMA_SERIES, big + b, 2) - _odd_series(_DIGAMMA_SERIES, big, 2))
    small = a.clamp(max=_STIRLING)
    direct = torch.digamma(small + b) - torch.digamma(small)
    return torch.where(a >= _STIRLING, stirling, direct)


def _trigamma_diff(a: Tensor, b: float) -> Tensor:
    r"""``psi'(a) - psi'(a + b) >= 0``: ``b / (a (a + b)) + b (2a + b) / (2 a^2 (a + b)^2) + ...``."""
    big = a.clamp(min=_STIRLING)
    ab = big + b
    stirling = (b / (big * ab) + b * (big + ab) / (2 * (big * ab) ** 2)
                + _odd_series(_TRIGAMMA_SERIES, big, 3) - _odd_series(_TRIGAMMA_SERIES, ab, 3))
    small = a.clamp(max=_STIRLING)
    direct = _trigamma(small) - _trigamma(small + b)
    return torch.where(a >= _STIRLING, stirling, direct)


def _trigamma(x: Tensor) -> Tensor:
    """``psi'(x)`` for ``x > 0`` by the recurrence ``psi'(x) = psi'(x + 10) + sum_j (x + j)^-2``
    and the asymptotic series at ``x + 10`` (``torch.polygamma(1, .)`` is off by ~1e-10 there)."""
    y = x + 10
    out = _odd_series(_TRIGAMMA_SERIES, y, 3) + (1 + 0.5 / y) / y
    shifts = _coef(tuple(range(10)), x.dtype, x.device)
    return out + (x.unsqueeze(-1) + shifts).pow(-2).sum(-1)


class _LgammaDiff(torch.autograd.Function):
    """``lgamma(a + b) - lgamma(a)`` with derivative ``psi(a + b) - psi(a)``, both stable."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.b = b
        ctx.save_for_backward(a)
        return _lgamma_diff(a, b)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * _digamma_diff(a, ctx.b), None


@cache
def _kl_series(m: int) -> tuple[float, ...]:
    r"""Coefficients ``c_n beta^n`` (``n = 2, 3, ...``) of the KL to the uniform distribution as a
    power series in ``x = kappa / beta``.

    With ``f(kappa) = log Gamma(2 beta + kappa) - log Gamma(beta + kappa)`` the KL is
    ``f(kappa) - f(0) - kappa f'(kappa) = -sum_{n>=2} (n - 1) f^{(n)}(0) kappa^n / n!``, and
    ``f^{(n)}(0) = psi^{(n-1)}(2 beta) - psi^{(n-1)}(beta)``.
    """
    from scipy.special import polygamma

    beta = 0.5 * (m - 1)
    out = []
    for n in range(2, _SERIES_TERMS + 2):
        fn = float(polygamma(n - 1, 2 * beta) - polygamma(n - 1, beta))
        out.append(-(n - 1) * fn * math.exp(n * math.log(beta) - math.lgamma(n + 1)))
    return tuple(out)


class _KLUniform(torch.autograd.Function):
    r"""``KL(PS(mu, kappa) || U(S^{m-1})) = log|S^{m-1}| - H``, independent of ``mu``.

    ``= [lgamma(alpha + beta) - lgamma(alpha)] - [lgamma(2 beta) - lgamma(beta)]
    - kappa [psi(alpha + beta) - psi(alpha)]`` (the differences from :func:`_lgamma_diff` and
    :func:`_digamma_diff`), summed as a power series in ``kappa / beta`` for ``kappa < beta / 4`` (there it is ``O(kappa^2)`` while its terms are ``O(kappa)``). The
    derivative is ``kappa [psi'(alpha) - psi'(alpha + beta)] >= 0``.
    """

    @staticmethod
    def forward(ctx, kappa, m):
        wd = _work_dtype(kappa)
        k = kappa.detach().to(wd)
        beta = 0.5 * (m - 1)
        a = beta + k
        direct = (_lgamma_diff(a, beta) - (math.lgamma(2 * beta) - math.lgamma(beta))
                  - k * _digamma_diff(a, beta))
        x = torch.clamp(k / beta, max=_SERIES_RATIO)
        coef = _kl_series(m)
        series = (_powers(x, len(coef)) @ _coef(coef, x.dtype, x.device)) * x  # from x^2
        kl = torch.where(k < _SERIES_RATIO * beta, series, direct).clamp_min(0)
        ctx.m = m
        ctx.save_for_backward(k)
        return kl.to(kappa.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (k,) = ctx.saved_tensors
        beta = 0.5 * (ctx.m - 1)
        d = k * _trigamma_diff(beta + k, beta)
        return grad * d.to(grad.dtype), None


class _PowerAngle(torch.autograd.Function):
    r"""The angle ``theta = arccos(mu^T z)`` of a Power Spherical draw, from ``||g||`` (the norm of
    the tangent draw, ``Y = ||g||^2 / 2 ~ Gamma(beta)``) and ``X ~ Gamma(alpha)``:
    ``sin^2(theta / 2) = Y / (X + Y)``, i.e. ``theta = 2 atan2(sqrt(Y), sqrt(X))``.

    Backward: ``d theta / d kappa = (d theta / d X) (d X / d alpha)`` with
    ``d theta / d X = -sin(theta) / (2 X)`` and torch's implicit Gamma gradient
    ``d X / d alpha`` (:func:`torch._standard_gamma_grad`), which depends only on ``X`` and
    ``alpha``, not on how ``X`` was drawn.
    """

    @staticmethod
    def forward(ctx, kappa, g_norm, beta, x):
        alpha = kappa + beta
        theta = 2 * torch.atan2(g_norm * math.sqrt(0.5), torch.sqrt(x))
        ctx.save_for_backward(alpha, x, theta)
        return theta

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        alpha, x, theta = ctx.saved_tensors
        dx = torch._standard_gamma_grad(alpha, x)
        return -0.5 * grad * torch.sin(theta) / x * dx, None, None, None


class PowerSpherical(Distribution):
    r"""Power Spherical distribution ``PS(mu, kappa)`` on the unit sphere ``S^{m-1} ⊂ R^m``.

    Density w.r.t. the surface measure (De Cao & Aziz, 2020):
    ``q(z) = (1 + mu^T z)^kappa / N_m(kappa)`` with
    ``N_m(kappa) = 2^{alpha+beta} pi^beta Gamma(alpha) / Gamma(alpha+beta)``,
    ``alpha = (m-1)/2 + kappa``, ``beta = (m-1)/2``. ``kappa = 0`` is the uniform distribution.

    Args:
        loc (Tensor): mean direction ``mu``, shape ``(..., m)``, unit norm, ``m >= 2``.
        concentration (Tensor or float): ``kappa >= 0``, shape broadcastable with
            ``loc.shape[:-1]``; a ``(..., 1)`` concentration beside a ``(..., m)`` ``loc`` is refused
            (it would pair every kappa with every direction): squeeze it first.
        validate_args (bool, optional): check the arguments against :attr:`arg_constraints`
            (unit ``loc``, finite non-negative ``concentration``) and, in :meth:`log_prob`, that
            values lie on the sphere; default :meth:`Distribution.set_default_validate_args`.

    ``batch_shape = broadcast(loc.shape[:-1], concentration.shape)``, ``event_shape = (m,)``.

    Sampling (:meth:`rsample`): ``t = mu^T z = 2 B - 1`` with ``B ~ Beta(alpha, beta)``, a
    uniform tangent direction ``v`` on ``S^{m-2}``, ``z' = (t, sqrt(1 - t^2) v)`` and the same
    Householder reflection as :class:`~pyg_spherical.distributions.VonMisesFisher` maps ``e_1``
    to ``mu``. The Beta variate is ``B = X / (X + Y)`` with ``X ~ Gamma(alpha)`` and
    ``Y = ||g||^2 / 2 ~ Gamma(beta)``, where ``g ~ N(0, I_{m-1})`` is the same Gaussian draw whose
    direction ``v = g / ||g||`` is the tangent direction (the norm and the direction of a
    standard normal vector are independent): one Gamma variate per sample (Marsaglia-Tsang,
    whose first normal is one more coordinate of the same Gaussian draw), and
    ``1 - t = 2 Y / (X + Y)`` keeps its relative precision at large ``kappa``.
    Gradients are pathwise: in ``mu`` through the reflection, in ``kappa`` through ``X`` by
    implicit reparameterisation (:func:`torch._standard_gamma_grad`, the gradient of
    ``torch.distributions.Gamma.rsample``, which depends on ``X`` and ``alpha`` only and is
    accurate to about ``1e-4`` relative): unlike the vMF's, ``t`` needs no rejection step whose
    acceptance depends on ``kappa``, hence no correction term.

    Unlike the vMF's, the density vanishes at ``-mu`` (like ``(1 + mu^T z)^kappa``): as an
    importance-sampling proposal for a target that does not vanish there (e.g.
    ``p(x | z) p(z)`` with a uniform prior, in an importance-weighted log-likelihood), the
    weights have infinite variance once ``kappa >= (m - 1) / 2``, even if the estimate still
    converges.

    The normaliser, entropy and KL are evaluated in float64 (the ``lgamma`` / ``digamma``
    differences at large ``kappa`` need it) and returned in the dtype of ``loc``; samples,
    densities and moments of float16 / bfloat16 arguments are computed in float32 and cast back.

    Example::

        >>> loc = torch.nn.functional.normalize(torch.randn(4, 10), dim=-1)
        >>> q = PowerSpherical(loc, torch.full((4,), 5.0))
        >>> z = q.rsample()            # (4, 10), unit rows
        >>> q.log_prob(z).shape
        torch.Size([4])
    """

    arg_constraints = {"loc": sphere, "concentration": constraints.nonnegative}
    support = sphere
    has_rsample = True

    def __init__(self, loc: Tensor, concentration, validate_args=None):
        self.loc, self.concentration = _broadcast_args(loc, concentration, "PowerSpherical")
        batch_shape, m = self.concentration.shape, self.loc.shape[-1]
        if validate_args if validate_args is not None else Distribution._validate_args:
            # the specific reason first; the base class then checks arg_constraints
            _check_loc(self.loc, "PowerSpherical")
            _check_concentration(self.concentration, "PowerSpherical", allow_zero=True)
        super().__init__(batch_shape, torch.Size((m,)), validate_args=validate_args)

    @property
    def _m(self) -> int:
        return self.event_shape[0]

    @property
    def _beta(self) -> float:
        return 0.5 * (self._m - 1)

    def _out(self, x: Tensor) -> Tensor:
        """A result computed in float32/float64, in the distribution's dtype."""
        return x.to(self.loc.dtype)

    def expand(self, batch_shape, _instance=None):
        """A copy with batch shape ``batch_shape``: ``loc`` and ``concentration`` are broadcast views."""
        new = self._get_checked_instance(PowerSpherical, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        super(PowerSpherical, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # --- moments -------------------------------------------------------------------------
    @property
    def mean_resultant_length(self) -> Tensor:
        """``E[mu^T z] = kappa / (kappa + m - 1)``, shape ``batch_shape``."""
        k = self.concentration
        return k / (k + (self._m - 1))

    @property
    def mean(self) -> Tensor:
        """``E[z] = kappa / (kappa + m - 1) mu``."""
        return self.mean_resultant_length.unsqueeze(-1) * self.loc

    @property
    def mode(self) -> Tensor:
        """``mu`` (for ``kappa > 0``)."""
        return self.loc

    @property
    def variance(self) -> Tensor:
        r"""Diagonal of ``Cov[z] = s_par mu mu^T + s_perp (I - mu mu^T)``.

        With ``n = alpha + beta = kappa + m - 1``: ``s_par = Var[t] = 4 alpha beta / (n^2 (n + 1))``
        and ``s_perp = E[1 - t^2] / (m - 1) = 4 alpha beta / (n (n + 1) (m - 1))``.
        """
        beta = self._beta
        loc = _compute(self.loc)
        a = _compute(self.concentration) + beta
        n = a + beta
        par = 4 * a * beta / (n * n * (n + 1))
        perp = 4 * a * beta / (n * (n + 1) * (self._m - 1))
        return self._out(perp.unsqueeze(-1) + (par - perp).unsqueeze(-1) * loc * loc)

    # --- densities -----------------------------------------------------------------------
    def log_normalizer(self) -> Tensor:
        """``log N_m(kappa)`` (the density is ``(1 + mu^T z)^kappa / N_m(kappa)``), ``batch_shape``."""
        k = self.concentration.to(_work_dtype(self.concentration))
        return (self._scaled_log_normalizer(k) + k * math.log(2.0)).to(self.concentration.dtype)

    def _scaled_log_normalizer(self, k: Tensor) -> Tensor:
        r"""``log N_m(kappa) - kappa log 2
        = (m - 1) log 2 + beta log pi - [lgamma(alpha + beta) - lgamma(alpha)]``, in ``k``'s dtype."""
        beta = self._beta
        return ((self._m - 1) * math.log(2.0) + beta * math.log(math.pi)
                - _LgammaDiff.apply(k + beta, beta))

    def log_prob(self, value: Tensor) -> Tensor:
        r"""``kappa log((1 + mu^T z) / 2) - (log N_m(kappa) - kappa log 2)``.

        ``(1 + mu^T z) / 2`` is ``1 - ||z - mu||^2 / 4`` (via ``log1p``) on the half of the sphere
        around ``mu`` and ``||z + mu||^2 / 4`` on the other half, so that it keeps its relative
        precision near both ``mu`` and ``-mu`` and no ``O(kappa)`` terms cancel.
        """
        if self._validate_args:
            self._validate_sample(value)
        out = torch.promote_types(self.loc.dtype, value.dtype)
        work = _compute_dtype(out)  # float16 / bfloat16 are computed in float32
        loc, k, value = self.loc.to(work), self.concentration.to(work), value.to(work)
        near = 0.25 * ((value - loc) ** 2).sum(-1)  # (1 - mu^T z) / 2
        far = 0.25 * ((value + loc) ** 2).sum(-1)  # (1 + mu^T z) / 2
        log_half = torch.where(near < 0.5, torch.log1p(-near.clamp(max=0.5)), torch.log(far))
        # 0 * log(0) at z = -mu is the uniform density's 0, not NaN
        term = torch.where(k == 0, torch.zeros_like(log_half), k * log_half)
        scaled = self._scaled_log_normalizer(k.to(_work_dtype(k))).to(k.dtype)
        return (term - scaled).to(out)

    def entropy(self) -> Tensor:
        """``H = log|S^{m-1}| - KL(q || U(S^{m-1}))``
        ``= log N_m(kappa) - kappa (log 2 + psi(alpha) - psi(alpha + beta))``."""
        return log_sphere_area(self._m) - self.kl_to_uniform()

    def kl_to_uniform(self) -> Tensor:
        """``KL(q || U(S^{m-1}))``, shape ``batch_shape`` (see :class:`_KLUniform`)."""
        return _KLUniform.apply(self.concentration, self._m)

    # --- sampling ------------------------------------------------------------------------
    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        """Reparameterised sample of shape ``sample_shape + batch_shape + (m,)``.

        Differentiable in ``loc`` and ``concentration``; unit norm to rounding error. See the
        class docstring.
        """
        shape = self._extended_shape(sample_shape)
        # unvalidated, a NaN, negative or infinite kappa would give finite points (no host sync)
        k = self.concentration
        torch._assert_async((torch.isfinite(k) & (k >= 0)).all(), "PowerSpherical: concentration "
                            "must be finite and >= 0 to sample; found NaN, inf or a negative value.")
        # float16 / bfloat16 are computed in float32 (torch's Gamma gradient has no half kernels)
        loc, kappa = _compute(self.loc), _compute(self.concentration).expand(shape[:-1])
        # g in R^m: g_{2:} / ||g_{2:}|| is the tangent direction, ||g_{2:}||^2 / 2 ~ Gamma(beta)
        # and g_1 the first normal of the Gamma(alpha) sampler, all three independent
        g = torch.randn(shape, dtype=kappa.dtype, device=kappa.device)
        with torch.no_grad():
            x = _standard_gamma(kappa.detach() + self._beta, g[..., 0].clone())
        g[..., 0] = 0
        norm = torch.sqrt(_rowdot(g, g))
        theta = _PowerAngle.apply(kappa, norm, self._beta, x)
        norm = norm.clamp_min(torch.finfo(g.dtype).tiny)
        return self._out(_Reflect.apply(loc.expand(shape), theta, g, norm))

    def __repr__(self):
        return (
            f"PowerSpherical(loc: {tuple(self.loc.shape)}, concentration: "
            f"{tuple(self.concentration.shape)}, m={self._m})"
        )
