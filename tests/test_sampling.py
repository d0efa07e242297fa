"""Pure-torch neighbour sampler under PyG's LinkLoader, the mini-batch loss, the DC-SBM graphs."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import LinkLoader, LinkNeighborLoader, NeighborLoader
from torch_geometric.sampler import NegativeSampling
from torch_geometric.utils import degree, to_undirected

from pyg_spherical import GaussianGCNEncoder, SphericalGCNEncoder, SphericalVGAE
from pyg_spherical.minibatch import (
    EncodeForward,
    encode_seeds,
    link_batch_loss,
    num_seed_nodes,
    shard_edges,
)
from pyg_spherical.repro.graphs import (
    dcsbm_graph,
    expected_intra_fraction,
    hill_tail_index,
    intra_fraction,
)
from pyg_spherical.sampling import (
    TorchNeighborSampler,
    check_fanout,
    make_neighbor_sampler,
    pyg_sampler_available,
)


def random_graph(n=300, m=1500, f=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = to_undirected(torch.randint(0, n, (2, m), generator=g), num_nodes=n)
    ei = ei[:, ei[0] != ei[1]]
    return Data(x=torch.randn(n, f, generator=g), edge_index=ei, num_nodes=n)


def edge_set(ei):
    return set(map(tuple, ei.t().tolist()))


def link_loader(data, fan, sampler=None, batch_size=32, **kw):
    sampler = sampler or TorchNeighborSampler(data, fan)
    pairs = data.edge_index[:, data.edge_index[0] < data.edge_index[1]]
    return LinkLoader(data, sampler, edge_label_index=pairs, neg_sampling=NegativeSampling("binary"),
                      batch_size=batch_size, **kw), pairs


# ------------------------------------------------------------------------------ the sampler
@pytest.mark.parametrize("sort", [False, True])
def test_sampled_edges_are_real_edges_and_fanout_is_respected(sort):
    data = random_graph()
    if sort:  # target-sorted input: used without a copy
        data.edge_index = data.edge_index[:, torch.argsort(data.edge_index[1], stable=True)]
    fan = [4, 3]
    sampler = TorchNeighborSampler(data, fan)
    assert (sampler.perm is None) == sort
    edges = edge_set(data.edge_index)
    deg = degree(data.edge_index[1], data.num_nodes).long()
    loader, _ = link_loader(data, fan, sampler, shuffle=True)
    torch.manual_seed(0)
    for batch in loader:
        n_id = batch.n_id
        src, dst = n_id[batch.edge_index[0]], n_id[batch.edge_index[1]]
        # every sampled edge is an edge of the graph, with its original id
        assert edge_set(torch.stack([src, dst])) <= edges
        assert torch.equal(data.edge_index[:, batch.e_id], torch.stack([src, dst]))
        # no node twice, no edge twice
        assert n_id.unique().numel() == n_id.numel()
        assert batch.e_id.unique().numel() == batch.e_id.numel()
        # per hop: each target gets min(deg, fanout) distinct neighbours, targets are exactly
        # the nodes new at the previous hop
        nn, ne = batch.num_sampled_nodes, batch.num_sampled_edges
        assert len(nn) == 3 and len(ne) == 2 and sum(nn) == n_id.numel()
        start_e, start_n = 0, 0
        for h, k in enumerate(fan):
            col = batch.edge_index[1, start_e:start_e + ne[h]]
            lo, hi = start_n, start_n + nn[h]
            assert ((col >= lo) & (col < hi)).all()
            got = torch.bincount(col - lo, minlength=nn[h])
            want = deg[n_id[lo:hi]].clamp(max=k)
            assert torch.equal(got, want)
            start_e += ne[h]
            start_n += nn[h]
        # sources are nodes that were already there or are new at this hop
        assert (batch.edge_index[0] < n_id.numel()).all()


def test_seed_nodes_first_and_edge_label_index_relabelled():
    data = random_graph()
    loader, pairs = link_loader(data, [5, 2], batch_size=40)
    torch.manual_seed(1)
    for batch in loader:
        s = batch.num_sampled_nodes[0]
        n_pos = batch.input_id.numel()
        eli = batch.edge_label_index
        # the seeds are the endpoints of edge_label_index, first and without repeats
        assert torch.equal(batch.n_id[:s].sort().values, batch.n_id[eli].unique())
        assert s == num_seed_nodes(batch) and eli.max() < s
        # relabelling: local edge_label_index -> global = the input pairs (positives first)
        glob = batch.n_id[eli]
        assert torch.equal(glob[:, :n_pos], pairs[:, batch.input_id])
        assert torch.equal(batch.edge_label[:n_pos], torch.ones(n_pos))
        assert torch.equal(batch.edge_label[n_pos:], torch.zeros(eli.size(1) - n_pos))
        # features follow the nodes
        assert torch.equal(batch.x, data.x[batch.n_id])


def test_neighbour_draws_are_uniform_without_replacement():
    """A star: the centre has 12 leaves, fanout 3; every leaf is drawn 3/12 of the time."""
    n = 13
    ei = to_undirected(torch.stack([torch.zeros(12, dtype=torch.long), torch.arange(1, 13)]))
    data = Data(edge_index=ei, num_nodes=n)
    sampler = TorchNeighborSampler(data, [3], generator=torch.Generator().manual_seed(0))
    counts = torch.zeros(n)
    reps = 4000
    for _ in range(reps):
        out = sampler._sample(torch.tensor([0]))
        picked = out.node[out.row]
        assert picked.unique().numel() == 3 and out.col.eq(0).all()
        counts[picked] += 1
    freq = counts[1:] / reps
    assert (freq - 0.25).abs().max() < 0.04, freq


def test_all_neighbours_and_replacement():
    data = random_graph()
    deg = degree(data.edge_index[1], data.num_nodes).long()
    seeds = torch.arange(10)
    out = TorchNeighborSampler(data, [-1])._sample(seeds)
    assert out.num_sampled_edges[0] == int(deg[seeds].sum())
    out = TorchNeighborSampler(data, [7], replace=True)._sample(seeds)
    assert out.num_sampled_edges[0] == 7 * int((deg[seeds] > 0).sum())
    assert edge_set(torch.stack([out.node[out.row], out.node[out.col]])) <= edge_set(data.edge_index)


def test_deterministic_under_a_seed():
    data = random_graph()

    def run(seed):
        torch.manual_seed(seed)
        loader, _ = link_loader(data, [4, 3], shuffle=True)
        return [(b.n_id.clone(), b.edge_index.clone(), b.edge_label_index.clone()) for b in loader]

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(x, y) for u, v in zip(a, b) for x, y in zip(u, v))
    assert not all(torch.equal(x, y) for u, v in zip(a, c) for x, y in zip(u, v))


def test_drives_link_neighbor_loader_and_neighbor_loader():
    data = random_graph()
    sampler = make_neighbor_sampler(data, [4, 2], backend="torch")
    pairs = data.edge_index[:, :50]
    batch = next(iter(LinkNeighborLoader(data, [4, 2], edge_label_index=pairs, batch_size=16,
                                         neg_sampling="binary", neighbor_sampler=sampler)))
    assert batch.edge_label_index.shape == (2, 32)
    nb = next(iter(NeighborLoader(data, [4, 2], input_nodes=torch.arange(20), batch_size=8,
                                  neighbor_sampler=sampler)))
    assert torch.equal(nb.n_id[:8], torch.arange(8)) and nb.batch_size == 8


@pytest.mark.skipif(not pyg_sampler_available(), reason="needs pyg-lib or torch-sparse")
def test_matches_pyg_sampler_statistics():  # pragma: no cover - backend not installed here
    from torch_geometric.sampler import NeighborSampler

    data = random_graph()
    data.edge_index = data.edge_index[:, torch.argsort(data.edge_index[1], stable=True)]
    seeds = torch.arange(0, 60, 3)
    ours = TorchNeighborSampler(data, [3, 2])._sample(seeds)
    theirs = NeighborSampler(data, [3, 2])._sample(seeds)
    assert torch.equal(ours.node[: seeds.numel()], theirs.node[: seeds.numel()])
    assert ours.num_sampled_edges[0] == theirs.num_sampled_edges[0]
    deg = degree(data.edge_index[1], data.num_nodes).long()
    assert theirs.num_sampled_edges[0] == int(deg[seeds].clamp(max=3).sum())


def star_with_tail():
    """Undirected edges 0-1, 0-3, 3-2: node 0 has in-neighbours {1, 3}, node 3 has {0, 2}."""
    ei = to_undirected(torch.tensor([[0, 0, 3], [1, 3, 2]]))
    return Data(edge_index=ei, num_nodes=4)


def test_duplicate_seeds_are_kept_in_order_and_each_draws_its_neighbours():
    """PyG's samplers keep the seeds as given (a NeighborLoader batch starts with its input
    nodes, repeats included) and sample for every occurrence; a repeated node reached again as
    a neighbour maps to its first occurrence."""
    data = star_with_tail()
    out = TorchNeighborSampler(data, [-1])._sample(torch.tensor([0, 0, 3]))
    assert out.node.tolist() == [0, 0, 3, 1, 2] and out.num_sampled_nodes == [3, 2]
    pairs = sorted(zip(out.col.tolist(), out.row.tolist()))
    assert pairs == [(0, 2), (0, 3), (1, 2), (1, 3), (2, 0), (2, 4)]
    batch = next(iter(NeighborLoader(data, [-1], input_nodes=torch.tensor([0, 0, 3]),
                                     batch_size=3, neighbor_sampler=TorchNeighborSampler(data, [-1]))))
    assert batch.n_id[:3].tolist() == [0, 0, 3] and batch.batch_size == 3


@pytest.mark.parametrize("fanout", [[1.7], [2.0], [True], ["3"]])
def test_a_fanout_that_is_not_an_int_is_refused(fanout):
    """PyG's sampler refuses them too (its C++ op takes a list of ints); 1.7 used to become 1."""
    with pytest.raises(TypeError, match="ints"):
        TorchNeighborSampler(random_graph(), fanout)
    with pytest.raises(TypeError, match="ints"):
        make_neighbor_sampler(random_graph(), fanout, backend="torch")


