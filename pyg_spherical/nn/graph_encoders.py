r"""GCN encoders for (spherical) variational graph auto-encoders.

The VGAE encoder of Kipf & Welling (2016), used unchanged in section 5.4 / Appendix F.3 of the
paper: one hidden GCN layer, then two GCN heads on the shared hidden representation,

.. math::
    H = \mathrm{ReLU}(\hat A\, \mathrm{drop}(X) W_0), \qquad
    \mathrm{loc} = \hat A\, \mathrm{drop}(H) W_\mu, \qquad
    \mathrm{scale} = \hat A\, \mathrm{drop}(H) W_\sigma,

with :math:`\hat A = \tilde D^{-1/2}(A + I)\tilde D^{-1/2}` (computed once per forward pass),
Glorot-uniform weights, dropout on every layer's input, and a bias in every layer unless
``bias=False`` (the reference code has none).

The encoders return the **raw** pair ``(loc_raw, scale_raw)`` that a latent layer
(:mod:`pyg_spherical.nn.latent`) turns into a posterior:

* :class:`SphericalGCNEncoder` (S-VGAE): ``loc_raw`` ``(N, d)`` and ``scale_raw`` ``(N, 1)``;
  :class:`~pyg_spherical.nn.latent.VMFLatent` makes them ``mu = loc_raw / ||loc_raw||`` on
  ``S^{d-1}`` and ``kappa = softplus(scale_raw) + 1``.
* :class:`GaussianGCNEncoder` (N-VGAE): ``mu`` and ``log sigma``, both ``(N, d)``, as PyG's own
  ``VGAE`` expects (PyG's example ``GCNEncoder`` is a plain auto-encoder's, with one output).

Each encoder carries ``latent_kind`` (``"vmf"`` / ``"power"`` / ``"normal"``) and ``out_channels``
so that :class:`~pyg_spherical.models.SphericalVGAE` builds the matching latent layer by itself.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from .latent import LATENTS, resolve_kind

__all__ = ["LOC_BIAS_INIT", "GCNEncoder", "GCNLatentEncoder", "GaussianGCNEncoder",
           "SphericalGCNEncoder"]

#: half-width of the uniform initialisation of a vMF encoder's mean-direction bias
LOC_BIAS_INIT = 1e-2


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape) -> Tensor:
    """``torch.sparse_csr_tensor`` without its beta-state warning (PyTorch flags every CSR
    construction as beta; the two products used here are stable, and the warning would otherwise
    greet every user on the first forward pass). Scoped to this call: other code keeps it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _csr_rows(index: Tensor, size: int) -> Tensor:
    """Compressed row pointer (``size + 1``,) of sorted row indices."""
    counts = torch.bincount(index, minlength=size)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def _gcn_norm_unweighted(edge_index: Tensor, num_nodes: int, dtype=None) -> tuple[Tensor, Tensor]:
    r"""PyG's ``gcn_norm`` of an unweighted graph (:math:`\tilde D^{-1/2}(A + I)\tilde D^{-1/2}`)
    in shapes that depend on no value: self-loops already in ``edge_index`` stay, with weight 0,
    where PyG removes them (a boolean mask, which waits for the device on an accelerator), and
    every node gets one of weight 1. Without such loops, the same edges and weights as PyG's."""
    device = edge_index.device
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    nodes = torch.arange(num_nodes, device=device)
    ei = torch.cat([edge_index, nodes.expand(2, num_nodes)], dim=1)
    weight = torch.cat([(edge_index[0] != edge_index[1]).to(dtype),
                        torch.ones(num_nodes, dtype=dtype, device=device)])
    row, col = ei[0], ei[1]
    deg = torch.zeros(num_nodes, dtype=dtype, device=device).index_add_(0, col, weight)
    inv_sqrt = deg.rsqrt()  # deg >= 1: every node has its loop
    return ei, inv_sqrt[row] * weight * inv_sqrt[col]


class SparseStructure(NamedTuple):
    r"""Index structure of a sparse ``(N, F)`` matrix ``X`` in CSR form, plus the CSR form of
    ``X^T`` as a permutation of the same stored values (so that only the values change when
    dropout is applied, and both ``X W^T`` and ``X^T G`` are fast CSR products)."""

    crow: Tensor
    col: Tensor
    row: Tensor
    perm_t: Tensor
    crow_t: Tensor
    col_t: Tensor
    shape: tuple

    @staticmethod
    def from_sparse(x: Tensor) -> SparseStructure:
        if x.layout == torch.sparse_csr:
            crow, col = x.crow_indices(), x.col_indices()
            row = torch.repeat_interleave(torch.arange(x.size(0), device=col.device),
                                          crow.diff())
        elif x.layout == torch.sparse_coo:
            x = x.coalesce()  # row-major order
            row, col = x.indices()
            crow = _csr_rows(row, x.size(0))
        else:
            raise TypeError(f"expected a sparse COO or CSR tensor, got layout {x.layout}")
        n, f = x.shape
        perm_t = torch.argsort(col * n + row)
        return SparseStructure(crow, col, row, perm_t, _csr_rows(col[perm_t], f), row[perm_t],
                               (n, f))

    def values(self, x: Tensor) -> Tensor:
        """The non-zero values of ``x`` (CSR or COO) in this structure's order."""
        if x.layout == torch.sparse_csr:
            return x.values()
        return (x if x.is_coalesced() else x.coalesce()).values()


