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
from ..special import _compute
from ._sampling import proposal_theta, reparameterized_theta, sample_theta, sample_w
from .constraints import sphere, unit_norm_tolerance

__all__ = ["GRADIENTS", "VonMisesFisher", "log_sphere_area"]

#: the gradients in ``kappa`` :meth:`VonMisesFisher.rsample` offers (the first is the default)
GRADIENTS = ("implicit", "authors")

_TINY = 1e-30  # guards a zero-norm Gaussian draw (probability ~0)


def log_sphere_area(m: int) -> float:
    r"""``log |S^{m-1}| = log(2 pi^{m/2} / Gamma(m/2))``, the surface area of the unit sphere in R^m (eq. 10)."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def _terms(m: int, kappa: Tensor) -> special._VMFTerms:
    """Bessel quantities at ``kappa`` (no autograd), computed afresh on every call so that they
    always belong to the current values of ``kappa`` (which may have been changed in place)."""
    with torch.no_grad():
        return special._vmf_terms(m, _compute(kappa.detach()))


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
        b = special._core(m / 2, kappa, want_grad=True, want_log=False)
        ctx.m = m
        ctx.save_for_backward(kappa)
        return b.R / kappa, b.dR

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_across, g_along):
        (kappa,) = ctx.saved_tensors
        k = kappa.to(torch.float32 if kappa.device.type == "mps" else torch.float64)
        b = special._core(ctx.m / 2, k, want_grad=True, want_log=False)
        A, dA, c = b.R, b.dR, ctx.m - 1
        d_across = (dA - A / k) / k
        d_along = c * A / (k * k) - dA * (2 * A + c / k)
        return (g_across * d_across + g_along * d_along).to(kappa.dtype), None


def _check_concentration(kappa: Tensor, name: str = "VonMisesFisher",
                         allow_zero: bool = False) -> None:
    bad = ~((kappa >= 0) if allow_zero else (kappa > 0)) | ~torch.isfinite(kappa)  # NaN fails
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


def _rowdot(x: Tensor, y: Tensor) -> Tensor:
    """``(x * y).sum(-1)`` as a batched matrix product: no ``(..., n)`` temporary, about half
    the time of the product-and-sum for short rows."""
    return torch.matmul(x.unsqueeze(-2), y.unsqueeze(-1))[..., 0, 0]


class _Reflect(torch.autograd.Function):
    r"""``z = H(mu) (s cos(theta), sin(theta) v)``: tangent-normal decomposition and Householder reflection.

    The tangent direction is ``v = g_{2:} / ||g||`` for a ``g`` in ``R^m`` with ``g_1 = 0``
    (``g_norm = ||g||``): a direction in ``R^{m-1}`` embedded orthogonally to ``e_1``, so that
    every product below runs over whole contiguous rows. ``H = I - 2 u u^T`` with
    ``u ∝ s e_1 - mu``, ``s = -sign(mu_1)`` (so ``||s e_1 - mu||^2 = 2 (1 + |mu_1|) >= 2``: stable
    also at ``mu = ±e_1``). With ``omega = cos(theta)`` (computed as ``1 - 2 sin^2(theta/2)``),
    ``r = sin(theta)``, ``a = mu_1``, ``rho = r / ||g||``, ``P = rho mu^T g / (1 - s a)``,
    ``c = omega - P`` and a unit ``mu``:

    ``z = c mu + rho g + s P e_1``,  i.e. ``z_1 = a c + s P``,  ``z_{2:} = r v + c mu_{2:}``.

    One function with a hand-derived backward (gradients in ``mu`` and ``theta``): the only
    full-size tensors it allocates are ``z`` and ``d loc``, and its row dot products are batched
    matrix products (no full-size temporaries, about half the time of a product and a sum).
    """

    @staticmethod
    def forward(ctx, loc, theta, g, g_norm):
        a = loc[..., 0].contiguous()  # one strided read instead of several
        sh = torch.sin(theta / 2)
        omega = 1 - 2 * sh * sh
        r = torch.sin(theta)
        rho = r / g_norm
        s = torch.copysign(torch.ones_like(a), -a)  # -1 at a = +0 (torch.where is slower)
        den = 1 + a.abs()  # 1 - s a
        mg = _rowdot(loc, g)  # mu_{2:}^T g_{2:}
        P = rho * mg / den
        c = omega - P
        z = torch.mul(g, rho.unsqueeze(-1))
        z.addcmul_(loc, c.unsqueeze(-1))
        z[..., 0].add_(s * P)
        ctx.save_for_backward(loc, g, g_norm, omega, r, rho, s, den, P, mg)
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        loc, g, g_norm, omega, r, rho, s, den, P, mg = ctx.saved_tensors
        # dense rows for the batched dot products (the gradient of a sum is a stride-0 view)
        grad = grad.contiguous()
        g1 = grad[..., 0].contiguous()
        gl = _rowdot(grad, loc)  # = g1 a + grad_{2:}^T mu_{2:} = dL/d omega
        dP = g1 * s - gl  # dL/dP = g1 (s - a) - grad_{2:}^T mu_{2:}
        k = dP / den
        c = omega - P
        dloc = dtheta = None
        if ctx.needs_input_grad[0]:
            dloc = torch.mul(grad, c.unsqueeze(-1))
            dloc.addcmul_(g, (k * rho).unsqueeze(-1))  # + (dP / den) r v
            dloc[..., 0].add_(k * P * s)
        if ctx.needs_input_grad[1]:
            dr = (_rowdot(grad, g) + k * mg) / g_norm  # dL/d(r v) . v
            dtheta = dr * omega - gl * r  # d(cos, sin)/d theta = (-sin, cos)
        return dloc, dtheta, None, None


def _check_concentration_shape(loc: Tensor, concentration: Tensor, name: str) -> None:
    """Refuse a ``(..., 1)`` concentration beside ``loc (..., m)``: it broadcasts against the
    batch shape, pairing every concentration with every mean direction, never what is meant."""
    if loc.dim() >= 2 and concentration.dim() == loc.dim() and concentration.shape[-1] == 1:
        raise ValueError(
            f"{name}: concentration of shape {tuple(concentration.shape)} broadcasts against the "
            f"batch shape {tuple(loc.shape[:-1])} of loc {tuple(loc.shape)}, not against m, which "
            "would pair every kappa with every mean direction; pass concentration.squeeze(-1).")


def _broadcast_args(loc, concentration, name: str) -> tuple[Tensor, Tensor]:
    """``(loc (..., m), concentration (...))`` broadcast to one batch shape, ``concentration`` in
    ``loc``'s dtype and device; one clear error for a non-tensor, ``m < 2`` or shapes that do
    not broadcast. Shared by the distributions on the sphere."""
    if not isinstance(loc, Tensor) or loc.dim() < 1:
        raise ValueError(f"{name}: loc must be a tensor of shape (..., m) with m >= 2.")
    if not loc.is_floating_point():
        loc = loc.to(torch.get_default_dtype())
    m = loc.shape[-1]
    if m < 2:
        raise ValueError(f"{name}: needs m >= 2 (the sphere S^(m-1) in R^m), got m = {m}.")
    if isinstance(concentration, Number):
        if math.isfinite(concentration) and abs(concentration) > torch.finfo(loc.dtype).max:
            raise ValueError(f"{name}: concentration {concentration:g} overflows "
                             f"{str(loc.dtype).replace('torch.', '')}, the dtype of loc.")
        concentration = torch.tensor(float(concentration), dtype=loc.dtype, device=loc.device)
    elif not isinstance(concentration, Tensor):
        raise TypeError(f"{name}: concentration must be a tensor or a number.")
    else:
        concentration = concentration.to(loc.dtype)
    _check_concentration_shape(loc, concentration, name)
    try:
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
    except RuntimeError:
        raise ValueError(
            f"{name}: concentration of shape {tuple(concentration.shape)} does not broadcast "
            f"with the batch shape {tuple(loc.shape[:-1])} of loc {tuple(loc.shape)}."
        ) from None
    return loc.expand(batch_shape + (m,)), concentration.expand(batch_shape)


class VonMisesFisher(Distribution):
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
        gradient (str): the gradient of :meth:`rsample` in ``concentration``: ``"implicit"``
            (default; unbiased implicit reparameterisation, see below) or ``"authors"`` (the
            derivative through the accepted Wood proposal only, as in the authors' code; biased,
            for comparisons with that code; on ``S^2``, which their code samples by the exact
            inverse CDF, the two coincide). Samples and the gradient in ``loc`` are the same for
            both.

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
    support = sphere
    has_rsample = True

    def __init__(self, loc: Tensor, concentration, validate_args=None, *,
                 gradient: str = "implicit"):
        if gradient not in GRADIENTS:
            raise ValueError(f"VonMisesFisher: gradient must be one of {GRADIENTS}, got "
                             f"{gradient!r}.")
        self.gradient = gradient
        self.loc, self.concentration = _broadcast_args(loc, concentration, "VonMisesFisher")
        batch_shape, m = self.concentration.shape, self.loc.shape[-1]
        if validate_args if validate_args is not None else Distribution._validate_args:
            # the specific reason first; the base class then checks arg_constraints
            _check_loc(self.loc)
            _check_concentration(self.concentration)
        super().__init__(batch_shape, torch.Size((m,)), validate_args=validate_args)

    @property
    def _m(self) -> int:
        return self.event_shape[0]

    def _out(self, x: Tensor) -> Tensor:
        """A result computed in float32/float64, in the distribution's dtype."""
        return x.to(self.loc.dtype)

    def expand(self, batch_shape, _instance=None):
        """A copy with batch shape ``batch_shape``: ``loc`` and ``concentration`` are broadcast views."""
        new = self._get_checked_instance(VonMisesFisher, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        new.gradient = self.gradient
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
        r"""Diagonal of ``Cov[z] = (A/kappa) I + (1 - A^2 - m A / kappa) mu mu^T``.

        Evaluated as ``(A/kappa)(1 - mu_i^2) + A'(kappa) mu_i^2``, the variance across ``mu``
        plus ``Var[mu^T z] = A' = 1 - A^2 - (m - 1) A / kappa``, with ``A'`` from the
        cancellation-free recurrence of :mod:`..special` (see :class:`_VarianceFactors`), so that
        it keeps its relative precision at every ``kappa`` and in float32.
        """
        loc = _compute(self.loc)
        across, along = _VarianceFactors.apply(_compute(self.concentration), self._m)
        var = across.unsqueeze(-1) * ((1 - loc) * (1 + loc)) + along.unsqueeze(-1) * (loc * loc)
        return self._out(var)

    # --- densities -----------------------------------------------------------------------
    def _log_normalizer_scaled(self, kappa: Tensor) -> Tensor:
        return _LogNormalizerScaled.apply(kappa, _terms(self._m, kappa))

    def log_normalizer(self) -> Tensor:
        """``log C_m(kappa)`` (eq. 4), shape ``batch_shape``; finite for any ``kappa > 0``."""
        k = _compute(self.concentration)
        return self._out(-log_sphere_area(self._m) - self._log_normalizer_scaled(k) - k)

    def log_prob(self, value: Tensor) -> Tensor:
        r"""``log C_m(kappa) + kappa mu^T z``, computed as
        ``-log|S^{m-1}| - L(kappa) - kappa ||z - mu||^2 / 2`` (no ``O(kappa)`` cancellation)."""
        if self._validate_args:
            self._validate_sample(value)
        out = torch.promote_types(self.loc.dtype, value.dtype)
        work = special._compute_dtype(out)
        loc, k, value = self.loc.to(work), self.concentration.to(work), value.to(work)
        half_sq = 0.5 * ((value - loc) ** 2).sum(-1)  # 1 - mu^T z for unit vectors
        lp = -log_sphere_area(self._m) - self._log_normalizer_scaled(k) - k * half_sq
        return lp.to(out)

    def entropy(self) -> Tensor:
        """``H = log|S^{m-1}| - KL(q || U(S^{m-1}))``."""
        return log_sphere_area(self._m) - self.kl_to_uniform()

    def kl_to_uniform(self) -> Tensor:
        """``KL(q || U(S^{m-1}))`` (eq. 5), shape ``batch_shape``."""
        k = _compute(self.concentration)
        return self._out(_KLUniform.apply(k, _terms(self._m, k)))

    # --- sampling ------------------------------------------------------------------------
    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        """Reparameterised sample of shape ``sample_shape + batch_shape + (m,)``.

        Differentiable in ``loc`` (pathwise) and ``concentration`` (implicit
        reparameterisation, or the authors' proposal gradient with ``gradient="authors"``); unit
        norm to rounding error. See the class docstring.
        """
        shape = self._extended_shape(sample_shape)
        m = self._m
        loc, k = _compute(self.loc), _compute(self.concentration)
        # unvalidated, kappa <= 0 would give points silently (no host sync)
        torch._assert_async((torch.isfinite(k) & (k > 0)).all(), "VonMisesFisher: concentration "
                            "must be finite and > 0 to sample; found NaN, inf or a value <= 0.")
        kappa = k.expand(shape[:-1])
        # One standard normal g in R^m: its tangent part g_{2:} gives the direction
        # v = g_{2:} / ||g_{2:}||; g_1 and ||g_{2:}||^2 / 2 ~ Gamma((m-1)/2), both independent of
        # v, are the random numbers of the first Ulrich/Wood proposal.
        g = torch.randn(shape, dtype=kappa.dtype, device=kappa.device)
        z1 = g[..., 0].clone()
        g[..., 0] = 0
        sq = _rowdot(g, g)
        theta, _, _ = sample_theta(kappa.detach(), m, (z1, 0.5 * sq))  # angle to mu, no grad
        # the authors' code samples S^2 by the exact inverse CDF, whose gradient is exact: only
        # the Wood proposal of m != 3 carries their biased gradient
        if kappa.requires_grad and self.gradient == "authors" and m != 3:
            theta = proposal_theta(kappa, theta, m)
        elif kappa.requires_grad:
            # 1 - A_m(kappa) for the quadrature, once per batch element and at the current
            # kappa (nothing cached between calls); S^2 needs none
            comp_a = (None if m == 3 else
                      special.iv_ratio_complement(m / 2, k.detach()).expand(kappa.shape))
            theta = reparameterized_theta(kappa, theta, m, comp_a)
        g_norm = torch.sqrt(sq).clamp_min(_TINY)
        return self._out(_Reflect.apply(loc.expand(shape), theta, g, g_norm))

    def rejection_attempts(self, sample_shape=torch.Size()) -> Tensor:
        """Number of proposals the Ulrich/Wood sampler needed per draw (paper Table 5).

        Shape ``sample_shape + batch_shape``; always 1 for ``m = 3`` (exact inverse CDF).
        """
        kappa = _compute(self.concentration.detach()).expand(self._extended_shape(sample_shape)[:-1])
        return sample_w(kappa, self._m)[1]

    def __repr__(self):
        return (
            f"VonMisesFisher(loc: {tuple(self.loc.shape)}, concentration: "
            f"{tuple(self.concentration.shape)}, m={self._m}"
            + ("" if self.gradient == "implicit" else f", gradient={self.gradient!r}") + ")"
        )
