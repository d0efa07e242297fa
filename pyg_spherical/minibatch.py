r"""Mini-batch link prediction with a (spherical) VGAE: loss, data-parallel helpers.

The full-batch VGAE objective (:mod:`pyg_spherical.models.vgae`) is

.. math::
    \mathcal{L} = \underbrace{\operatorname{mean}_{(i,j) \in E^+} -\log\sigma(\ell_{ij})
                  + \operatorname{mean}_{(i,j) \in E^-} -\log(1 - \sigma(\ell_{ij}))}_{\text{recon}}
                  + \frac{1}{N}\operatorname{mean}_{i \in V} \mathrm{KL}(q(z_i) \| p(z_i)),

``recon_loss(z, pos, neg) + kl_loss() / N``, with the decoder's logits ``l_ij`` (``s z_i^T z_j``
for the scaled decoder of a spherical latent). A mini-batch from ``LinkNeighborLoader`` /
``LinkLoader`` (``neg_sampling="binary"``) holds a sampled subgraph around ``B`` positive seed
edges and their ``B`` sampled negatives (``edge_label_index``, ``edge_label``). Its loss
(:func:`link_batch_loss`) replaces each mean by the mean over the batch:

* recon: mean over the batch's positives plus mean over its negatives, the two means of
  ``recon_loss`` over a random subset of ``E^+`` and ``E^-``;
* KL: mean over the batch's *seed* nodes (the endpoints of ``edge_label_index``, which the
  samplers list first), still divided by the number of nodes ``N`` of the *whole* graph, not by
  the number of nodes of the batch.

So each term is an estimate of the corresponding full-batch term and their relative weight is the
full-batch one, whatever the batch size. (The seed nodes are endpoints of positive edges, hence
degree-biased, and of uniform negatives: the KL mean over them estimates a degree-weighted
node mean; with ``1/N`` the KL term is small on large graphs either way, as in full batch.)
Neighbours sampled only as context get no KL: their posteriors are not decoded in this batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EncodeForward", "RandomBatchSampler", "encode_seeds", "link_batch_loss",
           "num_seed_nodes", "shard_edges"]


def num_seed_nodes(batch) -> int:
    """Number of seed nodes of a link mini-batch (they come first in ``batch.n_id``):
    ``batch.num_sampled_nodes[0]`` when the sampler reports it, else the number of distinct
    endpoints of ``edge_label_index``."""
    counts = getattr(batch, "num_sampled_nodes", None)
    if counts is not None and len(counts) > 0:
        return int(counts[0])
    return int(torch.unique(batch.edge_label_index).numel())


def encode_seeds(model, x: Tensor, edge_index: Tensor, num_seeds: int | None = None) -> Tensor:
    """``model.encode(x, edge_index)`` restricted to the first ``num_seeds`` nodes.

    The encoder runs on the whole sampled subgraph, but the latent layer (posterior, sample) only
    on the seed nodes, the only ones decoded: on a sampled subgraph the other nodes' outputs see
    a truncated neighbourhood and are never used. Sets ``model.__mu__`` / ``__logstd__`` (and
    ``posterior``) to the seeds' values, like ``encode``. ``num_seeds=None``: all nodes.
    """
    return model.encode(x, edge_index, num_seeds=num_seeds)


def link_batch_loss(model, batch, num_nodes: int, *, encode_with: nn.Module | None = None,
                    return_parts: bool = False):
    r"""Negative ELBO of a link mini-batch, weighted as the full-batch objective (module doc).

    Args:
        model (SphericalVGAE): the model (``recon``, ``kl_loss``, ``decoder``).
        batch (Data): a ``LinkLoader`` / ``LinkNeighborLoader`` batch with ``x``, ``edge_index``,
            ``edge_label_index`` and ``edge_label`` (``> 0``: positive, ``0``: negative).
        num_nodes (int): number of nodes ``N`` of the whole graph (the KL scale ``1/N``).
        encode_with (Module, optional): module whose call ``(x, edge_index, num_seeds=s)``
            encodes the subgraph, e.g. ``DistributedDataParallel(EncodeForward(model))``;
            default :func:`encode_seeds` on ``model``.
        return_parts (bool): also return the (detached) recon and KL terms.

    Returns:
        the scalar loss ``recon + kl / num_nodes`` (and ``(recon, kl)`` with ``return_parts``).

    Raises ``ValueError`` for a batch without ``edge_label_index`` (e.g. ``neg_sampling=
    "triplet"``: binary batches are expected) or without seed edges (its KL mean is undefined).

    No host synchronisation: positives and negatives are separated by masks used as weights.
    """
    if num_nodes <= 0:
        raise ValueError(f"num_nodes must be positive, got {num_nodes}.")
    if getattr(batch, "edge_label_index", None) is None:
        raise ValueError("link_batch_loss: the batch has no edge_label_index; it expects binary "
                         "batches (neg_sampling='binary' or none), not 'triplet' ones.")
    if batch.edge_label_index.size(1) == 0:
        raise ValueError("link_batch_loss: the batch has no seed edges (empty edge_label_index).")
    s = num_seed_nodes(batch)
    if encode_with is None:
        z = encode_seeds(model, batch.x, batch.edge_index, s)
    else:
        z = encode_with(batch.x, batch.edge_index, num_seeds=s)
    eli = batch.edge_label_index
    label = getattr(batch, "edge_label", None)
    # logits and logsigmoid, as SphericalVGAE.recon_loss: a scaled decoder saturates the sigmoid
    logits = model.decoder(z, eli, sigmoid=False)
    pos = (label > 0).to(logits.dtype) if label is not None else torch.ones_like(logits)
    neg = 1.0 - pos
    recon = ((-F.logsigmoid(logits) * pos).sum() / pos.sum().clamp_min(1.0)
             + (-F.logsigmoid(-logits) * neg).sum() / neg.sum().clamp_min(1.0))
    kl = model.kl_loss(model.__mu__, model.__logstd__)
    loss = recon + kl / num_nodes
    if return_parts:
        return loss, (recon.detach(), kl.detach())
    return loss


class EncodeForward(nn.Module):
    """``forward = encode_seeds(model, ...)``: the module to wrap in ``DistributedDataParallel``.

    PyG's ``GAE.forward`` returns the raw encoder output, not ``encode``'s latent sample; DDP
    runs its hooks around ``forward`` only, so it wraps this view of the model (which shares the
    model's parameters) and the loss calls it through ``link_batch_loss(...,
    encode_with=ddp)``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, edge_index: Tensor, num_seeds: int | None = None) -> Tensor:
        return encode_seeds(self.model, x, edge_index, num_seeds)


