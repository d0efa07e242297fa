"""Constraints for distributions on the unit hypersphere."""
from __future__ import annotations

import torch
from torch.distributions import constraints


def unit_norm_tolerance(dtype: torch.dtype) -> float:
    """How far ``||x||`` may stray from 1 and still count as a unit vector (a few rounding
    errors of ``dtype``, and at least ``1e-4``, or ``1e-6`` in float64)."""
    eps = torch.finfo(dtype).eps
    return max(1e-4, 4 * eps) if eps > 1e-10 else 1e-6


class _UnitSphere(constraints.Constraint):
    """Vectors of unit Euclidean norm along the last dimension, ``S^{m-1} ⊂ R^m``."""

    event_dim = 1

    def check(self, value):
        norm = torch.linalg.vector_norm(value, dim=-1)
        return (norm - 1).abs() <= unit_norm_tolerance(value.dtype)

    def __repr__(self):
        return "UnitSphere()"


sphere = _UnitSphere()


class _ProductOfSpheres(constraints.Constraint):
    """Vectors of ``k`` consecutive blocks of ``m`` coordinates, each of unit norm:
    ``(S^{m-1})^k ⊂ R^{k m}``."""

    event_dim = 1

    def __init__(self, factor_dim: int):
        self.factor_dim = factor_dim
        super().__init__()

    def check(self, value):
        blocks = value.unflatten(-1, (-1, self.factor_dim))
        norm = torch.linalg.vector_norm(blocks, dim=-1)
        return ((norm - 1).abs() <= unit_norm_tolerance(value.dtype)).all(-1)

    def __repr__(self):
        return f"ProductOfSpheres(factor_dim={self.factor_dim})"


def product_of_spheres(factor_dim: int) -> constraints.Constraint:
    """The support ``(S^{m-1})^k`` of :class:`~pyg_spherical.distributions.ProductOfSpheres`."""
    return _ProductOfSpheres(factor_dim)
