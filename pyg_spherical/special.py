r"""Modified Bessel functions of the first kind for the von Mises-Fisher distribution.

Everything here is pure PyTorch (no SciPy, no host round-trip), so it runs on any device,
broadcasts like any elementwise op, keeps ``float64`` in ``float64`` and is differentiable in
``x`` with analytic gradients (paper eq. 16-18):

.. math::
    \frac{d}{dx}\log I_v(x) = \frac{I_{v+1}(x)}{I_v(x)} + \frac{v}{x}, \qquad
    \frac{d}{dx}\frac{I_v(x)}{I_{v-1}(x)} = 1 - R_v^2 - \frac{2v-1}{x}R_v .

Method. For orders ``v >= V0`` we use Debye's uniform asymptotic expansion (DLMF 10.41.3,
10.41.4), which is uniform in ``x`` over ``(0, inf)``; with ``z = x / v``, ``s = sqrt(v^2 + x^2)``
and ``p = v / s``,

.. math::
    \log I_v(x) = s + v \log\frac{x}{v + s} - \tfrac12\log(2\pi s) + \log\sum_k U_k(p) v^{-k},
    \qquad \frac{I_v(x)}{I_{v-1}(x)} = \frac{x}{v + s\,Q}, \quad
    Q = \frac{\sum_k V_k(p) v^{-k}}{\sum_k U_k(p) v^{-k}} .

For ``v < V0`` we start at order ``w = v + ceil(V0 - v)`` and run the ratio recurrence
``R_k = x / (2k + x R_{k+1})`` downwards, which is the stable direction for ``I`` (it is the
Gauss continued fraction), summing ``log I_v = log I_w - sum_{k=v+1}^{w} log R_k``. The
complement ``1 - R_v`` and the derivative ``R_v'`` are carried through the same recurrence in
cancellation-free forms, so ``KL`` and entropy stay accurate when ``R_v -> 1`` (huge ``x``) and
their gradients when ``R_v' -> 0``. ``(V0, K)`` = (20, 10) in float64 and (8, 6) otherwise give
errors at the dtype's rounding level (see ``tests/test_special.py``).

Orders must satisfy ``v >= 0`` and arguments ``x > 0``; the functions are not differentiable in
``v``. Accuracy is tested for ``0 <= v <= 5000`` and ``1e-6 <= x <= 1e6``.
"""
from __future__ import annotations

import math
from functools import lru_cache
from numbers import Real
from typing import NamedTuple, Union

import torch
from torch import Tensor

from ._debye import debye_tables, stirling_series
from ._utils import host_reads_are_free, to_compute

__all__ = ["VMFTerms", "iv_ratio", "iv_ratio_complement", "iv_ratio_derivative", "log_iv",
           "log_ive", "vmf_terms"]

Order = Union[Real, Tensor]


def _params(dtype: torch.dtype):
    # (V0, K): order where Debye takes over, number of Debye terms.
    return (20, 10) if dtype == torch.float64 else (8, 6)


@lru_cache(maxsize=256)
def _scalar_coefs(table, t: float, deriv: bool, dtype: torch.dtype, device: torch.device):
    """Coefficients ``c_i = sum_k C[k][i] t^k`` (of ``dS/dp`` if ``deriv``) as 0-dim tensors."""
    ncoef = len(table[0])
    coefs = [sum(table[k][i] * t**k for k in range(len(table))) for i in range(ncoef)]
    if deriv:
        coefs = [i * coefs[i] for i in range(1, ncoef)]
    return tuple(torch.tensor(c, dtype=dtype, device=device) for c in coefs)


def _poly(table, p: Tensor, t, deriv: bool = False) -> Tensor:
    """Evaluate ``S(p) = sum_k t^k sum_i C[k][i] p^i`` (or dS/dp) by Horner's scheme."""
    if isinstance(t, Tensor):
        ncoef = len(table[0])
        coefs = []
        for i in range(ncoef):
            c = torch.zeros_like(t)
            for k in reversed(range(len(table))):
                c = c * t + table[k][i]
            coefs.append(c)
        if deriv:
            coefs = [i * coefs[i] for i in range(1, ncoef)]
    else:  # one fused multiply-add per coefficient, coefficients cached per order
        coefs = _scalar_coefs(table, float(t), deriv, p.dtype, p.device)
    out = coefs[-1].expand_as(p)
    for c in reversed(coefs[:-1]):
        out = torch.addcmul(c, out, p)
    return out


