r"""Latent layers: raw encoder outputs -> posterior distribution -> sample and KL to the prior.

One module type per latent family, shared by the graph (:class:`~pyg_spherical.SphericalVGAE`)
and image (:class:`~pyg_spherical.vae.VAE`) models, so that switching an S-VAE to an N-VAE is one
argument (``make_latent("vmf" | "power" | "normal", dim)``):

=============  ==============================================  ===========================
family         posterior                                       prior
=============  ==============================================  ===========================
``"vmf"``      ``vMF(normalize(loc_raw), softplus(c) + k0)``   ``U(S^{dim-1})`` (eq. 5)
``"power"``    ``PS(normalize(loc_raw), softplus(c) + k0)``    ``U(S^{dim-1})``
``"normal"``   ``N(loc_raw, diag(exp(logstd))^2)``             ``N(0, I)``
=============  ==============================================  ===========================

Each takes two raw tensors from an encoder: ``loc_raw`` of shape ``(..., dim)`` and ``scale_raw``
of shape ``(..., 1)`` (vMF / Power Spherical concentration) or ``(..., dim)`` (Gaussian log-std);
use :attr:`LatentLayer.scale_dim` to size the encoder head. Note the paper's convention: an S-VAE with
``dim = d`` lives on the sphere ``S^{d-1}`` embedded in ``R^d``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from ..distributions import HypersphericalUniform, PowerSpherical, ProductOfSpheres, VonMisesFisher

__all__ = ["LATENTS", "GaussianLatent", "LatentLayer", "PowerSphericalLatent", "SphericalLatent",
           "VMFLatent", "make_latent", "resolve_kind"]

MAX_LOGSTD = 10.0  # as torch_geometric.nn.models.autoencoder


class LatentLayer(nn.Module):
    """Base class: ``forward(loc_raw, scale_raw)`` returns a sample in training mode and the
    posterior's mode in eval mode, and remembers the posterior for :meth:`kl`."""

    #: name used by :func:`make_latent`
    kind: str = ""
    #: codes are unit vectors (the models pick a scaled inner-product decoder for them)
    spherical: bool = False

    def __init__(self, dim: int):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{type(self).__name__}: dim must be a positive int, got {dim!r}.")
        self.dim = dim
        #: the posterior of the last call (``None`` before the first)
        self.posterior: Distribution | None = None

    @property
    def scale_dim(self) -> int:
        """Width of the ``scale_raw`` input the encoder must produce."""
        raise NotImplementedError

    def distribution(self, loc_raw: Tensor, scale_raw: Tensor) -> Distribution:
        """The posterior ``q(z | x)`` with batch shape ``loc_raw.shape[:-1]``."""
        raise NotImplementedError

    def prior(self, device=None, dtype=None) -> Distribution:
        """The prior ``p(z)`` with event shape ``(dim,)``."""
        raise NotImplementedError

    def point(self, q: Distribution) -> Tensor:
        """The deterministic code used in eval mode (posterior mode/mean)."""
        return q.mean

    def forward(self, loc_raw: Tensor, scale_raw: Tensor) -> Tensor:
        """``(loc_raw (..., dim), scale_raw (..., scale_dim)) -> z (..., dim)``: a reparameterised
        draw ``q.rsample()`` in training mode, :meth:`point` (the mode) in eval mode. The posterior
        ``q`` is kept in :attr:`posterior` for :meth:`kl`."""
        q = self.distribution(loc_raw, scale_raw)
        self.posterior = q
        return q.rsample() if self.training else self.point(q)

    def kl(self, q: Distribution | None = None) -> Tensor:
        """``kl_divergence(q, prior)`` per example, shape ``q.batch_shape`` (default ``q``: the
        last posterior)."""
        q = self.posterior if q is None else q
        if q is None:
            raise RuntimeError("kl(): no posterior yet; call the layer (or encode) first.")
        ref = self.point(q)  # a parameter of q (cheap), for the prior's device and dtype
        return kl_divergence(q, self.prior(ref.device, ref.dtype))

    def _check_raw(self, loc_raw: Tensor, scale_raw: Tensor) -> None:
        if loc_raw.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__}: loc_raw has last dim {loc_raw.shape[-1]}, "
                             f"expected dim = {self.dim}.")
        if scale_raw.shape[-1] != self.scale_dim:
            k = self.scale_dim
            widths = (f"{k}{' (one per factor)' if k > 1 else ''} or {self.dim}"
                      if self.spherical else str(k))
            raise ValueError(f"{type(self).__name__}: scale_raw has last dim "
                             f"{scale_raw.shape[-1]}; return a scale head of width {widths} "
                             f"(dim = {self.dim}).")

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class SphericalLatent(LatentLayer):
    r"""Base of the latents on the sphere ``S^{dim-1}`` with a uniform prior (vMF, Power
    Spherical): ``mu = loc_raw / ||loc_raw||``, ``kappa = softplus(scale_raw) + min_concentration``.

    ``scale_raw`` is ``(..., 1)``, or ``(..., dim)`` as from a Gaussian log-std head (PyG's
    example encoders): its mean over the last dim is used. The mean of a linear head's outputs is
    itself a linear function of the head's input, so this loses nothing against a head of width
    1. A non-finite ``loc_raw`` row has no direction: it raises (via ``torch._assert_async``,
    which does not synchronise the host with the device) instead of silently producing NaN; on
    CUDA that is a device-side assertion, reported by the next synchronising call. A zero row
    (a featureless isolated node under zero-initialised biases) gets the first basis vector
    ``e_1``. Subclasses set :meth:`_posterior`.

    ``factors = k > 1`` makes the latent a product of ``k`` spheres ``(S^{dim/k - 1})^k``: the
    code is ``k`` unit vectors of ``dim / k`` coordinates each, one posterior per factor with its
    own concentration (``scale_dim = k``; a ``(..., dim)`` head is averaged per factor), a uniform
    prior per factor and the KL summed over the factors
    (:class:`~pyg_spherical.distributions.ProductOfSpheres`).
    """

    spherical = True
    #: whether ``min_concentration = 0`` (then ``kappa`` may reach 0) is a valid posterior
    allows_zero_concentration = False

    def __init__(self, dim: int, min_concentration: float = 1.0, factors: int = 1):
        super().__init__(dim)
        name = type(self).__name__
        if not isinstance(factors, int) or factors < 1 or dim % factors:
            raise ValueError(f"{name}: factors must be a positive int dividing dim = {dim}, got "
                             f"{factors!r}.")
        if dim // factors < 2:
            raise ValueError(f"{name}: each factor needs at least 2 coordinates (a circle S^1 in "
                             f"R^2), got dim / factors = {dim // factors}.")
        self.factors = factors
        min_concentration = float(min_concentration)
        low_ok = min_concentration >= 0 if self.allows_zero_concentration else min_concentration > 0
        if not (math.isfinite(min_concentration) and low_ok):
            bound = ">= 0" if self.allows_zero_concentration else "> 0"
            raise ValueError(f"{name}: min_concentration must be a finite number {bound}, got "
                             f"{min_concentration}.")
        self.min_concentration = min_concentration

    @property
    def scale_dim(self) -> int:
        return self.factors

    @property
    def factor_dim(self) -> int:
        """Coordinates per factor, ``dim / factors`` (the sphere ``S^{factor_dim - 1}``)."""
        return self.dim // self.factors

    def distribution(self, loc_raw: Tensor, scale_raw: Tensor) -> Distribution:
        """The posterior with ``mu = loc_raw / ||loc_raw||``, ``kappa = softplus(scale_raw) +
        min_concentration`` (``scale_raw`` of width ``factors`` or ``dim``; see the class
        docstring), per factor for a product of spheres."""
        k = self.factors
        if scale_raw.dim() > 0 and scale_raw.shape[-1] == self.dim and self.dim != k:
            scale_raw = scale_raw.unflatten(-1, (k, self.factor_dim)).mean(dim=-1)
        self._check_raw(loc_raw, scale_raw)
        loc = loc_raw.unflatten(-1, (k, self.factor_dim)) if k > 1 else loc_raw
        norm = torch.linalg.vector_norm(loc, dim=-1, keepdim=True)
        torch._assert_async(
            torch.isfinite(norm).all(),
            f"{type(self).__name__}: a mean-direction row (loc_raw) is non-finite (NaN/inf) and "
            "has no direction.",
        )
        # A zero row has no direction either, but PyG's encoders (zero-initialised GCN biases)
        # give one to every featureless isolated node (CiteSeer has them) at initialisation: it
        # gets the first basis vector, with no gradient to loc_raw through the direction. The
        # division is guarded so that the unselected branch cannot put NaN into the backward.
        zero = norm == 0
        e1 = torch.cat([torch.ones_like(loc[..., :1]), torch.zeros_like(loc[..., 1:])], dim=-1)
        mu = torch.where(zero, e1, loc / torch.where(zero, torch.ones_like(norm), norm))
        kappa = F.softplus(scale_raw if k > 1 else scale_raw.squeeze(-1)) + self.min_concentration
        q = self._posterior(mu, kappa)
        return ProductOfSpheres(q, validate_args=False) if k > 1 else q

    def _posterior(self, loc: Tensor, kappa: Tensor) -> Distribution:
        raise NotImplementedError

    def prior(self, device=None, dtype=None) -> Distribution:
        """The uniform distribution on ``S^{dim-1}`` (paper eq. 10), or on each factor."""
        if self.factors == 1:
            return HypersphericalUniform(self.dim, device=device, dtype=dtype)
        return ProductOfSpheres(HypersphericalUniform(self.factor_dim, (self.factors,),
                                                      device=device, dtype=dtype))

    def point(self, q: Distribution) -> Tensor:
        """The mean direction ``mu`` (the mode), shape ``(..., dim)``."""
        return q.loc

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, min_concentration={self.min_concentration}"
                + (f", factors={self.factors}" if self.factors > 1 else ""))


