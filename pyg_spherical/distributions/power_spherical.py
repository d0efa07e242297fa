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
from torch.distributions import constraints

from .._debye import stirling_series
from .._utils import host_reads_are_free, to_compute
from ._sphere import SphereDistribution
from .constraints import sphere

__all__ = ["PowerSpherical"]

# Below kappa = _SERIES_RATIO * beta the KL to the uniform distribution is summed as its power
# series in kappa / beta (the closed form cancels to O(kappa^2) there); _SERIES_TERMS terms
# bring the truncation error under 1e-17 relative.
_SERIES_RATIO = 0.25
_SERIES_TERMS = 32


# Above _STIRLING the differences of lgamma / digamma / trigamma at a and a + b are summed from
# their asymptotic (Stirling) series, in which the large terms cancel analytically: the direct
# differences lose about log10(a) digits. The truncation error there is < 1e-16 relative.
_STIRLING = 10.0
_LGAMMA_SERIES, _DIGAMMA_SERIES, _TRIGAMMA_SERIES = (stirling_series(n) for n in range(3))


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


def _by_size(a: Tensor, stirling, direct) -> Tensor:
    """``stirling(a)`` where ``a >= _STIRLING``, ``direct(a)`` below (each on its clamped half)."""
    return torch.where(a >= _STIRLING, stirling(a.clamp(min=_STIRLING)),
                       direct(a.clamp(max=_STIRLING)))


def _lgamma_diff(a: Tensor, b: float) -> Tensor:
    r"""``lgamma(a + b) - lgamma(a)`` for ``a > 0``, ``b >= 0``, without cancellation at large ``a``:
    ``b log(a + b) + a (log1p(b / a) - b / a) - log1p(b / a) / 2 + S(a + b) - S(a)``."""

    def stirling(big):
        lp = torch.log1p(b / big)
        return (b * torch.log(big + b) + big * lp - b - 0.5 * lp
                + _odd_series(_LGAMMA_SERIES, big + b, 1) - _odd_series(_LGAMMA_SERIES, big, 1))

    return _by_size(a, stirling, lambda small: torch.lgamma(small + b) - torch.lgamma(small))


def _digamma_diff(a: Tensor, b: float) -> Tensor:
    r"""``psi(a + b) - psi(a)``: ``log1p(b / a) + b / (2 a (a + b)) + [T(a + b) - T(a)]``."""
    return _by_size(
        a, lambda big: (torch.log1p(b / big) + b / (2 * big * (big + b))
                        + _odd_series(_DIGAMMA_SERIES, big + b, 2)
                        - _odd_series(_DIGAMMA_SERIES, big, 2)),
        lambda small: torch.digamma(small + b) - torch.digamma(small))


def _trigamma_diff(a: Tensor, b: float) -> Tensor:
    r"""``psi'(a) - psi'(a + b) >= 0``: ``b / (a (a + b)) + b (2a + b) / (2 a^2 (a + b)^2) + ...``."""

    def stirling(big):
        ab = big + b
        return (b / (big * ab) + b * (big + ab) / (2 * (big * ab) ** 2)
                + _odd_series(_TRIGAMMA_SERIES, big, 3) - _odd_series(_TRIGAMMA_SERIES, ab, 3))

    return _by_size(a, stirling, lambda small: _trigamma(small) - _trigamma(small + b))


def _trigamma(x: Tensor) -> Tensor:
    """``psi'(x)`` for ``x > 0`` by the recurrence ``psi'(x) = psi'(x + 10) + sum_j (x + j)^-2``
    and the asymptotic series at ``x + 10`` (``torch.polygamma(1, .)`` is off by ~1e-10 there)."""
    y = x + 10
    out = _odd_series(_TRIGAMMA_SERIES, y, 3) + (1 + 0.5 / y) / y
    shifts = _coef(tuple(range(10)), x.dtype, x.device)
    return out + (x.unsqueeze(-1) + shifts).pow(-2).sum(-1)


