r"""Independent distributions on a product of spheres, ``(S^{m-1})^k``, as one vector in ``R^{k m}``."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from .constraints import product_of_spheres

__all__ = ["ProductOfSpheres"]


class ProductOfSpheres(Distribution):
    r"""``z = (z_1, ..., z_k)``, independent ``z_j ~ base_j`` on ``S^{m-1}``, flattened to ``R^{k m}``.

    ``base`` is any distribution on the sphere with batch shape ``(..., k)`` and event shape
    ``(m,)`` (a :class:`VonMisesFisher`, :class:`PowerSpherical` or
    :class:`HypersphericalUniform` with one parameter set per factor); this distribution has
    batch shape ``(...)`` and event shape ``(k m,)``. Log-densities, entropies and KL divergences
    are sums over the factors. Each factor keeps its own concentration: a product of ``k`` small
    spheres gives a latent per-factor precisions, which a single vMF on one large sphere lacks.

    Args:
        base (Distribution): the factors, batch shape ``(..., k)``, event shape ``(m,)``.
    """

    arg_constraints = {}
    has_rsample = True

    def __init__(self, base: Distribution, validate_args=None):
        if len(base.event_shape) != 1 or len(base.batch_shape) < 1:
            raise ValueError("ProductOfSpheres: base needs batch shape (..., k) and event shape "
                             f"(m,), got {tuple(base.batch_shape)} and {tuple(base.event_shape)}.")
        self.base = base
        self.factors, self.factor_dim = base.batch_shape[-1], base.event_shape[0]
        super().__init__(base.batch_shape[:-1], torch.Size((self.factors * self.factor_dim,)),
                         validate_args=validate_args)

    @property
    def support(self):
        return product_of_spheres(self.factor_dim)

    def expand(self, batch_shape, _instance=None):
        """A copy with batch shape ``batch_shape`` (the factors' parameters expanded)."""
        return ProductOfSpheres(self.base.expand(torch.Size(batch_shape) + (self.factors,)),
                                validate_args=False)

    def _split(self, value: Tensor) -> Tensor:
        k, m = self.factors, self.factor_dim
        if value.dim() == 0 or value.shape[-1] != k * m:
            raise ValueError(f"ProductOfSpheres: value has last dimension "
                             f"{value.shape[-1] if value.dim() else None}, expected {k * m} "
                             f"({k} factors of {m}).")
        return value.unflatten(-1, (k, m))

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        """Reparameterised draws, shape ``sample_shape + batch_shape + (k m,)``."""
        return self.base.rsample(sample_shape).flatten(-2)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        """Draws without gradient, shape ``sample_shape + batch_shape + (k m,)``."""
        return self.base.sample(sample_shape).flatten(-2)

    def log_prob(self, value: Tensor) -> Tensor:
        """``sum_j log p_j(z_j)``, shape ``value.shape[:-1]`` (broadcast with the batch)."""
        if self._validate_args:
            self._validate_sample(value)
        return self.base.log_prob(self._split(value)).sum(-1)

    def entropy(self) -> Tensor:
        """``sum_j H(p_j)``, shape ``batch_shape``."""
        return self.base.entropy().sum(-1)

    @property
    def mean(self) -> Tensor:
        return self.base.mean.flatten(-2)

    @property
    def mode(self) -> Tensor:
        return self.base.mode.flatten(-2)

    @property
    def loc(self) -> Tensor:
        """The factors' mean directions, flattened, shape ``(..., k m)``."""
        return self.base.loc.flatten(-2)

    @property
    def concentration(self) -> Tensor:
        """The factors' concentrations, ``(..., k)``."""
        return self.base.concentration

    def __repr__(self):
        return f"ProductOfSpheres(factors={self.factors}, base={self.base!r})"
