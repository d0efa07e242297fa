r"""Neighbour sampling for mini-batch training, in pure torch, driven by PyG's own loaders.

PyG's :class:`~torch_geometric.sampler.NeighborSampler` (behind ``NeighborLoader`` and
``LinkNeighborLoader``) needs ``pyg-lib`` or ``torch-sparse``, compiled extensions that are not
always installable. :class:`TorchNeighborSampler` is a :class:`~torch_geometric.sampler.BaseSampler`
with the same output, written with vectorised torch operations only, so that PyG's
:class:`~torch_geometric.loader.LinkLoader` / ``LinkNeighborLoader`` (and ``NodeLoader`` /
``NeighborLoader``) drive it unchanged, negative sampling and ``edge_label_index`` relabelling
included. :func:`make_neighbor_sampler` returns PyG's sampler when one of its backends is
installed and this one otherwise.

Example (the ``LinkNeighborLoader`` idiom; see :func:`pyg_spherical.minibatch.link_batch_loss`)::

    from torch_geometric.loader import LinkNeighborLoader
    from pyg_spherical.sampling import make_neighbor_sampler

    sampler = make_neighbor_sampler(data, [10, 5])
    loader = LinkNeighborLoader(data, [10, 5], edge_label_index=train_edges,
                                neg_sampling="binary", batch_size=1024, shuffle=True,
                                neighbor_sampler=sampler)

Sampling semantics are PyG's ``subgraph_type="directional"`` (non-disjoint): hop ``h`` draws
up to ``num_neighbors[h]`` incoming neighbours, uniformly without replacement (or with
replacement if ``replace=True``; ``-1`` takes all of them), of each node first reached at hop
``h - 1``. The output lists the seed nodes first (in the order given), then the nodes new at
each hop; ``row``/``col`` hold the sampled edges (neighbour -> the node it was sampled for) in
local indices. As in PyG, repeated seeds are kept and each draws its own neighbours; a node
reached again as a neighbour maps to its first occurrence. Fanouts must be ints.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    NegativeSampling,
    NodeSamplerInput,
    SamplerOutput,
)
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample

__all__ = [
    "TorchNeighborSampler",
    "check_fanout",
    "encoder_depth",
    "make_neighbor_sampler",
    "pyg_sampler_available",
]


def pyg_sampler_available() -> bool:
    """Whether PyG's :class:`~torch_geometric.sampler.NeighborSampler` has a backend
    (``pyg-lib`` or ``torch-sparse``)."""
    import torch_geometric.typing as tgt

    return bool(tgt.WITH_PYG_LIB or tgt.WITH_TORCH_SPARSE)


def _fanouts(num_neighbors) -> list[int]:
    # ints only, as PyG's sampler (whose C++ op takes a list of ints): 1.7 is not truncated
    if (isinstance(num_neighbors, (int, str)) or not isinstance(num_neighbors, Sequence)
            or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool)
                       for k in num_neighbors)):
        raise TypeError(f"num_neighbors must be a list of ints (one per hop), got "
                        f"{num_neighbors!r}.")
    out = [int(k) for k in num_neighbors]
    if not out:
        raise ValueError("num_neighbors is empty: give one fanout per hop, e.g. [10, 5].")
    if any(k < -1 for k in out):
        raise ValueError(f"num_neighbors entries must be >= 0 or -1 (all), got {out}.")
    return out


def encoder_depth(encoder) -> int | None:
    """Number of message-passing hops of ``encoder`` (or of ``model.encoder``), ``None`` if
    unknown: ``encoder.num_layers`` if it is an int, 2 for the package's GCN encoders (one hidden
    GCN layer, then the two parallel heads)."""
    from .nn.graph_encoders import GCNLatentEncoder

    enc = getattr(encoder, "encoder", encoder)
    depth = getattr(enc, "num_layers", None)
    if isinstance(depth, int):
        return depth
    if isinstance(enc, GCNLatentEncoder):
        return 2
    return None


def check_fanout(num_neighbors, encoder) -> list[int]:
    """Validate a fanout list against the encoder: one entry per hop, at most as many hops as
    the encoder has message-passing layers (deeper hops would be sampled and never used).

    Returns the fanouts as a list of ints; raises ``ValueError`` with one clear message."""
    fan = _fanouts(num_neighbors)
    depth = encoder_depth(encoder)
    if depth is not None and len(fan) > depth:
        raise ValueError(f"num_neighbors {fan} has {len(fan)} hops but the encoder has only "
                         f"{depth} message-passing layers; give at most {depth} fanouts.")
    return fan


class TorchNeighborSampler(BaseSampler):
    r"""Uniform neighbour sampler in pure torch, a drop-in for PyG's ``NeighborSampler``.

    The graph is stored once in CSC form (incoming edges grouped by target node): ``colptr``
    ``(N + 1,)`` and the source of every edge. If ``data.edge_index`` is already sorted by
    target (``is_sorted=True`` or detected), its source row is used as is, without a copy, and
    sampled edge ids are positions in ``data.edge_index``; otherwise the sorted copy is kept with
    its permutation (:attr:`edge_permutation`, as PyG's sampler does).

    A hop is vectorised over all frontier nodes: a node with at most ``k`` neighbours keeps all of
    them; the others draw ``k`` distinct positions by Floyd's algorithm, run for all such nodes
    at once (a Python loop over the ``k`` fanout slots, not over nodes). Local ids come from a
    reusable ``(N,)`` lookup table, reset after each call, so that the cost of a batch depends on
    the size of the sampled subgraph, not on the size of the graph.

    Args:
        data (Data): a homogeneous graph with ``edge_index`` and ``num_nodes``.
        num_neighbors (list[int]): fanout per hop (``-1``: all neighbours).
        replace (bool): sample with replacement (default: without).
        is_sorted (bool): ``data.edge_index`` is sorted by target node (checked if ``False``).
        generator (torch.Generator, optional): random stream for the neighbour draws; default
            the global torch generator (so ``torch.manual_seed`` makes a loader deterministic;
            PyG's negative sampling and shuffling also use it).

    Only ``subgraph_type="directional"`` non-disjoint, non-temporal sampling is supported.
    """

    def __init__(self, data, num_neighbors, *, replace: bool = False, is_sorted: bool = False,
                 generator: torch.Generator | None = None):
        from torch_geometric.data import Data

        if not isinstance(data, Data):
            raise TypeError(f"TorchNeighborSampler: expected a torch_geometric.data.Data, got "
                            f"{type(data).__name__}.")
        self.num_neighbors = _fanouts(num_neighbors)
        self.replace = bool(replace)
        self.generator = generator
        self.num_nodes = int(data.num_nodes)
        ei = data.edge_index
        if ei is None or ei.numel() == 0:
            raise ValueError("TorchNeighborSampler: the graph has no edges; neighbour sampling "
                             "needs at least one edge.")
        if ei.dim() != 2 or ei.size(0) != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(ei.shape)}.")
        ei = ei.cpu()
        row, col = ei[0], ei[1]
        if not is_sorted:
            is_sorted = bool((col[1:] >= col[:-1]).all())
        if is_sorted:
            self.perm = None
            self.row = row if row.dtype == torch.long else row.long()
        else:
            self.perm = torch.argsort(col, stable=True)
            self.row = row[self.perm].long()
            col = col[self.perm]
        if ei.numel() and ei.min() < 0:
            raise ValueError(f"edge_index has a negative node id ({int(ei.min())}).")
        counts = torch.bincount(col, minlength=self.num_nodes)
        if counts.numel() > self.num_nodes:
            raise ValueError(f"edge_index refers to node {counts.numel() - 1} but the graph has "
                             f"{self.num_nodes} nodes.")
        self.colptr = torch.zeros(self.num_nodes + 1, dtype=torch.long, device=ei.device)
        torch.cumsum(counts, 0, out=self.colptr[1:])
        self._table: Tensor | None = None

    # ------------------------------------------------------------------------------ PyG API
    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs) -> SamplerOutput:
        """Sample the neighbourhoods of ``index.node`` (used by ``NeighborLoader``)."""
        return node_sample(index, self._sample)

    def sample_from_edges(self, index: EdgeSamplerInput,
                          neg_sampling: NegativeSampling | None = None) -> SamplerOutput:
        """Sample around the endpoints of ``index`` (and of the negatives drawn by PyG's
        ``edge_sample``); ``metadata`` carries ``edge_label_index`` relabelled to local ids."""
        if index.time is not None:
            raise ValueError("TorchNeighborSampler does not support temporal sampling.")
        return edge_sample(index, self._sample, self.num_nodes, False, None, neg_sampling)

    @property
    def edge_permutation(self) -> Tensor | None:
        """Sorted position -> original edge id, or ``None`` if ``edge_index`` was sorted."""
        return self.perm

    # ------------------------------------------------------------------------------ sampling
    def _sample(self, seed: Tensor, seed_time: Tensor | None = None, **kwargs) -> SamplerOutput:
        if seed_time is not None:
            raise ValueError("TorchNeighborSampler does not support temporal sampling.")
        seed = seed.long()
        if seed.numel() and not (0 <= seed.min() and seed.max() < self.num_nodes):
            raise ValueError(f"TorchNeighborSampler: seed node ids must be in [0, "
                             f"{self.num_nodes}), got {int(seed.min())} to {int(seed.max())}.")
        dev = self.colptr.device  # the graph's, on the host
        if self._table is None:
            self._table = torch.full((self.num_nodes,), -1, dtype=torch.long, device=dev)
        table = self._table
        nodes, rows, cols, edges = [seed], [], [], []
        num_nodes_hop, num_edges_hop = [seed.numel()], []
        try:
            # a repeated seed maps to its first occurrence (deterministic, unlike table[seed] = ...)
            table.scatter_reduce_(0, seed, torch.arange(seed.numel(), device=dev), "amin",
                                  include_self=False)
            frontier, offset = seed, 0  # frontier's local ids are offset + arange(len)
            total = seed.numel()
            for k in self.num_neighbors:
                dst, pos = self._hop(frontier, k)
                src = self.row[pos]
                lid = table[src]
                new = torch.unique(src[lid < 0])
                nodes.append(new)
                table[new] = torch.arange(total, total + new.numel(), device=dev)
                rows.append(table[src])
                cols.append(dst + offset)
                edges.append(pos)
                num_nodes_hop.append(new.numel())
                num_edges_hop.append(pos.numel())
                offset, total, frontier = total, total + new.numel(), new
            node = torch.cat(nodes)
        finally:
            table[torch.cat(nodes)] = -1
        empty = seed.new_empty(0)
        return SamplerOutput(
            node=node,
            row=torch.cat(rows) if rows else empty,
            col=torch.cat(cols) if cols else empty,
            edge=torch.cat(edges) if edges else empty,
            batch=None,
            num_sampled_nodes=num_nodes_hop,
            num_sampled_edges=num_edges_hop,
        )

    def _hop(self, frontier: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """One hop: ``(dst, pos)``, the frontier index (``0..len-1``) and the CSC position of
        every sampled incoming edge."""
        n, dev = frontier.numel(), self.colptr.device
        start = self.colptr[frontier]
        deg = self.colptr[frontier + 1] - start
        if k < 0 or n == 0:  # every neighbour
            dst = torch.repeat_interleave(torch.arange(n, device=dev), deg)
            first = torch.cumsum(deg, 0) - deg
            pos = torch.arange(dst.numel(), device=dev) - first[dst] + start[dst]
            return dst, pos
        if k == 0:
            e = frontier.new_empty(0)
            return e, e
        slots = torch.arange(k, device=dev)
        if self.replace:
            u = torch.rand(n, k, generator=self.generator, dtype=torch.float64, device=dev)
            local = (u * deg.unsqueeze(1)).long()
            valid = (deg > 0).unsqueeze(1).expand(n, k)
        else:
            local = slots.expand(n, k).clone()
            big = torch.nonzero(deg > k).squeeze(1)
            if big.numel():
                local[big] = self._floyd(deg[big], k)
            valid = slots.unsqueeze(0) < deg.unsqueeze(1)
        pos = (start.unsqueeze(1) + local)[valid]
        dst = torch.arange(n, device=dev).unsqueeze(1).expand(n, k)[valid]
        return dst, pos

    def _floyd(self, d: Tensor, k: int) -> Tensor:
        """``k`` distinct uniform draws from ``range(d_i)`` for each row (all ``d_i > k``):
        Floyd's algorithm, vectorised over rows (loop over the ``k`` slots)."""
        m = d.numel()
        u = torch.rand(m, k, generator=self.generator, dtype=torch.float64, device=d.device)
        out = torch.empty(m, k, dtype=torch.long, device=d.device)
        for i in range(k):
            j = d - k + i  # draw t in [0, j]; if taken, take j (never taken before)
            t = torch.minimum((u[:, i] * (j + 1)).long(), j)
            if i:
                t = torch.where((out[:, :i] == t.unsqueeze(1)).any(1), j, t)
            out[:, i] = t
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_nodes={self.num_nodes}, "
                f"num_edges={self.row.numel()}, num_neighbors={self.num_neighbors}, "
                f"replace={self.replace})")


def make_neighbor_sampler(data, num_neighbors, *, replace: bool = False,
                          backend: str = "auto", encoder=None, **kwargs) -> BaseSampler:
    """A neighbour sampler for ``LinkNeighborLoader(..., neighbor_sampler=...)`` / ``LinkLoader``.

    ``backend="auto"`` gives PyG's :class:`~torch_geometric.sampler.NeighborSampler` when
    ``pyg-lib`` or ``torch-sparse`` is installed and :class:`TorchNeighborSampler` otherwise;
    ``"pyg"`` / ``"torch"`` force one (``"pyg"`` raises ``ImportError`` without a backend).
    With ``encoder`` (or a model with ``.encoder``) the fanout list is checked against its depth
    (:func:`check_fanout`). Extra keyword arguments go to the chosen sampler.
    """
    fan = check_fanout(num_neighbors, encoder) if encoder is not None else _fanouts(num_neighbors)
    if backend not in ("auto", "pyg", "torch"):
        raise ValueError(f"backend must be 'auto', 'pyg' or 'torch', got {backend!r}.")
    if data.edge_index is None or data.edge_index.numel() == 0:
        raise ValueError("make_neighbor_sampler: the graph has no edges; neighbour sampling "
                         "needs at least one edge.")
    if backend == "pyg" and not pyg_sampler_available():
        raise ImportError("make_neighbor_sampler(backend='pyg'): PyG's NeighborSampler needs "
                          "pyg-lib or torch-sparse, and neither is installed; use backend='auto' "
                          "or 'torch' for the pure-torch sampler.")
    if backend == "pyg" or (backend == "auto" and pyg_sampler_available()):
        from torch_geometric.sampler import NeighborSampler

        return NeighborSampler(data, num_neighbors=fan, replace=replace, **kwargs)
    return TorchNeighborSampler(data, fan, replace=replace, **kwargs)
