r"""Sampling the vMF "angle" and its implicit reparameterisation gradient.

A vMF sample is ``z = H(mu) (omega, sqrt(1 - omega^2) v)`` (paper Algorithm 1), where ``v`` is
uniform on ``S^{m-2}`` and ``omega = mu^T z`` has density (paper eq. 11)

.. math:: g(\omega | \kappa) \propto e^{\kappa \omega} (1 - \omega^2)^{(m-3)/2}, \quad \omega \in [-1, 1].

We carry ``w = 1 - omega`` instead of ``omega``: at large ``kappa`` ``omega`` rounds to 1 while
``w ~ (m - 1) / (2 kappa)`` keeps full relative precision, and so does the tangent part
``sqrt(w (2 - w))``.
"""
from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from torch import Tensor

from .._utils import host_reads_are_free
from ..special import iv_ratio_complement

_MAX_ROUNDS = 200
# Off the CPU, every "all accepted?" check waits for the device, so the sampler first draws a
# fixed number of proposals per entry, enough that one of them is accepted but with probability
# _LEFT_OVER for the whole batch (the rejection probability of a proposal stays below
# _REJECTION for every m and kappa: 0.344 at m = 2, kappa -> inf; tests/test_distributions.py),
# in blocks of at most _BLOCK proposals.
_REJECTION = 0.35
_LEFT_OVER = 1e-3
_BLOCK = 1 << 22


def _wood_constants(kappa: Tensor, m: int):
    """``b`` and ``1 - b`` of Algorithm 2 without cancellation at either end of ``kappa``."""
    n = m - 1
    r = torch.hypot(2 * kappa, torch.full((), float(n), dtype=kappa.dtype, device=kappa.device))
    b = n / (2 * kappa + r)
    # 1 - b = (2k + r - n) / (2k + r), with r - n = 4 k^2 / (r + n)
    one_minus_b = 2 * kappa * (1 + 2 * kappa / (r + n)) / (2 * kappa + r)
    return b, one_minus_b


def unchecked_proposals(size: int) -> int:
    """Proposals per entry drawn before the first check off the CPU: the smallest ``k`` with
    ``size * _REJECTION^k <= _LEFT_OVER`` (18 for a batch of 100k, 11 for 64)."""
    return max(1, math.ceil(math.log(max(size, 1) / _LEFT_OVER) / -math.log(_REJECTION)))