def test_node_ids_out_of_range_are_one_clear_error():
    data = random_graph()
    sampler = TorchNeighborSampler(data, [3])
    for bad in ([-1], [0, data.num_nodes]):
        with pytest.raises(ValueError, match="node ids must be in"):
            sampler._sample(torch.tensor(bad))
    neg = Data(edge_index=torch.tensor([[0, -1], [1, 0]]), num_nodes=3)
    with pytest.raises(ValueError, match="negative node id"):
        TorchNeighborSampler(neg, [2])


@pytest.mark.skipif(pyg_sampler_available(), reason="pyg-lib or torch-sparse is installed")
def test_the_pyg_backend_is_refused_when_missing():
    with pytest.raises(ImportError, match="pyg-lib or torch-sparse"):
        make_neighbor_sampler(random_graph(), [3], backend="pyg")


@pytest.mark.skipif(not pyg_sampler_available(), reason="needs pyg-lib or torch-sparse")
def test_duplicate_seeds_and_fractional_fanouts_as_pyg_sampler():  # pragma: no cover
    """The same seeds, in order, and the same edges for each seed position (all neighbours, so
    that nothing is random); a fractional fanout fails in PyG's sampler too."""
    from torch_geometric.sampler import NeighborSampler

    data = random_graph()
    seeds = torch.tensor([5, 5, 7, 9, 7])
    ours, theirs = TorchNeighborSampler(data, [-1]), NeighborSampler(data, [-1])
    a, b = ours._sample(seeds), theirs._sample(seeds)
    assert torch.equal(a.node[:5], b.node[:5])

    def by_seed(sampler, out):
        perm = sampler.edge_permutation
        edge = out.edge if perm is None else perm[out.edge]
        return sorted(zip(out.col.tolist(), edge.tolist()))

    assert by_seed(ours, a) == by_seed(theirs, b)
    with pytest.raises((TypeError, RuntimeError)):
        NeighborSampler(data, [1.7])._sample(seeds)