class VMFLatent(SphericalLatent):
    r"""von Mises-Fisher posterior with a uniform prior on ``S^{dim-1}`` (the S-VAE latent).

    ``mu = loc_raw / ||loc_raw||``, ``kappa = softplus(scale_raw) + min_concentration``
    (the ``+ 1`` of the authors' code by default, which keeps the posterior from collapsing into
    the uniform prior early in training); see :class:`SphericalLatent`. KL: paper eq. 5,
    independent of ``mu``.

    Args:
        dim (int): ambient dimension ``m >= 2`` (codes are unit vectors in ``R^m``).
        min_concentration (float): lower bound on ``kappa``, finite and ``> 0`` (default 1):
            softplus underflows to 0 (at a raw scale of about -104 in float32), and ``kappa = 0``
            gives NaN samples and gradients.
        factors (int): ``k > 1`` for a product of ``k`` spheres ``(S^{dim/k - 1})^k``, one
            concentration each (see :class:`SphericalLatent`).
    """

    kind = "vmf"

    def _posterior(self, loc: Tensor, kappa: Tensor) -> VonMisesFisher:
        # The arguments are valid by construction; validation would force host syncs.
        return VonMisesFisher(loc, kappa, validate_args=False)


class PowerSphericalLatent(SphericalLatent):
    r"""Power Spherical posterior with a uniform prior on ``S^{dim-1}`` (the P-VAE latent).

    The same parameterisation as :class:`VMFLatent` (see :class:`SphericalLatent`), with
    :class:`~pyg_spherical.distributions.PowerSpherical` (De Cao & Aziz, 2020) in place of the
    vMF: density ``∝ (1 + mu^T z)^kappa``, a rejection-free sampler and a KL without Bessel
    functions.

    Args:
        dim (int): ambient dimension ``m >= 2`` (codes are unit vectors in ``R^m``).
        min_concentration (float): lower bound on ``kappa``, finite and ``>= 0`` (default 1;
            ``kappa = 0`` is the uniform distribution, a valid Power Spherical).
        factors (int): ``k > 1`` for a product of ``k`` spheres (see :class:`SphericalLatent`).
    """

    kind = "power"
    allows_zero_concentration = True

    def _posterior(self, loc: Tensor, kappa: Tensor) -> PowerSpherical:
        # The arguments are valid by construction; validation would force host syncs.
        return PowerSpherical(loc, kappa, validate_args=False)


