r"""What the distributions on the sphere share: the surface area, argument broadcasting and
checks, the Householder reflection of a tangent-normal draw, and their common base class."""
from __future__ import annotations

import math
from numbers import Number

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from .._utils import compute_dtype, to_compute
from .constraints import sphere, unit_norm_tolerance


def log_sphere_area(dim: int) -> float:
    r"""``log |S^{m-1}| = log(2 pi^{m/2} / Gamma(m/2))`` for ``m = dim``: the log surface area of
    the unit sphere in ``R^dim`` (eq. 10)."""
    return math.log(2.0) + 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim)


def rowdot(x: Tensor, y: Tensor) -> Tensor:
    """``(x * y).sum(-1)`` as a batched matrix product: no ``(..., n)`` temporary, about half
    the time of the product-and-sum for short rows."""
    return torch.matmul(x.unsqueeze(-2), y.unsqueeze(-1))[..., 0, 0]


def check_concentration(kappa: Tensor, name: str, allow_zero: bool = False) -> None:
    bad = ~((kappa >= 0) if allow_zero else (kappa > 0)) | ~torch.isfinite(kappa)  # NaN fails
    if bad.any():
        raise ValueError(
            f"{name}: concentration must be finite and {'>=' if allow_zero else '>'} 0, got "
            f"{kappa[bad].flatten()[:5].tolist()} (shape {tuple(kappa.shape)})."
        )


def check_loc(loc: Tensor, name: str) -> None:
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


def broadcast_args(loc, concentration, name: str) -> tuple[Tensor, Tensor]:
    """``(loc (..., m), concentration (...))`` broadcast to one batch shape, ``concentration`` in
    ``loc``'s dtype and device; one clear error for a non-tensor, ``m < 2`` or shapes that do
    not broadcast. A ``(..., 1)`` concentration beside a batched ``loc`` is refused: it would
    broadcast against the batch shape and pair every concentration with every direction."""
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
    if loc.dim() >= 2 and concentration.dim() == loc.dim() and concentration.shape[-1] == 1:
        raise ValueError(
            f"{name}: concentration of shape {tuple(concentration.shape)} broadcasts against the "
            f"batch shape {tuple(loc.shape[:-1])} of loc {tuple(loc.shape)}, not against m, which "
            "would pair every kappa with every mean direction; pass concentration.squeeze(-1).")
    try:
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
    except RuntimeError:
        raise ValueError(
            f"{name}: concentration of shape {tuple(concentration.shape)} does not broadcast "
            f"with the batch shape {tuple(loc.shape[:-1])} of loc {tuple(loc.shape)}."
        ) from None
    return loc.expand(batch_shape + (m,)), concentration.expand(batch_shape)


class Reflect(torch.autograd.Function):
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
        mg = rowdot(loc, g)  # mu_{2:}^T g_{2:}
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
        gl = rowdot(grad, loc)  # = g1 a + grad_{2:}^T mu_{2:} = dL/d omega
        dP = g1 * s - gl  # dL/dP = g1 (s - a) - grad_{2:}^T mu_{2:}
        k = dP / den
        c = omega - P
        dloc = dtheta = None
        if ctx.needs_input_grad[0]:
            dloc = torch.mul(grad, c.unsqueeze(-1))
            dloc.addcmul_(g, (k * rho).unsqueeze(-1))  # + (dP / den) r v
            dloc[..., 0].add_(k * P * s)
        if ctx.needs_input_grad[1]:
            dr = (rowdot(grad, g) + k * mg) / g_norm  # dL/d(r v) . v
            dtheta = dr * omega - gl * r  # d(cos, sin)/d theta = (-sin, cos)
        return dloc, dtheta, None, None