def _standard_gamma(alpha: Tensor, z: Tensor | None = None, max_rounds: int = 100) -> Tensor:
    r"""``X ~ Gamma(alpha, 1)`` by Marsaglia & Tsang (2000), vectorised; no autograd.

    With ``d = alpha - 1/3``, ``c = 1 / sqrt(9 d)`` and ``v = (1 + c Z)^3``, ``Z ~ N(0, 1)``, the
    proposal ``d v`` is accepted if ``log U < Z^2 / 2 + d (1 - v + log v)`` (for ``alpha >= 1``
    with probability ``> 0.95``); ``1 - v + log v`` is evaluated as ``log1p(y) - y``,
    ``y = v - 1 = c Z (3 + c Z (3 + c Z))``, which keeps the test exact at large ``alpha`` in
    float32. ``alpha < 1`` is boosted: ``Gamma(alpha) = Gamma(alpha + 1) U^{1 / alpha}``. ``z``
    supplies the normals of the first round (e.g. a spare column of another Gaussian draw).
    About half the time of :func:`torch._standard_gamma` on CPU for large batches; below
    ``4096`` entries, and off the CPU, that one is used instead.
    """
    if alpha.numel() < 4096 or not host_reads_are_free(alpha):
        # small batches are bound by per-operation overhead, and off the CPU torch's sampler
        # needs no host sync per rejection round
        return torch._standard_gamma(alpha)
    shape = alpha.shape
    alpha = alpha.reshape(-1)
    boost = (alpha < 1).to(alpha.dtype)
    d = alpha + boost - 1.0 / 3.0
    c = torch.rsqrt(9 * d)
    zz = torch.randn_like(d) if z is None else z.reshape(-1)
    out = pending = None
    dd, cc = d, c
    for _ in range(max_rounds):
        cz = cc * zz
        y = cz * (3 + cz * (3 + cz))  # (1 + c Z)^3 - 1
        log_u = torch.log(torch.rand_like(zz))
        # v > 0 <=> y > -1 (below, log1p gives -inf or NaN and the test fails anyway)
        ok = (y > -1) & (log_u < 0.5 * zz * zz + dd * (torch.log1p(y) - y))
        x = dd * (1 + y)
        if out is None:
            out = x
            pending = (~ok).nonzero().squeeze(-1)  # host sync
        else:
            out[pending[ok]] = x[ok]
            pending = pending[~ok]
        if pending.numel() == 0:
            break
        dd, cc = d[pending], c[pending]
        zz = torch.randn_like(dd)
    else:
        raise RuntimeError("Gamma sampler did not terminate; is alpha finite and > 0?")
    # U^(boost / alpha): 1 where not boosted (0^0 = 1 even for U = 0), no host sync
    out = out * torch.rand_like(out).pow(boost / alpha)
    return out.reshape(shape)


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
        # in float64 (the lgamma differences at large kappa need it) where the device has it
        k = to_compute(kappa.detach(), highest=True)
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


class PowerSpherical(SphereDistribution):
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

    @property
    def _beta(self) -> float:
        return 0.5 * (self._m - 1)

    # --- moments -------------------------------------------------------------------------
    @property
    def mean_resultant_length(self) -> Tensor:
        """``E[mu^T z] = kappa / (kappa + m - 1)``, shape ``batch_shape``."""
        k = self.concentration
        return k / (k + (self._m - 1))

    @property
    def variance(self) -> Tensor:
        r"""Diagonal of ``Cov[z] = s_par mu mu^T + s_perp (I - mu mu^T)``.

        With ``n = alpha + beta = kappa + m - 1``: ``s_par = Var[t] = 4 alpha beta / (n^2 (n + 1))``
        and ``s_perp = E[1 - t^2] / (m - 1) = 4 alpha beta / (n (n + 1) (m - 1))``.
        """
        beta = self._beta
        loc = to_compute(self.loc)
        a = to_compute(self.concentration) + beta
        n = a + beta
        par = 4 * a * beta / (n * n * (n + 1))
        perp = 4 * a * beta / (n * (n + 1) * (self._m - 1))
        return self._out(perp.unsqueeze(-1) + (par - perp).unsqueeze(-1) * loc * loc)

    # --- densities -----------------------------------------------------------------------
    def log_normalizer(self) -> Tensor:
        """``log N_m(kappa)`` (the density is ``(1 + mu^T z)^kappa / N_m(kappa)``), ``batch_shape``."""
        k = to_compute(self.concentration, highest=True)
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
        out, loc, k, value = self._promoted(value)
        near = 0.25 * ((value - loc) ** 2).sum(-1)  # (1 - mu^T z) / 2
        far = 0.25 * ((value + loc) ** 2).sum(-1)  # (1 + mu^T z) / 2
        log_half = torch.where(near < 0.5, torch.log1p(-near.clamp(max=0.5)), torch.log(far))
        # 0 * log(0) at z = -mu is the uniform density's 0, not NaN
        term = torch.where(k == 0, torch.zeros_like(log_half), k * log_half)
        scaled = self._scaled_log_normalizer(to_compute(k, highest=True)).to(k.dtype)
        return (term - scaled).to(out)

    def _kl_to_uniform(self) -> Tensor:
        """``KL(q || U(S^{m-1}))``, shape ``batch_shape`` (see :class:`_KLUniform`): the
        registered ``kl_divergence(q, HypersphericalUniform(m))``."""
        return _KLUniform.apply(self.concentration, self._m)

    # --- sampling ------------------------------------------------------------------------
    def _angle(self, kappa: Tensor, first: Tensor, sq: Tensor, norm: Tensor) -> Tensor:
        """``theta`` from ``X ~ Gamma(alpha)`` (Marsaglia-Tsang, whose first normal is
        ``first``) and ``Y = sq / 2 ~ Gamma(beta)``; pathwise in ``kappa`` through ``X``."""
        with torch.no_grad():
            x = _standard_gamma(kappa.detach() + self._beta, first)
        return _PowerAngle.apply(kappa, norm, self._beta, x)