def shard_edges(edge_index: Tensor, rank: int, world_size: int, *,
                seed: int | None = None) -> Tensor:
    """Rank ``rank``'s share of the columns of ``edge_index (2, E)`` for data-parallel training.

    Every rank gets ``E // world_size`` edges (the remainder is dropped, so that all ranks run
    the same number of steps), a strided slice of a permutation drawn from ``seed`` (the same on
    every rank) or of the given order. Raises ``ValueError`` if there are fewer edges than
    ranks.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world size {world_size}.")
    e = edge_index.size(1)
    if world_size > e:
        raise ValueError(f"world size {world_size} is larger than the number of training edges "
                         f"({e}): every rank needs at least one edge.")
    per = e // world_size
    if seed is None:
        idx = torch.arange(rank, per * world_size, world_size, device=edge_index.device)
    else:  # the same permutation on every rank, whatever its device
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(e, generator=g, device="cpu")[rank:per * world_size:world_size]
        idx = idx.to(edge_index.device)
    return edge_index[:, idx]


class RandomBatchSampler(torch.utils.data.Sampler):
    """Shuffled batches of ``range(num_items)`` from a tensor permutation, for a loader's
    ``batch_sampler=``.

    ``shuffle=True`` in a PyG loader uses torch's ``RandomSampler``, which turns the permutation
    of all training edges into a Python list every epoch (about 36 bytes per edge: 360 MB for
    10M edges). This sampler keeps it as an int64 tensor (8 bytes per edge) and converts one
    batch at a time::

        LinkLoader(data, sampler, edge_label_index=edges, neg_sampling="binary",
                   batch_sampler=RandomBatchSampler(edges.size(1), 1024))

    Args:
        num_items (int): number of training edges (the loader's input size).
        batch_size (int): items per batch (``> 0``).
        drop_last (bool): drop the last incomplete batch (default ``True``).
        generator (torch.Generator, optional): source of the permutations (default: global).
    """

    def __init__(self, num_items: int, batch_size: int, drop_last: bool = True,
                 generator: torch.Generator | None = None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if num_items <= 0:
            raise ValueError(f"num_items must be positive, got {num_items}.")
        self.num_items, self.batch_size = int(num_items), int(batch_size)
        self.drop_last, self.generator = drop_last, generator

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return (self.num_items + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        # on the host, like the index lists the loader takes
        device = "cpu" if self.generator is None else self.generator.device
        perm = torch.randperm(self.num_items, generator=self.generator, device=device)
        for i in range(len(self)):
            yield perm[i * self.batch_size:(i + 1) * self.batch_size].tolist()