class GaussianLatent(LatentLayer):
    r"""Diagonal Gaussian posterior ``N(mu, diag(sigma^2))`` with a standard normal prior (N-VAE).

    ``mu = loc_raw``, ``sigma = exp(clamp(scale_raw, max=10))`` (``scale_raw`` is the log-std,
    clamped as in PyG's ``VGAE``).

    Args:
        dim (int): latent size ``d``.
        isotropic (bool): one standard deviation shared by all ``d`` coordinates,
            ``N(mu, sigma^2 I)`` (``scale_dim = 1``), instead of one per coordinate. Like the vMF,
            which has a single concentration for all directions, such a posterior cannot make
            some coordinates precise and leave the others at the prior; it is the matched
            control when asking whether that, rather than the sphere, limits a vMF latent
            (``benchmarks/mnist_m1m2_ablations.py``).
    """

    kind = "normal"

    def __init__(self, dim: int, isotropic: bool = False):
        super().__init__(dim)
        self.isotropic = bool(isotropic)

    @property
    def scale_dim(self) -> int:
        return 1 if self.isotropic else self.dim

    def distribution(self, loc_raw: Tensor, scale_raw: Tensor) -> Independent:
        """``N(loc_raw, diag(exp(scale_raw))^2)`` as an ``Independent`` over the last dim (an
        isotropic layer broadcasts its single log-std over the ``dim`` coordinates)."""
        self._check_raw(loc_raw, scale_raw)
        scale = torch.exp(scale_raw.clamp(max=MAX_LOGSTD))
        if self.isotropic:
            scale = scale.expand(loc_raw.shape)
        return Independent(Normal(loc_raw, scale, validate_args=False), 1)

    def prior(self, device=None, dtype=None) -> Independent:
        """The standard normal ``N(0, I_dim)``."""
        zero = torch.zeros(self.dim, device=device, dtype=dtype)
        return Independent(Normal(zero, torch.ones_like(zero), validate_args=False), 1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}" + (", isotropic=True" if self.isotropic else "")