class _Bessel(NamedTuple):
    """Quantities at order v: ``log_ive = log I_v - x``; ``dlog_ive``, ``dlog_iv`` their x-derivatives;
    ``lnorm = log(Gamma(v+1) (2/x)^v I_v(x)) - x``; ``R = I_v / I_{v-1}``; ``comp = 1 - R``;
    ``dR = dR/dx`` (only when asked for); ``R_next``, ``comp_next``: ``R_{v+1}`` and its
    complement and derivative where the recurrence or series produced them (else ``None``)."""

    log_ive: Tensor | None
    dlog_ive: Tensor
    dlog_iv: Tensor
    lnorm: Tensor | None
    R: Tensor
    comp: Tensor
    dR: Tensor | None
    R_next: Tensor | None = None
    comp_next: Tensor | None = None
    dR_next: Tensor | None = None
    ell: Tensor | None = None  # lnorm + x; exact (series) for small x where the series ran


def _where(mask, a: _Bessel, b: _Bessel) -> _Bessel:
    return _Bessel(*(None if x is None or y is None else torch.where(mask, x, y)
                     for x, y in zip(a, b)))


def _stirling_corr(w) -> Tensor:
    """``lgamma(w+1) - (w log w - w + log(2 pi w) / 2)`` for ``w >= 8`` (Stirling series)."""
    inv = 1.0 / w
    inv2 = inv * inv
    c = stirling_series(0)[::-1]
    out = c[0]
    for ci in c[1:]:
        out = out * inv2 + ci
    return out * inv


def _debye(w, x: Tensor, want_grad: bool, want_log: bool = True) -> _Bessel:
    """Debye's expansion at order ``w >= V0`` (DLMF 10.41.3-4), written without cancellation."""
    _, K = _params(x.dtype)
    U, VmU = debye_tables(K)
    # a fill, not a tensor made from host data (a blocking copy on an accelerator)
    wt = w if isinstance(w, Tensor) else torch.full((), float(w), dtype=x.dtype, device=x.device)
    s = torch.hypot(wt, x)
    p = wt / s
    t = 1.0 / w
    su = _poly(U, p, t)
    svmu = _poly(VmU, p, t)
    qm1 = svmu / su  # Q - 1
    s_m_x = wt * wt / (s + x)  # s - x
    log_ive = lnorm = None
    if want_log:
        s_m_w = x * x / (s + wt)  # s - w
        log_su = torch.log(su)
        log_ive = s_m_x + wt * torch.log(x / (wt + s)) - 0.5 * torch.log(2 * math.pi * s) + log_su
        lnorm = (
            -wt * (s_m_w + x) / (s + x)  # s - w - x
            - wt * torch.log1p(s_m_w / (2 * wt))
            - 0.5 * torch.log1p(s_m_w / wt)
            + log_su
            + _stirling_corr(wt)
        )
    sq_m_x = s * qm1 + s_m_x  # s Q - x
    D = wt + s + s * qm1
    R = x / D
    dR = None
    if want_grad:
        q2 = (x / s) ** 2  # 1 - p^2
        dq = (_poly(VmU, p, t, deriv=True) * su - svmu * _poly(U, p, t, deriv=True)) / su**2
        dR = wt * (1.0 + p * (1.0 + qm1) + q2 * dq) / D**2
    # d/dx log iv = I_v'/I_v = s Q / x
    return _Bessel(log_ive, sq_m_x / x, (s + s * qm1) / x, lnorm, R, (wt + sq_m_x) / D, dR)


_SERIES_X = 2.0  # below this, and for v < V0, the power series is used


def _lgamma1p(v: Order):
    """``lgamma(v + 1)``: a number for a number order (no tensor made from host data, which
    would be a blocking copy on an accelerator)."""
    return torch.lgamma(v + 1.0) if isinstance(v, Tensor) else math.lgamma(v + 1.0)