def test_factory_and_bad_input():
    data = random_graph()
    s = make_neighbor_sampler(data, [3, 3])
    assert isinstance(s, TorchNeighborSampler) != pyg_sampler_available()
    enc = SphericalGCNEncoder(8, 8, 4)
    with pytest.raises(ValueError, match="3 hops but the encoder has only 2"):
        make_neighbor_sampler(data, [3, 3, 3], encoder=enc)
    assert check_fanout([5], SphericalVGAE(enc)) == [5]
    with pytest.raises(ValueError, match="no edges"):
        TorchNeighborSampler(Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=4), [2])
    with pytest.raises(ValueError, match="no edges"):
        make_neighbor_sampler(Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=4), [2])
    with pytest.raises(ValueError, match="one fanout per hop"):
        TorchNeighborSampler(data, [])
    with pytest.raises(TypeError, match="list of ints"):
        TorchNeighborSampler(data, 3)
    with pytest.raises(ValueError, match="batch_size"):
        LinkLoader(data, s, edge_label_index=data.edge_index, batch_size=0)


# ------------------------------------------------------------------------------ the batch loss
@pytest.mark.parametrize("Enc", [SphericalGCNEncoder, GaussianGCNEncoder])
def test_batch_loss_is_the_full_batch_formula_on_the_batch(Enc, device):
    """recon = recon_loss(z, batch positives, batch negatives); KL = kl_loss over the seeds / N."""
    data = random_graph(f=8)
    torch.manual_seed(0)
    # no dropout: the reference below runs the encoder again, which must give the same outputs
    model = SphericalVGAE(Enc(8, 16, 4, dropout=0.0)).to(device)
    loader, _ = link_loader(data, [4, 3], batch_size=32)
    batch = next(iter(loader)).to(device)
    s, n_pos = num_seed_nodes(batch), batch.input_id.numel()
    torch.manual_seed(3)
    loss, (recon, kl) = link_batch_loss(model, batch, data.num_nodes, return_parts=True)
    torch.manual_seed(3)
    z = encode_seeds(model, batch.x, batch.edge_index, s)
    assert z.shape[0] == s
    eli = batch.edge_label_index
    want_recon = model.recon_loss(z, eli[:, :n_pos], eli[:, n_pos:])
    torch.manual_seed(3)  # the encoder's dropout masks of the batch loss
    loc, scale = model.encoder(batch.x, batch.edge_index)
    want_kl = model.kl_loss(loc[:s], scale[:s])
    assert torch.allclose(recon, want_recon, atol=1e-6)
    assert torch.allclose(kl, want_kl, atol=1e-6)
    assert torch.allclose(loss, want_recon + want_kl / data.num_nodes, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # EncodeForward (the DDP view) gives the same loss
    torch.manual_seed(3)
    other = link_batch_loss(model, batch, data.num_nodes, encode_with=EncodeForward(model))
    assert torch.allclose(other, loss)


def test_a_batch_without_seed_edges_is_an_error_not_nan():
    """The KL mean over no seed nodes is undefined (it used to come out as NaN)."""
    data = random_graph(f=8)
    model = SphericalVGAE(SphericalGCNEncoder(8, 16, 4))
    empty = data.clone()
    empty.edge_label_index = torch.empty(2, 0, dtype=torch.long)
    empty.edge_label = torch.empty(0)
    with pytest.raises(ValueError, match="no seed edges"):
        link_batch_loss(model, empty, data.num_nodes)
    model.encode(data.x, data.edge_index, num_seeds=0)
    with pytest.raises(ValueError, match="no nodes"):
        model.kl_loss()


def test_a_triplet_batch_is_refused_with_the_reason():
    data = random_graph(f=8)
    model = SphericalVGAE(SphericalGCNEncoder(8, 16, 4))
    pairs = data.edge_index[:, :40]
    loader = LinkNeighborLoader(data, [3, 2], edge_label_index=pairs, batch_size=16,
                                neg_sampling="triplet",
                                neighbor_sampler=TorchNeighborSampler(data, [3, 2]))
    with pytest.raises(ValueError, match="binary"):
        link_batch_loss(model, next(iter(loader)), data.num_nodes)


def test_minibatch_training_learns_links():
    data = dcsbm_graph(2000, 8.0, 16, num_communities=8, p_in=0.8, signal=0.6, seed=0)
    torch.manual_seed(0)
    model = SphericalVGAE(SphericalGCNEncoder(16, 32, 8))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader, pairs = link_loader(data, [5, 5], batch_size=256, shuffle=True)
    losses = []
    for _ in range(3):
        for batch in loader:
            opt.zero_grad()
            loss = link_batch_loss(model, batch, data.num_nodes)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    k = len(losses) // 4
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k - 0.05
    z = model.embed(data.x, data.edge_index)
    neg = torch.randint(0, data.num_nodes, pairs.shape)
    auc, _ = model.test(z, pairs[:, :2000], neg[:, :2000])
    assert auc > 0.75


def test_shard_edges():
    ei = torch.arange(20).view(2, 10)
    shards = [shard_edges(ei, r, 3) for r in range(3)]
    assert all(s.size(1) == 3 for s in shards)
    got = torch.cat(shards, 1)[0]
    assert got.unique().numel() == 9
    seeded = [shard_edges(ei, r, 3, seed=1) for r in range(3)]
    assert torch.cat(seeded, 1)[0].unique().numel() == 9
    with pytest.raises(ValueError, match="world size 11 is larger than the number of training edges"):
        shard_edges(ei, 0, 11)


# ------------------------------------------------------------------------------ the graphs
def test_dcsbm_degrees_are_heavy_tailed_and_communities_planted():
    n, tail = 30000, 2.5
    data = dcsbm_graph(n, 10.0, 16, num_communities=20, p_in=0.6, tail=tail, seed=3)
    ei = data.edge_index
    assert ei.size(1) % 2 == 0 and (ei[0] != ei[1]).all()
    assert torch.equal(ei[1], ei[1].sort().values)  # sorted by target
    assert edge_set(ei) == edge_set(ei.flip(0))  # undirected
    assert ei.size(1) // 2 == len({(min(a, b), max(a, b)) for a, b in ei.t().tolist()})
    deg = degree(ei[1], n)
    assert 9.0 < float(deg.mean()) < 10.5
    # heavy tail: far more dispersed than Poisson (var/mean = 1), the Hill index near `tail`
    assert float(deg.var() / deg.mean()) > 3.0
    assert float(deg.max()) > 15 * float(deg.mean())
    assert abs(hill_tail_index(deg) - tail) < 0.6
    # communities: the intra-community edge share is the planted one
    planted = expected_intra_fraction(data.theta, data.y, 20, 0.6)
    assert abs(planted - (0.6 + 0.4 / 20)) < 0.02
    assert abs(intra_fraction(ei, data.y) - planted) < 0.02
    # features carry the community: nearest-centroid accuracy well above chance (1/20),
    # but far from perfect
    cent = torch.zeros(20, 16).index_add_(0, data.y, data.x) / torch.bincount(data.y).unsqueeze(1)
    acc = float((torch.cdist(data.x, cent).argmin(1) == data.y).float().mean())
    assert 0.15 < acc < 0.9


def test_dcsbm_is_reproducible_and_scales_linearly():
    a, b = dcsbm_graph(5000, seed=1), dcsbm_graph(5000, seed=1)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert not torch.equal(a.edge_index, dcsbm_graph(5000, seed=2).edge_index)
    big = dcsbm_graph(200_000, 4.0, 4, seed=0)  # O(N^2) would not finish
    assert math.isclose(big.edge_index.size(1) / 200_000, 4.0, rel_tol=0.05)
    with pytest.raises(ValueError, match="tail must be > 1"):
        dcsbm_graph(10, num_communities=2, tail=1.0)


def test_random_batch_sampler_drives_link_loader():
    from pyg_spherical.minibatch import RandomBatchSampler

    data = random_graph()
    pairs = data.edge_index[:, data.edge_index[0] < data.edge_index[1]]
    bs = RandomBatchSampler(pairs.size(1), 50)
    loader = LinkLoader(data, TorchNeighborSampler(data, [3]), edge_label_index=pairs,
                        neg_sampling="binary", batch_sampler=bs)
    seen = torch.cat([b.input_id for b in loader])
    assert len(loader) == pairs.size(1) // 50 and seen.numel() == len(loader) * 50
    assert seen.unique().numel() == seen.numel()  # a permutation, no repeats
    assert len(RandomBatchSampler(101, 50, drop_last=False)) == 3
    with pytest.raises(ValueError, match="batch_size must be positive"):
        RandomBatchSampler(10, 0)
