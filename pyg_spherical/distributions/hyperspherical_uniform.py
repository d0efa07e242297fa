r"""The uniform distribution on the unit hypersphere ``S^{m-1} ⊂ R^m`` (the S-VAE prior)."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from ._sphere import log_sphere_area
from .constraints import sphere

__all__ = ["HypersphericalUniform"]


class HypersphericalUniform(Distribution):
    r"""Uniform distribution on ``S^{m-1} = {z in R^m : ||z|| = 1}``.

    ``dim`` is the **ambient** dimension ``m``: samples have shape ``(..., m)``, as with
    ``scipy.stats.uniform_direction(dim=m)`` and :class:`VonMisesFisher` with ``loc`` of shape
    ``(..., m)``. (The authors' PyTorch code takes the manifold dimension ``m - 1`` instead.)

    ``log_prob(z) = -log|S^{m-1}| = -log(2 pi^{m/2} / Gamma(m/2))`` (eq. 10) and
    ``entropy = log|S^{m-1}|``.

    Args:
        dim (int): ambient dimension ``m >= 2``.
        batch_shape (torch.Size): optional batch shape (default ``()``).
        device, dtype: where and in which dtype :meth:`sample` draws (default: torch's default
            device and dtype).
    """

    arg_constraints = {}
    support = sphere
    has_rsample = False

    def __init__(self, dim: int, batch_shape=torch.Size(), validate_args=None, device=None,
                 dtype=None):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ValueError(f"HypersphericalUniform: dim must be an int >= 2 (the ambient "
                             f"dimension m of S^(m-1)), got {dim!r}.")
        self.dim = dim
        # None: torch's default device (torch.set_default_device), as for a factory function
        self.device = torch.device(device) if device is not None else torch.empty(0).device
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()
        super().__init__(torch.Size(batch_shape), torch.Size((dim,)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        """A copy with batch shape ``batch_shape`` (no data is copied; ``dim`` is kept)."""
        new = self._get_checked_instance(HypersphericalUniform, _instance)
        new.dim, new.device, new.dtype = self.dim, self.device, self.dtype
        super(HypersphericalUniform, new).__init__(torch.Size(batch_shape), self.event_shape,
                                                   validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        """Normalised standard normal vectors, shape ``sample_shape + batch_shape + (m,)``."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            x = torch.randn(shape, device=self.device, dtype=self.dtype)
            return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(
                torch.finfo(x.dtype).tiny)

    def log_prob(self, value: Tensor) -> Tensor:
        """``-log |S^{m-1}|`` (eq. 10) for every ``value (..., m)``; shape ``value.shape[:-1]``."""
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return torch.full(shape, -log_sphere_area(self.dim), dtype=value.dtype,
                          device=value.device)

    def entropy(self) -> Tensor:
        """``log |S^{m-1}| = log 2 + (m/2) log pi - lgamma(m/2)`` (the largest on the sphere)."""
        return torch.full(self.batch_shape, log_sphere_area(self.dim), dtype=self.dtype,
                          device=self.device)

    @property
    def mean(self) -> Tensor:
        return torch.zeros(self.batch_shape + self.event_shape, dtype=self.dtype,
                           device=self.device)

    @property
    def mode(self) -> Tensor:
        raise NotImplementedError("The uniform distribution on the sphere has no unique mode.")

    def __repr__(self):
        return f"HypersphericalUniform(dim={self.dim})"