def _series(v: Order, x: Tensor, want_grad: bool) -> _Bessel:
    """Power series (DLMF 10.25.2) with positive terms; used for ``x <= 2`` and ``v < V0``.

    ``S_v(y) = sum_j y^j / (j! (v+1)_j) = Gamma(v+1) (2/x)^v I_v(x)`` with ``y = x^2 / 4``.
    """
    terms = 14 if x.dtype == torch.float64 else 8
    xs = torch.clamp(x, max=_SERIES_X)
    y = xs * xs / 4
    t_v = torch.ones_like(y)  # y^j / (j! (v+1)_j)
    t_p = torch.ones_like(y)  # y^j / (j! (v+2)_j)
    sum_v, sum_m, sum_p = torch.zeros_like(y), torch.zeros_like(y), torch.zeros_like(y)
    for j in range(1, terms + 1):
        sum_m = sum_m + t_v * y / j  # y^j / (j! (v+1)_{j-1}): v S_{v-1} - v
        t_v = t_v * y / (j * (v + j))
        t_p = t_p * y / (j * (v + 1 + j))
        sum_v, sum_p = sum_v + t_v, sum_p + t_p
    ell = torch.log1p(sum_v)
    half = x / 2
    log_ive = v * torch.log(half) - _lgamma1p(v) + ell - x
    R = half * (1 + sum_v) / (v + sum_m)
    R_next = half * (1 + sum_p) / ((v + 1) * (1 + sum_v))
    dlog_iv = R_next + v / x
    dR = dR_next = None
    if want_grad:
        dR = 1 - R * R - (2 * v - 1) * R / x
        dR_next = 1 - R_next * R_next - (2 * v + 1) * R_next / x
    return _Bessel(log_ive, dlog_iv - 1, dlog_iv, ell - x, R, 1 - R, dR, R_next, 1 - R_next,
                   dR_next, ell)


def _core(v: Order, x: Tensor, want_grad: bool = False, want_log: bool = True) -> _Bessel:
    """All quantities of :class:`_Bessel` at order ``v``, elementwise in ``x``.

    ``want_log=False`` skips the logarithmic quantities (and the series, which only they need:
    the ratio recurrence is exact at small ``x``), leaving them ``None``.
    """
    out = _core_large(v, x, want_grad, want_log)
    V0, _ = _params(x.dtype)
    if not want_log or (not isinstance(v, Tensor) and v >= V0):
        return out
    # Small x: the recurrence sums logs of size |log(x / 2k)| whose rounding would dominate
    # log I_v(x) ~ 0; the series is exact there.
    small = x <= _SERIES_X
    if isinstance(v, Tensor):
        small = small & (v < V0)
    if _skippable(small):
        return out
    return _where(small, _series(v, x, want_grad), out)


def _skippable(mask: Tensor) -> bool:
    """True if no element needs a branch. Only decided on the CPU, where asking costs nothing;
    on accelerators both branches are computed (no host sync)."""
    return host_reads_are_free(mask) and not bool(mask.any())


