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
    """Vectors of unit Euclidean norm along the last dimension: ``S^{m-1} ⊂ R^m``."""

    event_dim = 1

    def check(self, value):
        norm = torch.linalg.vector_norm(value, dim=-1)
        return (norm - 1).abs() <= unit_norm_tolerance(value.dtype)

    def __repr__(self):
        return "UnitSphere()"


sphere = _UnitSphere()
