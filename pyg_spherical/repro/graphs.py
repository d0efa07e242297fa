r"""Synthetic graphs for the large-graph benchmarks: a degree-corrected stochastic block model.

:func:`dcsbm_graph` draws a graph of ``N`` nodes with planted communities, heavy-tailed degrees
and node features that carry the community plus noise, in ``O(N + E)`` memory (and
``O((N + E) log N)`` time: sorting and binary searches), never ``O(N^2)``:

* community ``c_i`` uniform over ``K`` communities; degree propensity ``theta_i`` Pareto with
  tail index ``tail`` (``P(theta > t) = t^{-tail}``, ``t >= 1``), so degrees are heavy-tailed
  with the same index;
* ``M = N * avg_degree / 2`` edges drawn one by one (vectorised, in chunks): the source ``i``
  with probability proportional to ``theta_i``; with probability ``p_in`` the target is drawn
  proportionally to ``theta`` *within* ``c_i``, otherwise from all nodes. Self-loops and repeated
  pairs are dropped. The expected fraction of intra-community edges is
  ``p_in + (1 - p_in) * sum_c w_c^2`` (``w_c``: community ``c``'s share of ``sum theta``), which
  :func:`expected_intra_fraction` returns;
* features ``x_i = signal * m_{c_i} + noise * eps_i`` with ``m_c, eps_i ~ N(0, I_F)``.

Link prediction on it is learnable (communities, degrees) but not trivial: a ``1 - p_in`` share
of the edges ignores communities, and features are noisy.

Node ids are a random permutation (no id carries the community); ``edge_index`` holds both
directions of every undirected edge, sorted by target node (the CSC order that
:class:`pyg_spherical.sampling.TorchNeighborSampler` uses without a copy).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["dcsbm_graph", "expected_intra_fraction", "hill_tail_index", "intra_fraction",
           "undirected_to_csc"]

_CHUNK = 1 << 21  # edges drawn per vectorised chunk


def _draw(cum: Tensor, lo: Tensor, hi: Tensor, g: torch.Generator) -> Tensor:
    """Indices ``j`` with probability ``w_j / (hi - lo)`` among those with ``lo <= cum_j - w_j``
    and ``cum_j <= hi`` (inverse-CDF sampling on the inclusive cumulative weights ``cum``)."""
    r = lo + torch.rand(lo.shape, generator=g, dtype=torch.float64) * (hi - lo)
    return torch.searchsorted(cum, r, right=True).clamp_max(cum.numel() - 1)


def undirected_to_csc(u: Tensor, v: Tensor, num_nodes: int) -> Tensor:
    """``(2, 2E)`` edge index holding ``u -> v`` and ``v -> u`` for each pair, sorted by target
    (then source)."""
    key = torch.cat([v * num_nodes + u, u * num_nodes + v])
    key = torch.sort(key).values
    return torch.stack([key % num_nodes, key // num_nodes])


def dcsbm_graph(num_nodes: int, avg_degree: float = 10.0, num_features: int = 128, *,
                num_communities: int = 100, p_in: float = 0.7, tail: float = 2.5,
                signal: float = 0.25, noise: float = 1.0, seed: int = 0):
    """A degree-corrected SBM graph (module docstring) as a ``Data`` with ``x (N, F)``,
    ``edge_index (2, ~N * avg_degree)`` (both directions, sorted by target), ``y`` (community),
    ``theta`` (degree propensity) and ``expected_intra`` (the planted intra-community share).
    """
    if num_nodes < 2:
        raise ValueError(f"num_nodes must be >= 2, got {num_nodes}.")
    if not avg_degree > 0:
        raise ValueError(f"avg_degree must be > 0, got {avg_degree}.")
    if not 1 <= num_communities <= num_nodes:
        raise ValueError(f"num_communities must be in [1, num_nodes], got {num_communities}.")
    if not 0.0 <= p_in <= 1.0:
        raise ValueError(f"p_in must be in [0, 1], got {p_in}.")
    if not tail > 1.0:
        raise ValueError(f"tail must be > 1 (finite mean degree), got {tail}.")
    from torch_geometric.data import Data

    n, k = int(num_nodes), int(num_communities)
    g = torch.Generator().manual_seed(seed)
    comm = torch.randint(0, k, (n,), generator=g)
    theta = torch.rand(n, generator=g, dtype=torch.float64).clamp_min(1e-12).pow(-1.0 / tail)
    # position p in community-sorted order <-> node id order[p]
    order = torch.argsort(comm, stable=True)
    cum = torch.cumsum(theta[order], 0)
    sizes = torch.bincount(comm, minlength=k)
    block_end = torch.cumsum(sizes, 0)
    # mass before block c and up to its end; indexing a zero-padded cumsum keeps empty
    # communities (block_end[c] == block_end[c - 1]) right
    cum0 = torch.cat([cum.new_zeros(1), cum])
    block_lo = cum0[block_end - sizes]
    block_hi = cum0[block_end]
    total = float(cum[-1])
    comm_sorted = comm[order]

    m = round(n * avg_degree / 2)
    keys = [torch.empty(0, dtype=torch.long)]
    for s in range(0, m, _CHUNK):
        b = min(_CHUNK, m - s)
        zero, full = cum.new_zeros(b), cum.new_full((b,), total)
        src = _draw(cum, zero, full, g)
        c = comm_sorted[src]
        intra = torch.rand(b, generator=g) < p_in
        lo = torch.where(intra, block_lo[c], zero)
        hi = torch.where(intra, block_hi[c], full)
        dst = _draw(cum, lo, hi, g)
        src, dst = order[src], order[dst]
        keep = src != dst
        a, z = torch.minimum(src, dst)[keep], torch.maximum(src, dst)[keep]
        keys.append(a * n + z)
    key = torch.unique(torch.cat(keys))
    del keys
    edge_index = undirected_to_csc(key // n, key % n, n)
    del key

    x = torch.empty(n, num_features)
    centres = torch.randn(k, num_features, generator=g)
    rows = max(1, (1 << 24) // max(1, num_features))
    for s in range(0, n, rows):
        e = min(n, s + rows)
        blk = torch.randn(e - s, num_features, generator=g).mul_(noise)
        x[s:e] = blk.add_(centres[comm[s:e]], alpha=signal)
    data = Data(x=x, edge_index=edge_index, y=comm, num_nodes=n)
    data.theta = theta.float()
    data.expected_intra = expected_intra_fraction(theta, comm, k, p_in)
    return data


def expected_intra_fraction(theta: Tensor, comm: Tensor, num_communities: int,
                            p_in: float) -> float:
    """``p_in + (1 - p_in) * sum_c w_c^2``: the planted share of intra-community edge draws."""
    w = torch.zeros(num_communities, dtype=torch.float64).index_add_(0, comm, theta.double())
    w = w / w.sum()
    return float(p_in + (1.0 - p_in) * (w * w).sum())


def intra_fraction(edge_index: Tensor, comm: Tensor) -> float:
    """Share of the edges of ``edge_index`` whose endpoints are in the same community."""
    return float((comm[edge_index[0]] == comm[edge_index[1]]).double().mean())


def hill_tail_index(degree: Tensor, top: float = 0.02) -> float:
    """Hill estimator of the tail index from the largest ``top`` share of the degrees."""
    d = torch.sort(degree.double(), descending=True).values
    kk = max(2, math.ceil(top * d.numel()))
    d = d[: kk + 1]
    return float(1.0 / torch.log(d[:kk] / d[kk]).mean())