def _core_large(v: Order, x: Tensor, want_grad: bool = False, want_log: bool = True) -> _Bessel:
    """Debye's expansion, plus the downward ratio recurrence from order ``w >= V0`` if ``v < V0``."""
    V0, _ = _params(x.dtype)
    if isinstance(v, Tensor):
        v = v.to(x.dtype)
        v, x = torch.broadcast_tensors(v, x)
        n = torch.clamp(torch.ceil(V0 - v), min=0)
        steps = math.ceil(V0)
    else:
        n = max(0, math.ceil(V0 - v))
        steps = n
    w = v + n
    top = _debye(w, x, want_grad, want_log)
    if steps == 0:
        return top
    R, comp, dR = top.R, top.comp, top.dR
    masked = isinstance(v, Tensor)
    logsum = torch.zeros_like(x)
    comp_up, R_up, dR_up = comp, R, dR  # 1 - R_{k+1}, R_{k+1}, R_{k+1}' after each step
    k = w
    for i in range(steps):
        k = k - 1  # the order being produced
        denom = 2 * k + x * R
        R_new = x / denom
        comp_new = (2 * k - x * comp) / denom
        dR_new = 2 * k / denom**2 - R_new**2 * dR if want_grad else None
        if masked:
            active = i < n
            if want_log:
                logsum = torch.where(active, logsum + torch.log(R), logsum)
            comp_up = torch.where(active, comp, comp_up)
            R_up = torch.where(active, R, R_up)
            R = torch.where(active, R_new, R)
            comp = torch.where(active, comp_new, comp)
            if want_grad:
                dR_up = torch.where(active, dR, dR_up)
                dR = torch.where(active, dR_new, dR)
        else:
            if want_log:
                logsum = logsum + torch.log(R)
            comp_up, R_up, dR_up = comp, R, dR
            R, comp, dR = R_new, comp_new, dR_new
    log_ive = lnorm = None
    if want_log:
        log_ive = top.log_ive - logsum
        lnorm = log_ive - v * torch.log(x / 2) + _lgamma1p(v)
    # d/dx log iv_v = R_{v+1} + v/x; for ive subtract 1 as v/x - (1 - R_{v+1}).
    out = _Bessel(log_ive, v / x - comp_up, R_up + v / x, lnorm, R, comp, dR, R_up, comp_up,
                  dR_up if want_grad else None, None if lnorm is None else lnorm + x)
    return _where(n > 0, out, top) if masked else out


def _log_ivn_small(v: Order, x: Tensor) -> Tensor:
    """``log(Gamma(v+1) (2/x)^v I_v(x)) ~ x^2 / (4 (v+1))`` for ``x <= 2`` (any ``v``), from the
    series so that it keeps its relative precision as it tends to zero; no autograd. Values
    above ``x = 2`` are meaningless (callers select with ``torch.where``)."""
    terms = 14 if x.dtype == torch.float64 else 8
    xs = torch.clamp(x, max=_SERIES_X)
    if _skippable(x <= _SERIES_X):
        return torch.zeros_like(x)  # not used by callers (they select with torch.where)
    y = xs * xs / 4
    t, total = torch.ones_like(y), torch.zeros_like(y)
    for j in range(1, terms + 1):
        t = t * y / (j * (v + j))
        total = total + t
    return torch.log1p(total)


class VMFTerms(NamedTuple):
    """Bessel quantities of ``vMF(., kappa)`` on ``S^{m-1}`` (see :func:`vmf_terms`)."""

    A: Tensor  # A_m(kappa) = I_{m/2} / I_{m/2-1}
    comp: Tensor  # 1 - A_m(kappa)
    dA: Tensor  # A_m'(kappa)
    lnorm: Tensor  # log(Gamma(m/2) (2/kappa)^{m/2-1} I_{m/2-1}(kappa)) - kappa
    ell_small: Tensor  # the same + kappa, from the series (valid where `small`)
    small: Tensor  # kappa <= 2: where ell_small holds and keeps its relative precision


def vmf_terms(dim: int, kappa: Tensor) -> VMFTerms:
    """Everything the vMF on ``S^{m-1}``, ``m = dim``, needs from Bessel functions at ``kappa``
    (float32 or float64), in one pass at order ``m/2 - 1`` whose recurrence also yields order
    ``m/2`` (and its derivative); no autograd."""
    v = dim / 2 - 1
    b = _core(v, kappa, want_grad=True)
    if b.R_next is None or b.dR_next is None:  # large m: Debye directly at order m/2
        t = _core(dim / 2, kappa, want_grad=True, want_log=False)
        A, comp, dA = t.R, t.comp, t.dR
    else:
        A, comp, dA = b.R_next, b.comp_next, b.dR_next
    V0, _ = _params(kappa.dtype)
    # below V0 the series already ran inside _core for kappa <= 2: reuse its exact l
    ell = b.ell if v < V0 and b.ell is not None else _log_ivn_small(v, kappa)
    return VMFTerms(A, comp, dA, b.lnorm, ell, kappa <= _SERIES_X)