#: the layer class of each latent family, by the name :func:`make_latent` takes
LATENTS = {"vmf": VMFLatent, "normal": GaussianLatent, "power": PowerSphericalLatent}


def make_latent(kind: str, dim: int, **kwargs) -> LatentLayer:
    """``make_latent("vmf", d)`` (S-VAE), ``make_latent("normal", d)`` (N-VAE) or
    ``make_latent("power", d)`` (P-VAE, a Power Spherical posterior on the sphere).

    Args:
        kind (str): ``"vmf"`` (aliases ``"svae"``, ``"s"``, ``"spherical"``), ``"normal"``
            (aliases ``"gaussian"``, ``"n"``, ``"nvae"``) or ``"power"``,
            case-insensitive.
        dim (int): latent size ``d``; vMF and Power Spherical codes are unit vectors in ``R^d``
            (the sphere ``S^{d-1}``), Gaussian codes are points of ``R^d``.
        **kwargs: forwarded to the layer (``min_concentration`` and ``factors`` for
            :class:`VMFLatent` and :class:`PowerSphericalLatent`, ``isotropic`` for
            :class:`GaussianLatent`).

    Returns:
        A :class:`VMFLatent`, :class:`GaussianLatent` or :class:`PowerSphericalLatent`.

    Raises:
        ValueError: unknown ``kind``, or an invalid ``dim``.
    """
    return LATENTS[resolve_kind(kind)](dim, **kwargs)


_ALIASES = {"svae": "vmf", "s": "vmf", "spherical": "vmf", "gaussian": "normal", "n": "normal",
            "nvae": "normal"}


def resolve_kind(kind: str) -> str:
    """The canonical latent name (a key of :data:`LATENTS`) for ``kind`` or one of its aliases."""
    key = _ALIASES.get(kind.lower(), kind.lower()) if isinstance(kind, str) else kind
    if key not in LATENTS:
        raise ValueError(f"unknown latent {kind!r}; choose one of {sorted(LATENTS)}.")
    return key