def _wood_proposals(b: Tensor, omb: Tensor, m: int, k: int,
                    given: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``k`` Wood proposals for each entry of ``b`` (and ``omb = 1 - b``), shape ``(k, n)``:
    ``(w, theta, accepted)``; ``given = (Z, G)`` supplies the first proposal's random numbers
    (see :func:`_sample_wood`)."""
    n = m - 1
    shape = (k,) + b.shape
    dt, dev = b.dtype, b.device
    conc = torch.full((1,), 0.5 * n, dtype=dt, device=dev)
    if given is None:
        g = torch._standard_gamma(conc.expand(shape))
        zn = torch.randn(shape, dtype=dt, device=dev)
    else:  # the first of k proposals per entry is given
        zn, g = given[0].reshape(1, -1), given[1].reshape(1, -1)
        if k > 1:
            rest = (k - 1,) + b.shape
            g = torch.cat([g, torch._standard_gamma(conc.expand(rest))])
            zn = torch.cat([zn, torch.randn(rest, dtype=dt, device=dev)])
    g2 = 2 * g
    s = torch.sqrt(torch.addcmul(g2, zn, zn)).clamp_min(torch.finfo(dt).tiny)
    sa = s + zn.abs()
    big = sa / s  # 1 + |t|
    small = g2 / (s * sa)  # 1 - |t|
    # 1 + t and 1 - t: an exact select by 0/1 factors (torch.where is slow on random masks)
    pos = (zn >= 0).to(dt)
    neg = 1 - pos
    one_p = torch.addcmul(small * neg, big, pos)
    one_m = torch.addcmul(big * neg, small, pos)
    den = torch.addcmul(b, omb, one_m, value=0.5)  # 1 - (1 - b) eps
    delta = omb * zn / (2 * s * den)  # one_p - one_m = 2 t = 2 Z / s
    log_u = torch.log(torch.rand(shape, dtype=dt, device=dev))  # u = 0: accept
    ok = n * (torch.log1p(delta) - delta) >= log_u
    bp = b * one_p
    theta = 2 * torch.atan2(torch.sqrt(bp), torch.sqrt(one_m))
    return bp / den, theta, ok


def _first_accepted(w: Tensor, theta: Tensor, ok: Tensor):
    """Each entry's first accepted proposal of ``(k, n)`` proposals (the last one if none is),
    the number of proposals that took, and whether one was accepted."""
    any_ok = ok.any(0)
    if ok.shape[0] == 1:
        return w[0], theta[0], torch.ones_like(any_ok, dtype=torch.long), any_ok
    first = torch.argmax(ok.to(torch.uint8), dim=0)
    w = w.gather(0, first.unsqueeze(0)).squeeze(0)
    theta = theta.gather(0, first.unsqueeze(0)).squeeze(0)
    return w, theta, torch.where(any_ok, first + 1, ok.shape[0]), any_ok


def _sample_wood(kappa: Tensor, m: int,
                 given: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    r"""Ulrich/Wood acceptance-rejection for ``omega = mu^T z`` (paper Algorithm 2).

    With ``t = 2ab / (1 - (1 - b) eps)`` the acceptance test ``(m-1) log t - t + d >= log u``
    simplifies exactly (``ab = (m-1)(1+b)/4``) to

    .. math:: (m - 1)\,(\log(1 + \delta) - \delta) \ge \log u, \qquad
              \delta = \frac{(1 - b)(2\varepsilon - 1)}{2 (1 - (1 - b)\varepsilon)},

    and the proposal to ``w = 1 - omega = 2 b eps / (1 - (1 - b) eps)``: no large terms cancel
    for any ``kappa``. ``eps ~ Beta((m-1)/2, (m-1)/2)`` is drawn through the Student-t identity
    ``2 eps - 1 = Z / sqrt(Z^2 + 2G)``, ``Z ~ N(0, 1)``, ``G ~ Gamma((m-1)/2)`` (one gamma variate
    instead of two), with ``2 eps = 1 + t`` and ``2 (1 - eps) = 1 - t`` each computed without
    cancellation, so that draws near either pole keep their relative precision. On the CPU the
    first round draws one proposal per entry (four for batches under 16k, which are bound by
    per-op overhead); later rounds draw two for each entry still pending and re-draw only those,
    one host read per round. Off the CPU, where each such read waits for the device, the first
    round draws :func:`unchecked_proposals` per entry (in blocks), which leaves some entry
    without an accepted proposal with probability ``~1e-3`` per call: then one host sync, and
    the later rounds only when an entry is left.

    ``given = (Z, G)`` (each shaped like ``kappa``) supplies the normal and the Gamma((m-1)/2)
    variate of every entry's first proposal, e.g. from a Gaussian draw made for another purpose
    and independent of what else it is used for (see :meth:`VonMisesFisher.rsample`).

    Returns ``(w, theta, attempts)``: ``theta = arccos(omega) = 2 atan2(sqrt(b (1+t)), sqrt(1-t))``
    and the number of proposals used (the statistic of the paper's Table 5).
    """
    flat = kappa.reshape(-1)
    b, omb = _wood_constants(flat, m)
    size = flat.numel()
    if host_reads_are_free(flat):
        k0 = budget = 1 if size >= 16384 else 4
    else:
        budget = unchecked_proposals(size)
        k0 = max(1, min(budget, _BLOCK // max(size, 1)))
    w, theta, attempts, any_ok = _first_accepted(*_wood_proposals(b, omb, m, k0, given))
    pending = ~any_ok
    for done in range(k0, budget, k0):  # off the CPU: more proposals, no host read
        cw, ct, more, any_ok = _first_accepted(*_wood_proposals(b, omb, m,
                                                                min(k0, budget - done)))
        take = pending & any_ok
        w, theta = torch.where(take, cw, w), torch.where(take, ct, theta)
        attempts = torch.where(pending, attempts + more, attempts)
        pending = pending & ~any_ok
    pending = pending.nonzero().squeeze(-1)  # host sync
    for _ in range(_MAX_ROUNDS):
        if pending.numel() == 0:
            break
        # two proposals per pending entry (acceptance >= ~0.68, paper Table 5); keep the first
        # accepted one
        cw, ct, ok = _wood_proposals(b[pending], omb[pending], m, 2)
        first_ok = ok[0]
        w[pending] = torch.where(first_ok, cw[0], cw[1])
        theta[pending] = torch.where(first_ok, ct[0], ct[1])
        attempts[pending] += 2 - first_ok.long()
        pending = pending[~(first_ok | ok[1])]  # host sync
    else:
        raise RuntimeError("vMF rejection sampler did not terminate; is kappa finite?")
    shape = kappa.shape
    return w.reshape(shape), theta.reshape(shape), attempts.reshape(shape)


def _sample_s2(kappa: Tensor) -> tuple[Tensor, Tensor]:
    r"""Exact inverse-CDF sampling on ``S^2`` (``m = 3``): ``g(omega) ∝ exp(kappa omega)``.

    ``w = -log(u + (1 - u) e^{-2 kappa}) / kappa``, computed with ``log1p``/``expm1`` for small
    ``kappa`` and as a ``logaddexp`` for large ``kappa``; returns ``(w, theta)``.
    """
    u = 1 - torch.rand_like(kappa)  # (0, 1]
    small = -torch.log1p((1 - u) * torch.expm1(-2 * kappa))
    large = -torch.logaddexp(torch.log(u), torch.log1p(-u) - 2 * kappa)
    w = torch.clamp(torch.where(kappa < 1, small, large) / kappa, 0, 2)
    return w, 2 * torch.atan2(torch.sqrt(w), torch.sqrt(2 - w))


def sample_theta(kappa: Tensor, m: int,
                 first: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Draw the angle ``theta = arccos(mu^T z)`` of ``z ~ vMF(mu, kappa)`` on ``S^{m-1}``.

    Returns ``(theta, w, attempts)`` with ``w = 1 - cos(theta)`` (full relative precision near
    the pole) and the number of Ulrich/Wood proposals per draw (1 for ``m = 3``). No autograd.
    ``first``: the random numbers of the first proposals (see :func:`_sample_wood`; unused on
    ``S^2``).
    """
    with torch.no_grad():
        if m == 3:
            w, theta = _sample_s2(kappa)
            return theta, w, torch.ones(kappa.shape, dtype=torch.long, device=kappa.device)
        w, theta, attempts = _sample_wood(kappa, m, first)
        return theta, w, attempts


def sample_w(kappa: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Draw ``w = 1 - mu^T z`` for ``z ~ vMF(mu, kappa)`` on ``S^{m-1}``; returns ``(w, attempts)``."""
    _, w, attempts = sample_theta(kappa, m)
    return w, attempts


@cache
def _gauss_legendre(n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    # mapped to [0, 1]
    return (x + 1) / 2, w / 2


@cache
def _rule_tensors(rule: tuple, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The nodes and weights of a quadrature rule on ``device``, made once: a tensor made from
    host data is a blocking copy on an accelerator."""
    return tuple(torch.tensor(r, dtype=dtype, device=device) for r in rule)


# Gauss-Legendre nodes and the log-density drop at which the integrand is cut, per dtype: the
# quadrature error is < 1e-8 (float64) over m in [2, 4096], kappa in [1e-3, 3e4]
# (tests/test_distributions.py checks it against mpmath).
_NODES = {torch.float64: 32, torch.float32: 12}
_TRUNCATION = {torch.float64: 40.0, torch.float32: 40.0}
# the compiled quadrature, if enabled (compile_quadrature)
_FUSED: dict = {}


def _dw_dkappa_s2(w: Tensor, kappa: Tensor) -> Tensor:
    r"""Exact ``dw/dkappa`` on ``S^2``, from the closed-form CDF ``F(omega) = (e^{k omega} - e^{-k}) / (2 sinh k)``.

    ``d omega / d kappa = (w - 2 e^{-a} - 2 expm1(-a) / expm1(2 kappa)) / kappa`` with
    ``a = kappa (2 - w)``; below ``kappa = 0.25`` (float32) / ``0.02`` (float64), where that
    cancels, its Taylor series in ``kappa`` (through ``kappa^5``) is used instead.
    """
    omega = 1 - w
    k = kappa
    a = k * (2 - w)
    closed = (w - 2 * torch.exp(-a) - 2 * torch.expm1(-a) / torch.expm1(2 * k)) / k
    o2 = omega * omega
    s = w * (2 - w)  # 1 - omega^2
    series = s * (
        0.5
        - k * omega / 6
        - k**2 * s / 24
        + k**3 * omega * (7 - 3 * o2) / 360
        + k**4 * s * (3 - o2) / 720
        - k**5 * omega * (3 * o2 * o2 - 18 * o2 + 31) / 15120
    )
    cut = 0.02 if w.dtype == torch.float64 else 0.25
    return -torch.where(k < cut, series, closed)


def dw_dkappa(w: Tensor, kappa: Tensor, m: int, nodes: int | None = None,
              comp_a: Tensor | None = None) -> Tensor:
    """``dw/dkappa = sin(theta) d theta / d kappa`` for ``w = 1 - cos(theta)``; see
    :func:`dtheta_dkappa`."""
    if m == 3 and nodes is None:
        return _dw_dkappa_s2(w, kappa)
    theta0 = 2 * torch.atan2(torch.sqrt(w.clamp(0, 2)), torch.sqrt((2 - w).clamp(0, 2)))
    return torch.sin(theta0) * dtheta_dkappa(theta0, kappa, m, nodes, comp_a)


def dtheta_dkappa(theta0: Tensor, kappa: Tensor, m: int, nodes: int | None = None,
                  comp_a: Tensor | None = None) -> Tensor:
    r"""Implicit reparameterisation gradient ``d theta / d kappa`` of the angle ``theta = arccos(mu^T z)``.

    Figurnov, Mohamed & Mnih (2018): for a sample with CDF ``F(. | kappa)`` held fixed,
    ``d theta / d kappa = -(dF/dkappa)(theta) / p(theta)``. In the angle ``theta = arccos omega``,
    ``p(theta) ∝ exp(psi(theta))`` with ``psi = kappa cos(theta) + (m - 2) log sin(theta)``
    (smooth and unimodal for every ``m >= 2``) and ``d p / d kappa = (cos theta - A_m) p``, so
    the normaliser cancels:

    .. math::
        \frac{d\theta_0}{d\kappa} = -\int_0^{\theta_0} (\cos\theta - A_m) e^{\psi(\theta) - \psi(\theta_0)} d\theta
                                  = \int_{\theta_0}^{\pi} (\cos\theta - A_m) e^{\psi(\theta) - \psi(\theta_0)} d\theta,

    ``A_m = I_{m/2}(kappa) / I_{m/2-1}(kappa)``. We integrate on the side where
    ``cos(theta) - A_m`` keeps one sign, only as far as a local quadratic model of ``psi`` says the
    integrand stays above ``exp(-40)``, with a fixed
    Gauss-Legendre rule (32 / 12 nodes) over that interval. On ``S^2`` (``m = 3``) the exact
    closed form is used instead. ``cos(theta) - A_m`` is evaluated as ``(1 - A_m) - 2 sin^2(theta / 2)`` so that it keeps its
    relative precision when both are close to 1.
    """
    if m == 3 and nodes is None:
        # exact; 0/0 at the poles, where the quantile does not move (d theta / d kappa -> 0)
        sin0 = torch.sin(theta0)
        w = 2 * torch.sin(theta0 / 2) ** 2
        dw = _dw_dkappa_s2(w, kappa)
        return torch.where(sin0 > 0, dw / torch.where(sin0 > 0, sin0, 1.0), 0.0)
    if comp_a is None:
        comp_a = iv_ratio_complement(m / 2, kappa)  # 1 - A_m(kappa)
    x01, wq = _gauss_legendre(nodes or _NODES.get(theta0.dtype, 16))
    rule = (tuple(x01.tolist()), tuple(wq.tolist()))
    nodes = _rule_tensors(rule, theta0.dtype, theta0.device)
    return _FUSED.get("fn", _dtheta_quadrature)(theta0, kappa, m, rule, comp_a, nodes)


def _dtheta_quadrature(theta0: Tensor, kappa: Tensor, m: int, rule: tuple,
                       comp_a: Tensor, rule_tensors: tuple[Tensor, Tensor]) -> Tensor:
    """The quadrature of :func:`dtheta_dkappa`: ``rule = (nodes, weights)`` on ``[0, 1]``
    (as numbers, and as tensors on ``theta0``'s device in ``rule_tensors``) and
    ``comp_a = 1 - A_m(kappa)`` given."""
    dt = theta0.dtype
    x01, wq = rule
    c = m - 2.0
    sin0, cos0 = torch.sin(theta0), torch.cos(theta0)
    w = 2 * torch.sin(theta0 / 2) ** 2  # 1 - cos(theta0)
    tiny = torch.finfo(dt).tiny
    dpsi = -kappa * sin0 + (c * cos0 / torch.clamp(sin0, min=tiny) if c else 0.0)
    d2psi = -kappa * cos0 - (c / torch.clamp(sin0 * sin0, min=tiny) if c else 0.0)
    # Integrate on the side where cos(theta) - A_m keeps one sign (no cancellation): towards
    # the pole if cos(theta0) > A_m, i.e. w < 1 - A_m, else towards the antipode.
    # (exact selects by 0/1 factors: torch.where is slow on random masks)
    lower = (w < comp_a).to(dt)
    sign = 1 - 2 * lower
    D = torch.clamp(torch.addcmul((1 - lower) * (math.pi - theta0), lower, theta0), min=tiny)
    T = _TRUNCATION.get(dt, 40.0)
    # How far to integrate: where a quadratic model of psi has dropped by T. If psi decreases
    # away from theta0 (slope <= 0), model it at theta0; otherwise the mode theta* lies on this
    # side, so go past it by its own width.
    slope = sign * dpsi
    curv = torch.clamp(-d2psi, min=0)
    reach_here = 2 * T / (slope.abs() + torch.sqrt(slope * slope + 2 * curv * T))
    if c:
        r = torch.sqrt(c * c + 4 * kappa * kappa)
        w_mode = (c + c * c / (r + 2 * kappa)) / (c + r)  # 1 - cos(theta*) without cancellation
        theta_mode = 2 * torch.asin(torch.sqrt(torch.clamp(w_mode / 2, 0, 1)))
        cos_mode = 1 - w_mode
        curv_mode = kappa * (cos_mode + 1 / torch.clamp(cos_mode, min=tiny))
    else:
        theta_mode, curv_mode = torch.zeros_like(theta0), kappa
    reach_mode = (theta0 - theta_mode).abs() + torch.sqrt(2 * T / torch.clamp(curv_mode, min=tiny))
    down = (slope <= 0).to(dt)
    reach = torch.addcmul((1 - down) * reach_mode.clamp(max=4.0), down, reach_here.clamp(max=4.0))
    L = torch.clamp(torch.minimum(D, reach), min=tiny)  # D <= pi
    # Per node, theta = theta0 + 2e with e = sign L x_i / 2; everything below is written in
    # terms of e (angle-addition formulas) so that it keeps its relative precision as e -> 0:
    #   cos(theta0) - cos(theta) = 2 D,  D = sin(theta0 + e) sin(e)
    #   cos(theta) - A_m         = (1 - A_m - w0) - 2 D,  w0 = 1 - cos(theta0) = 2 sin^2(theta0/2)
    #   sin(theta) / sin(th0)    = 1 + 2 sin(e) (cot(theta0) cos(e) - sin(e))
    cot2 = 2 * cos0 / torch.clamp(sin0, min=tiny)
    m2k = -2 * kappa
    cw0 = comp_a - w
    floor = -1 + torch.finfo(dt).eps

    def integrand(e, sin0, cos0, cot2, m2k, cw0):
        """(cos(theta) - A_m) exp(psi(theta) - psi(theta0)) at theta0 + 2e, in place."""
        se, ce = torch.sin(e), torch.cos(e)
        d = torch.mul(sin0, ce, out=e).addcmul_(cos0, se).mul_(se)  # D, in e's storage
        if c:
            q = torch.mul(cot2, ce, out=ce).sub_(se, alpha=2.0).mul_(se)  # sin(th)/sin(th0) - 1
            q = torch.log1p(q.clamp_(min=floor), out=q).mul_(c).addcmul_(m2k, d)
        else:
            q = torch.mul(m2k, d, out=ce)
        # the clamp keeps exp() out of the (slow) subnormal range; the integrand is negligible there
        q.clamp_(min=-2 * T).exp_()
        return q.mul_(d.mul_(-2.0).add_(cw0))

    half_step = sign * L / 2
    rows = (sin0, cos0, cot2, m2k, cw0)
    if theta0.numel() * len(x01) <= 1 << 17:
        # small batches are bound by per-op overhead: all nodes at once
        x, weights = rule_tensors
        f = integrand(half_step.unsqueeze(-1) * x, *(r.unsqueeze(-1) for r in rows))
        acc = f @ weights
    else:
        # large batches are bound by memory traffic: one node at a time stays in cache
        acc = torch.zeros_like(theta0)
        for xi, wi in zip(x01, wq):
            acc.add_(integrand(half_step * xi, *rows), alpha=wi)
    return sign * L * acc


def compile_quadrature(enabled: bool = True, **compile_kwargs) -> None:
    """Evaluate the quadrature of the vMF's implicit gradient in ``kappa`` (``dtheta_dkappa``)
    with ``torch.compile``, or (``enabled=False``, the default state) eagerly.

    The compiled code fuses the ~60 elementwise tensor operations (about 20 per quadrature
    node) into a few loops: on CPU, at ``m = 10`` and batch 100k, the quadrature then takes
    a fifth to a quarter of its eager time (see ``benchmarks/sampler.py --compile``). The first
    backward pass after enabling it compiles (about 10 s, once per process, dimension ``m`` and
    dtype; batch sizes are dynamic and reuse it), which is why it is off by default. Needs a
    working ``torch.compile`` (a C++ compiler on CPU). ``compile_kwargs`` go to
    :func:`torch.compile` (default ``dynamic=True``).
    """
    if enabled:
        _FUSED["fn"] = torch.compile(_dtheta_quadrature, **{"dynamic": True, **compile_kwargs})
    else:
        _FUSED.pop("fn", None)


class _ImplicitTheta(torch.autograd.Function):
    """Identity on ``theta`` in the forward pass; ``d theta / d kappa`` (:func:`dtheta_dkappa`)
    backwards. Parameterising by the angle keeps the gradient finite at the poles, where
    ``d sqrt(w (2 - w)) / dw`` is not. ``comp_a`` is ``1 - A_m(kappa)`` or a function returning
    it, called only in the backward pass (by then the caller may have it at hand)."""

    @staticmethod
    def forward(ctx, kappa, theta, m, comp_a):
        ctx.m = m
        ctx.comp_fn = comp_a if callable(comp_a) else None
        saved = comp_a if ctx.comp_fn is None else kappa.new_empty(())
        ctx.save_for_backward(kappa, theta, saved)
        return theta.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        kappa, theta, comp_a = ctx.saved_tensors
        if ctx.comp_fn is not None:
            comp_a = ctx.comp_fn()
        return grad * dtheta_dkappa(theta, kappa, ctx.m, comp_a=comp_a), None, None, None


def reparameterized_theta(kappa: Tensor, theta: Tensor, m: int,
                          comp_a: Tensor | None = None) -> Tensor:
    """Attach the implicit gradient in ``kappa`` to sampled angles ``theta`` (same shape as
    ``kappa``); ``comp_a = 1 - A_m(kappa)`` may be passed in if already known, or as a function
    returning it (called in the backward pass only)."""
    if not kappa.requires_grad:
        return theta
    if comp_a is None:  # not used by the closed form on S^2
        comp_a = kappa.new_empty(()) if m == 3 else iv_ratio_complement(m / 2, kappa.detach())
    return _ImplicitTheta.apply(kappa, theta, m, comp_a)