def _prepare(v: Order, x) -> tuple:
    if isinstance(v, Tensor):
        if v.requires_grad:
            raise ValueError("Bessel functions here are not differentiable in the order v.")
    elif isinstance(v, Real):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"order v must be a finite number >= 0, got {v}.")
        v = float(v)
    else:
        raise TypeError(f"order v must be a real number or a tensor, got {type(v).__name__}.")
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return v, x


class _LogIv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, scaled):
        xc = to_compute(x)
        b = _core(v, xc)
        ctx.v, ctx.scaled = v, scaled
        ctx.save_for_backward(x, (b.dlog_ive if scaled else b.dlog_iv).to(x.dtype))
        return (b.log_ive if scaled else b.log_ive + xc).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, grad = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a differentiable expression (eq. 16)
            grad = iv_ratio(ctx.v + 1, x) + ctx.v / x - (1.0 if ctx.scaled else 0.0)
        return g * grad, None, None


def _ratio_derivative(v: Order, x: Tensor) -> Tensor:
    return _core(v, to_compute(x), want_grad=True, want_log=False).dR.to(x.dtype)


class _IvRatio(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, complement):
        b = _core(v, to_compute(x), want_log=False)
        ctx.v, ctx.complement = v, complement
        ctx.save_for_backward(x)
        return (b.comp if complement else b.R).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        dR = _ratio_derivative(ctx.v, x)
        return (-g * dR if ctx.complement else g * dR), None, None


def log_ive(v: Order, x) -> Tensor:
    r"""Exponentially scaled log-Bessel function ``log I_v(x) - x`` (``log scipy.special.ive``).

    Args:
        v: order ``>= 0`` (a Python number, or a tensor broadcastable with ``x``).
        x: argument ``> 0``, any shape, float32 or float64 (half precision is computed in
            float32).

    Returns:
        Tensor of the broadcast shape and ``x``'s dtype. Differentiable in ``x``:
        ``d/dx = I_{v+1}(x)/I_v(x) + v/x - 1``.
    """
    v, x = _prepare(v, x)
    return _LogIv.apply(x, v, True)


def log_iv(v: Order, x) -> Tensor:
    r"""``log I_v(x)``, the log of the modified Bessel function of the first kind.

    Finite where ``I_v(x)`` itself over- or underflows (``log I_0(1e6) ~ 1e6``,
    ``log I_5000(1e-6) ~ -1.1e5``). Gradient in ``x`` (paper eq. 16):
    ``d/dx log I_v(x) = I_{v+1}(x)/I_v(x) + v/x``. See :func:`log_ive` for the arguments.
    """
    v, x = _prepare(v, x)
    return _LogIv.apply(x, v, False)


def iv_ratio(v: Order, x) -> Tensor:
    r"""The ratio ``R_v(x) = I_v(x) / I_{v-1}(x)``.

    For the vMF on ``S^{m-1}``, ``A_m(kappa) = iv_ratio(m / 2, kappa)`` is the mean resultant
    length ``E[mu^T z]``. Accurate to relative rounding error for ``v >= 0``, ``x > 0``
    (``v = 0`` gives ``I_0 / I_1``). Gradient: ``R_v' = 1 - R_v^2 - (2v - 1) R_v / x``,
    evaluated in a cancellation-free form.
    """
    v, x = _prepare(v, x)
    return _IvRatio.apply(x, v, False)


def iv_ratio_complement(v: Order, x) -> Tensor:
    r"""``1 - I_v(x) / I_{v-1}(x)`` without cancellation (it tends to ``(2v - 1) / (2x)``)."""
    v, x = _prepare(v, x)
    return _IvRatio.apply(x, v, True)


def iv_ratio_derivative(v: Order, x) -> Tensor:
    r"""``R_v'(x) = 1 - R_v^2 - (2v - 1) R_v / x`` of :func:`iv_ratio`, evaluated without
    cancellation (it falls as ``(2v - 1) / (2 x^2)``); not differentiable itself."""
    v, x = _prepare(v, x)
    with torch.no_grad():
        return _ratio_derivative(v, x)