class _CSRLinear(torch.autograd.Function):
    r"""``X W^T`` for ``X`` = CSR(``structure``, ``values``); backward ``dW = (X^T G)^T`` with
    the precomputed CSR of ``X^T`` and ``d values_k = G[row_k] . W[:, col_k]``."""

    @staticmethod
    def forward(ctx, values, weight, st):
        ctx.st = st
        ctx.save_for_backward(values, weight)
        x = _csr(st.crow, st.col, values, st.shape)
        return torch.sparse.mm(x, weight.t())

    @staticmethod
    def backward(ctx, grad):
        values, weight = ctx.saved_tensors
        st = ctx.st
        grad_values = grad_weight = None
        if ctx.needs_input_grad[1]:
            xt = _csr(st.crow_t, st.col_t, values[st.perm_t], (st.shape[1], st.shape[0]))
            grad_weight = torch.sparse.mm(xt, grad.contiguous()).t()
        if ctx.needs_input_grad[0]:
            grad_values = (grad[st.row] * weight.t()[st.col]).sum(-1)
        return grad_values, grad_weight, None


class GCNLatentEncoder(nn.Module):
    r"""Two-layer GCN encoder emitting the raw parameters of a latent layer of kind ``latent``.

    Args:
        in_channels (int): node feature size ``F``.
        hidden_channels (int): hidden GCN width (paper: 32).
        out_channels (int): latent size ``d`` (the S-VGAE lives on ``S^{d-1} ⊂ R^d``).
        dropout (float): dropout probability on the input of every GCN layer.
        latent (str): ``"vmf"``, ``"power"`` (Power Spherical) or ``"normal"``; sets the width
            of the scale head (``1`` concentration or ``d`` log-stds).
        bias (bool): add a bias to every GCN layer (default ``True``; the reference VGAE has
            none: ``bias=False``).
        cached (bool): cache the normalised adjacency of the first call. Only for full-batch
            training on one fixed graph (as PyG's ``GCNConv(cached=True)``); leave it off for
            mini-batches of sampled subgraphs. :meth:`reset_parameters` clears the cache.
        add_self_loops (bool): use ``A + I`` in the normalisation (default, as GCN).

    Shapes:
        ``x (N, F)``, ``edge_index (2, E)``, optional ``edge_weight (E,)`` ->
        ``(loc_raw (N, d), scale_raw (N, 1 or d))``.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 32, out_channels: int = 16,
                 dropout: float = 0.0, *, latent: str = "vmf", bias: bool = True,
                 cached: bool = False, add_self_loops: bool = True):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        kind = resolve_kind(latent)
        self.in_channels, self.hidden_channels, self.out_channels = (
            in_channels, hidden_channels, out_channels)
        self.dropout = float(dropout)
        self.latent_kind = kind
        self.scale_channels = LATENTS[kind](out_channels).scale_dim
        self.cached, self.add_self_loops = cached, add_self_loops
        # normalize=False: the normalised adjacency is computed once in forward() and shared.
        self.conv1 = GCNConv(in_channels, hidden_channels, normalize=False, bias=bias)
        self.conv_loc = GCNConv(hidden_channels, out_channels, normalize=False, bias=bias)
        self.conv_scale = GCNConv(hidden_channels, self.scale_channels, normalize=False, bias=bias)
        self._cache: tuple[Tensor, Tensor] | None = None
        self._input_cache: SparseStructure | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases (PyG's ``GCNConv`` initialisation), except the
        mean-direction bias of a spherical (vMF or Power Spherical) encoder, drawn from
        ``U(-LOC_BIAS_INIT, LOC_BIAS_INIT)``; clears the cached adjacency.

        Why the exception: a node whose receptive field is empty after dropout (an isolated
        node of the training graph with one or two words, all dropped) or has no features at
        all (CiteSeer has such nodes) gets ``H = 0`` and hence ``loc_raw = bias``. With a zero
        bias that row has no direction (the latent layer falls back to ``e_1``, and the row's
        direction gets no gradient); with a small random bias it gets the shared direction
        ``bias / ||bias||``, and the other rows barely change.
        """
        self.conv1.reset_parameters()
        self.conv_loc.reset_parameters()
        self.conv_scale.reset_parameters()
        if LATENTS[self.latent_kind].spherical and self.conv_loc.bias is not None:
            with torch.no_grad():
                self.conv_loc.bias.uniform_(-LOC_BIAS_INIT, LOC_BIAS_INIT)
        self._cache = None
        self._input_cache = None

    def normalized_adjacency(self, edge_index: Tensor, num_nodes: int,
                             edge_weight: Tensor | None = None,
                             dtype=None) -> tuple[Tensor, Tensor]:
        r"""``(edge_index, edge_weight)`` of :math:`\tilde D^{-1/2}(A + I)\tilde D^{-1/2}`."""
        if self.cached and self._cache is not None:
            return self._cache
        if edge_weight is None and self.add_self_loops:
            out = _gcn_norm_unweighted(edge_index, num_nodes, dtype)
        else:
            out = gcn_norm(edge_index, edge_weight, num_nodes, improved=False,
                           add_self_loops=self.add_self_loops, dtype=dtype)
        if self.cached:
            self._cache = out
        return out

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""``x (N, F)`` (dense or sparse COO), ``edge_index (2, E)``, optional
        ``edge_weight (E,)`` -> ``(loc_raw (N, d), scale_raw (N, 1 or d))``, i.e.
        :math:`\hat A\,\mathrm{drop}(H) W_\mu` and :math:`\hat A\,\mathrm{drop}(H) W_\sigma` with
        :math:`H = \mathrm{ReLU}(\hat A\,\mathrm{drop}(X) W_0)` (see the module docstring)."""
        ei, ew = self.normalized_adjacency(edge_index, x.size(0), edge_weight, dtype=x.dtype)
        if x.is_sparse:
            h = self._sparse_input_conv(x, ei, ew).relu()
        else:
            x = F.dropout(x, p=self.dropout, training=self.training)
            h = self.conv1(x, ei, ew).relu()
        h = F.dropout(h, p=self.dropout, training=self.training)
        return self.conv_loc(h, ei, ew), self.conv_scale(h, ei, ew)

    def sparse_structure(self, x: Tensor) -> SparseStructure:
        """CSR index structure of a sparse ``x`` and of ``x^T`` (cached with ``cached=True``)."""
        if self.cached and self._input_cache is not None:
            return self._input_cache
        out = SparseStructure.from_sparse(x)
        if self.cached:
            self._input_cache = out
        return out

    def _sparse_input_conv(self, x: Tensor, ei: Tensor, ew: Tensor) -> Tensor:
        r"""First layer for a sparse (COO or CSR) ``x``: ``A_hat (drop(X) W_0^T) + b``.

        Dropout acts on the stored entries only: the same distribution as dense inverted dropout
        (zeros stay zero) at ``nnz`` instead of ``N F`` random draws (the reference code's sparse
        dropout). ``drop(X) W_0^T`` is a CSR product in both directions (:class:`_CSRLinear`).
        """
        st = self.sparse_structure(x)
        val = st.values(x)
        if self.training and self.dropout > 0:
            val = F.dropout(val, p=self.dropout, training=True)
        conv = self.conv1
        xw = _CSRLinear.apply(val, conv.lin.weight, st)
        out = conv.propagate(ei, x=xw, edge_weight=ew)
        return out if conv.bias is None else out + conv.bias

    def extra_repr(self) -> str:
        return (f"latent={self.latent_kind!r}, dropout={self.dropout}, "
                f"cached={self.cached}")


class SphericalGCNEncoder(GCNLatentEncoder):
    r"""S-VGAE encoder: a mean-direction head ``(N, d)`` and a concentration head ``(N, 1)``.

    Use with :class:`~pyg_spherical.models.SphericalVGAE`, which normalises the mean direction
    (a zero row raises an error instead of producing NaN) and maps the concentration to
    ``kappa = softplus(.) + 1 > 0``.

    Example::

        >>> enc = SphericalGCNEncoder(1433, hidden_channels=32, out_channels=16, dropout=0.1)
        >>> loc_raw, kappa_raw = enc(x, edge_index)       # (N, 16), (N, 1)
    """

    # dropout 0.3: chosen with DEFAULT_SCALE_INIT on validation AUC (Cora and CiteSeer, lr 0.01,
    # d 16); hidden 32: the paper's protocol, at which every search ran
    def __init__(self, in_channels: int, hidden_channels: int = 32, out_channels: int = 16,
                 dropout: float = 0.3, **kwargs):
        super().__init__(in_channels, hidden_channels, out_channels, dropout, latent="vmf",
                         **kwargs)


class GaussianGCNEncoder(GCNLatentEncoder):
    r"""N-VGAE encoder (Kipf & Welling, 2016): ``mu`` ``(N, d)`` and ``log sigma`` ``(N, d)``.

    Interchangeable with the variational encoder of PyG's VGAE example:
    ``torch_geometric.nn.VGAE(GaussianGCNEncoder(...))`` and
    ``SphericalVGAE(GaussianGCNEncoder(...))`` compute the same losses.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 32, out_channels: int = 16,
                 dropout: float = 0.0, **kwargs):
        super().__init__(in_channels, hidden_channels, out_channels, dropout, latent="normal",
                         **kwargs)


class GCNEncoder(GaussianGCNEncoder):
    """Deprecated name of :class:`GaussianGCNEncoder`; removed in the next release."""

    def __init__(self, *args, **kwargs):
        warnings.warn("pyg_spherical's GCNEncoder is renamed GaussianGCNEncoder (it returns "
                      "(mu, logstd), unlike PyG's example GCNEncoder); the old name goes in the "
                      "next release", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
