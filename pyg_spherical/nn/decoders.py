r"""Inner-product edge decoders for (spherical) graph auto-encoders.

On the sphere ``||z_i|| = 1``, the plain decoder ``sigmoid(z_i^T z_j)`` (PyG's
``InnerProductDecoder``) has logits in ``[-1, 1]``: edge probabilities stay in
``[0.27, 0.73]`` and every positive edge costs at least ``-log sigmoid(1) = 0.313`` nats, however
well the codes are placed. Gaussian codes escape this through their norm. The S-VGAE of the
paper's Table 4 multiplied the dot product by a learnable parameter, as its first author
explained (https://github.com/nicola-decao/s-vae-pytorch/issues/12):
:class:`ScaledInnerProductDecoder`.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_SCALE_INIT", "ScaledInnerProductDecoder"]

#: initial scale of :class:`ScaledInnerProductDecoder`: the value of best validation AUC averaged
#: over Cora and CiteSeer in PyG's example setting (lr 0.01, d 16), searched with the encoder's
#: dropout (``benchmarks/linkpred.py --grid-datasets``, RESULTS.md "Library defaults")
DEFAULT_SCALE_INIT = 10.0


class ScaledInnerProductDecoder(nn.Module):
    r"""``p(A_ij = 1 | z_i, z_j) = sigmoid(s * z_i^T z_j + b)`` with a learnable scale ``s > 0``.

    ``s = exp(log_s)`` is positive by construction and starts at ``scale``; the optional bias
    ``b`` starts at 0. With unit-norm codes the logits span ``[-s + b, s + b]``, so the model can
    become confident about edges and non-edges, which the plain decoder (``s = 1``) cannot.

    Same API as :class:`torch_geometric.nn.InnerProductDecoder`: ``forward(z, edge_index,
    sigmoid=True)`` scores the pairs of ``edge_index``; ``forward_all(z, sigmoid=True)`` the dense
    ``(N, N)`` matrix. Logits are computed in the codes' dtype promoted to the parameters' and
    to at least float32 (float16 codes would overflow above ``s = 65504``).

    Args:
        scale (float): initial value of ``s`` (default :data:`DEFAULT_SCALE_INIT`).
        learn_scale (bool): train ``s`` (default) or keep it fixed.
        bias (bool): add a learnable bias ``b`` (default ``False``).
    """

    def __init__(self, scale: float = DEFAULT_SCALE_INIT, learn_scale: bool = True,
                 bias: bool = False):
        super().__init__()
        if isinstance(scale, Tensor) and scale.numel() == 1:
            scale = scale.item()
        if (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
                or not (math.isfinite(scale) and scale > 0)):
            raise ValueError(f"ScaledInnerProductDecoder: scale must be a finite number > 0, "
                             f"got {scale!r}.")
        # s is stored as log s: exp(log s) must come back finite and non-zero in that dtype
        dtype = torch.get_default_dtype()
        back = torch.tensor(math.log(scale), dtype=dtype).exp()
        if not (torch.isfinite(back) and back > 0):
            raise ValueError(f"ScaledInnerProductDecoder: scale {scale:g} is outside the range of "
                             f"the parameter's dtype {str(dtype).replace('torch.', '')} "
                             f"({torch.finfo(dtype).tiny:g} to {torch.finfo(dtype).max:g}).")
        self.scale_init = float(scale)
        self.log_scale = nn.Parameter(torch.empty(()), requires_grad=learn_scale)
        self.bias = nn.Parameter(torch.empty(())) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``s`` back to its initial value, ``b`` to 0."""
        with torch.no_grad():
            self.log_scale.fill_(math.log(self.scale_init))
            if self.bias is not None:
                self.bias.zero_()

    @property
    def scale(self) -> Tensor:
        """The current scale ``s = exp(log_s)`` (a 0-d tensor)."""
        return self.log_scale.exp()

    def _affine(self, dots: Tensor) -> Tensor:
        # In float64 for float64 codes, else in at least float32: s > 65504 overflows float16
        dtype = torch.promote_types(torch.promote_types(dots.dtype, self.log_scale.dtype),
                                    torch.float32)
        out = dots.to(dtype) * self.log_scale.to(dtype).exp()
        return out if self.bias is None else out + self.bias.to(dtype)

    def forward(self, z: Tensor, edge_index: Tensor, sigmoid: bool = True) -> Tensor:
        """Scores of the pairs ``edge_index (2, E)`` from codes ``z (N, d)``: shape ``(E,)``."""
        logits = self._affine((z[edge_index[0]] * z[edge_index[1]]).sum(dim=-1))
        return torch.sigmoid(logits) if sigmoid else logits

    def forward_all(self, z: Tensor, sigmoid: bool = True) -> Tensor:
        """Scores of all ``N^2`` pairs: shape ``(N, N)``."""
        logits = self._affine(z @ z.t())
        return torch.sigmoid(logits) if sigmoid else logits

    def extra_repr(self) -> str:
        return (f"scale_init={self.scale_init:g}, learn_scale={self.log_scale.requires_grad}, "
                f"bias={self.bias is not None}")