class SphereDistribution(Distribution):
    r"""Base of the mean-direction / concentration families on ``S^{m-1}`` (vMF, Power
    Spherical): arguments, ``expand``, ``mean = E[mu^T z] mu``, ``mode = mu``,
    ``entropy = log|S^{m-1}| - KL(q || U)`` and a tangent-normal :meth:`rsample`.

    Subclasses give ``mean_resultant_length``, ``_kl_to_uniform()`` and
    ``_angle(kappa, first, sq, norm)``: the angle ``theta = arccos(mu^T z)`` of each draw from
    the first coordinate ``first ~ N(0, 1)`` and the squared norm ``sq ~ chi^2_{m-1}`` of the
    tangent part ``g`` of one standard normal draw, both independent of its direction.
    """

    support = sphere
    has_rsample = True

    def __init__(self, loc: Tensor, concentration, validate_args=None):
        name = type(self).__name__
        self.loc, self.concentration = broadcast_args(loc, concentration, name)
        batch_shape, m = self.concentration.shape, self.loc.shape[-1]
        if validate_args if validate_args is not None else Distribution._validate_args:
            # the specific reason first; the base class then checks arg_constraints
            check_loc(self.loc, name)
            check_concentration(self.concentration, name,
                                self.arg_constraints["concentration"] is constraints.nonnegative)
        super().__init__(batch_shape, torch.Size((m,)), validate_args=validate_args)

    @property
    def _m(self) -> int:
        return self.event_shape[0]

    def _out(self, x: Tensor) -> Tensor:
        """A result computed in float32/float64, in the distribution's dtype."""
        return x.to(self.loc.dtype)

    def _promoted(self, value: Tensor) -> tuple[torch.dtype, Tensor, Tensor, Tensor]:
        """``(out, loc, kappa, value)``: the dtype of a density at ``value`` and the arguments
        in its compute dtype (float16 / bfloat16 are computed in float32)."""
        if self._validate_args:
            self._validate_sample(value)
        out = torch.promote_types(self.loc.dtype, value.dtype)
        work = compute_dtype(out)
        return out, self.loc.to(work), self.concentration.to(work), value.to(work)

    def expand(self, batch_shape, _instance=None):
        """A copy with batch shape ``batch_shape``: ``loc`` and ``concentration`` are broadcast views."""
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        super(SphereDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        """``E[z] = E[mu^T z] mu`` (:attr:`mean_resultant_length` times ``mu``)."""
        return self.mean_resultant_length.unsqueeze(-1) * self.loc

    @property
    def mode(self) -> Tensor:
        """``mu``."""
        return self.loc

    def entropy(self) -> Tensor:
        """``H = log|S^{m-1}| - KL(q || U(S^{m-1}))``, shape ``batch_shape``."""
        return log_sphere_area(self._m) - self._kl_to_uniform()

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        """Reparameterised sample of shape ``sample_shape + batch_shape + (m,)``, unit norm to
        rounding error; see the class docstring."""
        shape = self._extended_shape(sample_shape)
        # unvalidated, an invalid kappa would give points silently (checked without a host sync)
        k, zero_ok = self.concentration, self.arg_constraints["concentration"] is constraints.nonnegative
        torch._assert_async((torch.isfinite(k) & ((k >= 0) if zero_ok else (k > 0))).all(),
                            f"{type(self).__name__}: concentration must be finite and "
                            f"{'>=' if zero_ok else '>'} 0 to sample; found NaN, inf or "
                            f"{'a negative value' if zero_ok else 'a value <= 0'}.")
        loc, kappa = to_compute(self.loc), to_compute(self.concentration).expand(shape[:-1])
        # One standard normal g in R^m: its tangent part g_{2:} gives the direction
        # v = g_{2:} / ||g_{2:}||; g_1 and ||g_{2:}||^2, both independent of v, are the first
        # random numbers of the angle's sampler.
        g = torch.randn(shape, dtype=kappa.dtype, device=kappa.device)
        first = g[..., 0].clone()
        g[..., 0] = 0
        sq = rowdot(g, g)
        norm = torch.sqrt(sq)
        theta = self._angle(kappa, first, sq, norm)
        norm = norm.clamp_min(torch.finfo(g.dtype).tiny)
        return self._out(Reflect.apply(loc.expand(shape), theta, g, norm))

    def __repr__(self):
        return (f"{type(self).__name__}(loc: {tuple(self.loc.shape)}, concentration: "
                f"{tuple(self.concentration.shape)}, m={self._m})")
