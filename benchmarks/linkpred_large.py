#!/usr/bin/env python
r"""Mini-batch link prediction on large graphs: S-VGAE / N-VGAE with neighbour sampling.

Training is PyG's mini-batch idiom: a :class:`~torch_geometric.loader.LinkLoader` over the
training edges (``neg_sampling="binary"``: one uniform negative pair per positive) drives a
neighbour sampler (:func:`pyg_spherical.sampling.make_neighbor_sampler`: PyG's if ``pyg-lib`` /
``torch-sparse`` is installed, the pure-torch one otherwise); each step encodes the sampled
subgraph and minimises :func:`pyg_spherical.minibatch.link_batch_loss` (recon over the batch's
edges + KL over its seed nodes / N, the full-batch weighting).

Graphs: ``--dataset synthetic`` (default) is a degree-corrected SBM (``benchmarks/_graphs.py``)
of ``--nodes`` nodes, average degree ``--avg-degree``, ``--features`` features; a random
``--eval-edges`` undirected edges each (at most 5 % / 10 %) are held out for validation / test,
with as many uniformly drawn node pairs as negatives. ``--dataset PubMed`` uses the 85 / 5 / 10 %
split of ``benchmarks/linkpred.py`` (same seed, same split) and the paper's Table 7 settings.

Evaluation: ``--eval sampled`` (default) scores held-out pairs on subgraphs sampled around them
with the same fanouts (memory independent of the graph size); ``--eval full`` embeds the whole
training graph at once (small graphs). The test AUC / AP are those at the evaluation of best
validation AUC (every ``--eval-every`` steps and at the end).

Reported: AUC / AP, training throughput (positive training edges per second, per process and in
total), time per step (sampling + compute; median after ``--warmup`` steps), peak RSS of the
training phase (``resource.getrusage``; the peak of graph construction is reset through
``/proc/self/clear_refs`` where the kernel allows it, and reported apart) minus the graph size
(features + training ``edge_index``).

Data-parallel: ``torchrun --nproc_per_node 2 benchmarks/linkpred_large.py ...`` (gloo on CPU,
nccl on CUDA). Every rank builds the same graph from ``--seed``, takes its strided shard of the
training edges and wraps the model in ``DistributedDataParallel``; held-out pairs are scored in
shards and gathered for the metrics; only rank 0 prints and writes. Multi-node: the same command
with ``--nnodes``, ``--node_rank`` and ``--rdzv_endpoint`` on each machine.

Examples::

    python benchmarks/linkpred_large.py --nodes 100000 --steps 300
    python benchmarks/linkpred_large.py --nodes 2000000 --model vgae --steps 200
    python benchmarks/linkpred_large.py --dataset PubMed --epochs 20 --eval full --eval-every 37
    torchrun --nproc_per_node 2 benchmarks/linkpred_large.py --nodes 1000000 --steps 200

Output: ``linkpred_large/<name>.json`` under ``runs/`` (ignored by git), under the committed
``results/`` with ``--refresh``, under ``DIR`` with ``--out-dir DIR``; ``<name>`` is
``n<nodes>_<model>_w<processes>_s<seed>`` (``pubmed_...`` on PubMed). ``--out NAME`` replaces
``<name>`` (a file name, not a path). The committed synthetic results carry the default names
(``--refresh``); the PubMed ones were named ``--refresh --out pubmed_minibatch_svgae_s<seed>``.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import resource
import statistics
import sys
import time
from types import SimpleNamespace

import torch
from common import (
    PAPER_TABLE7,
    Parser,
    add_common_args,
    at_least,
    fail,
    fraction,
    interruptible,
    load_planetoid,
    non_negative,
    out_dir,
    positive,
    progress_bar,
    run_metadata,
    set_threads,
    write_json,
    wrote,
)

MODELS = {"svgae": "S-VGAE", "vgae": "N-VGAE"}
#: the folder of the results under runs/ (results/ with --refresh, --out-dir)
FOLDER = "linkpred_large"


class CLIError(Exception):
    """Bad input discovered after parsing: one ``error:`` line, exit code 2."""


def fanout(value):
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {value!r}")
    if v < -1 or v == 0:
        raise argparse.ArgumentTypeError(f"fanouts must be > 0 or -1 (all), got {v}")
    return v


def probability(value):
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"dropout must be in [0, 1), got {value}")
    return v


def build_parser() -> Parser:
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("synthetic", "PubMed"), default="synthetic")
    p.add_argument("--nodes", type=at_least(int, 2), default=100_000,
                   help="synthetic: nodes (default 1e5)")
    p.add_argument("--avg-degree", type=positive(float), default=10.0, help="synthetic: average degree")
    p.add_argument("--features", type=positive(int), default=128, help="synthetic: feature size")
    p.add_argument("--communities", type=positive(int), default=100, help="synthetic: communities")
    p.add_argument("--p-in", type=fraction, default=0.7,
                   help="synthetic: intra-community edge share, in [0, 1] (default 0.7)")
    p.add_argument("--eval-edges", type=positive(int), default=10_000,
                   help="synthetic: held-out positive edges per split (default 10000)")
    p.add_argument("--model", choices=tuple(MODELS), default="svgae")
    p.add_argument("--batch-size", type=positive(int), default=512,
                   help="positive training edges per step and process (default 512)")
    p.add_argument("--num-neighbors", type=fanout, nargs="+", default=[10, 5],
                   help="fanout per hop, at most one per encoder layer (default 10 5)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--steps", type=positive(int), default=None, help="training steps (default 200)")
    run.add_argument("--epochs", type=positive(int), default=None,
                     help="passes over this process's training edges")
    p.add_argument("--warmup", type=non_negative(int), default=5, help="steps left out of the timing (default 5)")
    p.add_argument("--eval", choices=("sampled", "full"), default="sampled")
    p.add_argument("--eval-every", type=non_negative(int), default=0, help="evaluate every N steps (0: at the end)")
    p.add_argument("--eval-batch-size", type=positive(int), default=None,
                   help="held-out pairs per evaluation batch (default 2 x --batch-size: the "
                        "positives and negatives of a training batch)")
    p.add_argument("--hidden", type=positive(int), default=32)
    p.add_argument("--dim", type=positive(int), default=None, help="latent dim (default 16; PubMed: Table 7)")
    p.add_argument("--lr", type=positive(float), default=None, help="Adam lr (default 0.01; PubMed: Table 7)")
    p.add_argument("--dropout", type=probability, default=None, help="(default 0; PubMed: Table 7)")
    p.add_argument("--sampler", choices=("auto", "torch", "pyg"), default="auto",
                   help="neighbour sampler backend (default auto)")
    p.add_argument("--out", default=None, metavar="NAME",
                   help=f"result name in {FOLDER}/ under the output folder (default: see the "
                        "module docstring)")
    add_common_args(p, seed_help="seed of the graph, split, initialisation and sampling "
                                 "(default 0)")
    return p


# ---------------------------------------------------------------------------------------------
class Dist:
    """torch.distributed context from torchrun's environment (a single process without it)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device) -> None:
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)  # this rank's GPU for NCCL's communicator
            dist.init_process_group(backend, rank=self.rank, world_size=self.world)
            self.active = True
            self.backend, self.device = backend, device

    def _on_backend(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` where the backend can reach it (NCCL: the rank's GPU only)."""
        return t.to(self.device) if self.backend == "nccl" else t

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.active:
            import torch.distributed as dist

            out = self._on_backend(t)
            dist.all_reduce(out, op=getattr(dist.ReduceOp, op.upper()))
            t = out.to(t.device)
        return t

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate the equally sized tensors ``t`` of all ranks along dim 0."""
        if not self.active:
            return t
        import torch.distributed as dist

        src = self._on_backend(t).contiguous()
        out = [torch.empty_like(src) for _ in range(self.world)]
        dist.all_gather(out, src)
        return torch.cat(out).to(t.device)

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
            self.active = False


def rss_mb() -> float:
    """Peak resident set size of this process (``getrusage``), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Current resident set size (``/proc/self/statm``), MB; ``nan`` where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024.0 ** 2
    except (OSError, ValueError):
        return float("nan")


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so that the temporaries of
    graph construction do not count as training memory."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def nbytes(*ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts if t is not None)


# ---------------------------------------------------------------------------------------------
class Split:
    """Training graph (``data``: x, edge_index of training edges), the training seed pairs
    (one direction per undirected edge) and held-out ``(pos, neg)`` pairs."""

    def __init__(self, data, train_pairs, val, test, info):
        self.data, self.train_pairs, self.val, self.test, self.info = data, train_pairs, val, test, info


def synthetic_split(args) -> Split:
    from torch_geometric.data import Data

    from pyg_spherical.repro.graphs import dcsbm_graph, intra_fraction, undirected_to_csc

    t0 = time.perf_counter()
    g = dcsbm_graph(args.nodes, args.avg_degree, args.features, num_communities=min(args.communities, args.nodes),
                    p_in=args.p_in, seed=args.seed)
    n = g.num_nodes
    build_s = time.perf_counter() - t0
    info = {"nodes": n, "features": args.features, "communities": min(args.communities, n),
            "p_in": args.p_in, "directed_edges": g.edge_index.size(1),
            "intra_fraction": intra_fraction(g.edge_index, g.y) if g.edge_index.numel() else None,
            "expected_intra": g.expected_intra, "build_s": round(build_s, 2)}
    mask = g.edge_index[0] < g.edge_index[1]
    pairs = g.edge_index[:, mask]
    del mask
    g.edge_index = None
    num_pairs = pairs.size(1)
    if num_pairs == 0:
        raise CLIError(f"the graph has no edges ({n} nodes, average degree {args.avg_degree}); "
                       "raise --nodes or --avg-degree")
    n_val = min(args.eval_edges, int(0.05 * num_pairs))
    n_test = min(args.eval_edges, int(0.10 * num_pairs))
    if n_val == 0:
        raise CLIError(f"the graph has {num_pairs} undirected edges, too few to hold out 5 % for "
                       "validation (20 at least); raise --nodes or --avg-degree")
    gen = torch.Generator().manual_seed(args.seed + 1)
    held = torch.randperm(num_pairs, generator=gen)[: n_val + n_test]
    keep = torch.ones(num_pairs, dtype=torch.bool)
    keep[held] = False

    def negatives(k):
        u = torch.randint(0, n, (k,), generator=gen)
        v = (u + torch.randint(1, n, (k,), generator=gen)) % n  # v != u
        return torch.stack([u, v])

    val = (pairs[:, held[:n_val]], negatives(n_val))
    test = (pairs[:, held[n_val:]], negatives(n_test))
    train_pairs = pairs[:, keep]
    del pairs, keep, held
    edge_index = undirected_to_csc(train_pairs[0], train_pairs[1], n)
    data = Data(x=g.x, edge_index=edge_index, num_nodes=n)
    info.update(undirected_edges=num_pairs, train_edges=train_pairs.size(1), val_edges=n_val,
                test_edges=n_test, avg_degree=edge_index.size(1) / n)
    return Split(data, train_pairs, val, test, info)


def pubmed_split(args, dist: Dist) -> Split:
    from torch_geometric.data import Data

    from pyg_spherical.repro.datasets import link_split

    if dist.main:  # names where the files came from; one error: line if they are missing
        full = load_planetoid(args, "PubMed")
    else:  # the other ranks read the same files without repeating rank 0's output
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
                contextlib.redirect_stderr(null):
            full = load_planetoid(args, "PubMed")
    sp = link_split(full, val_ratio=0.05, test_ratio=0.10, seed=args.seed)
    ei = sp.train_pos_edge_index
    train_pairs = ei[:, ei[0] < ei[1]]
    data = Data(x=full.x, edge_index=ei, num_nodes=full.num_nodes)
    info = {"name": "PubMed", "nodes": full.num_nodes, "features": full.num_features,
            "undirected_edges": full.edge_index.size(1) // 2, "train_edges": train_pairs.size(1),
            "val_edges": sp.val_pos_edge_index.size(1), "test_edges": sp.test_pos_edge_index.size(1)}
    return Split(data, train_pairs, (sp.val_pos_edge_index, sp.val_neg_edge_index),
                 (sp.test_pos_edge_index, sp.test_neg_edge_index), info)


def settings(args) -> dict:
    if args.dataset == "PubMed":
        lr, dropout, dim = PAPER_TABLE7["PubMed"][args.model]
    else:
        lr, dropout, dim = 0.01, 0.0, 16
    return {"lr": args.lr if args.lr is not None else lr,
            "dropout": args.dropout if args.dropout is not None else dropout,
            "dim": args.dim if args.dim is not None else dim, "hidden": args.hidden}


# ---------------------------------------------------------------------------------------------
class Evaluator:
    """AUC / AP of held-out pairs, scored in shards across ranks and gathered."""

    def __init__(self, args, split: Split, sampler, dist: Dist, device):
        from torch_geometric.loader import LinkLoader

        self.args, self.split, self.dist, self.device = args, split, dist, device
        self.loaders = {}
        for name, (pos, neg) in (("val", split.val), ("test", split.test)):
            pairs = torch.cat([pos, neg], 1)
            label = torch.cat([torch.ones(pos.size(1)), torch.zeros(neg.size(1))])
            per = math.ceil(pairs.size(1) / dist.world)  # pad the last shard by repeating pairs
            idx = torch.arange(dist.rank * per, (dist.rank + 1) * per) % pairs.size(1)
            self.loaders[name] = (pairs[:, idx], label[idx], idx, pairs.size(1))
            if args.eval == "sampled":
                self.loaders[name] += (LinkLoader(split.data, sampler, edge_label_index=pairs[:, idx],
                                                  edge_label=label[idx], batch_size=args.eval_batch_size or 2 * args.batch_size,
                                                  shuffle=False),)

    @torch.no_grad()
    def scores(self, model, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        from pyg_spherical.minibatch import encode_seeds, num_seed_nodes

        pairs, label, _, total = self.loaders[name][:4]
        model.eval()
        try:
            if self.args.eval == "full":
                d = self.split.data
                z = model.encode(d.x.to(self.device), d.edge_index.to(self.device))
                s = model.decoder(z, pairs.to(self.device), sigmoid=False).cpu()
            else:
                out = []
                for b in self.loaders[name][4]:
                    b = b.to(self.device)
                    z = encode_seeds(model, b.x, b.edge_index, num_seed_nodes(b))
                    # logits: a large decoder scale saturates the sigmoid, tying the ranks
                    out.append(model.decoder(z, b.edge_label_index, sigmoid=False).cpu())
                s = torch.cat(out)
        finally:
            model.train()
        # the gathered shards are pairs 0, 1, ..., world * per - 1 (mod total): drop the padding
        s, lab = self.dist.all_gather(s), self.dist.all_gather(label)
        return s[:total], lab[:total]

    def evaluate(self, model) -> dict:
        from sklearn.metrics import average_precision_score, roc_auc_score

        out = {}
        for name in ("val", "test"):
            s, y = self.scores(model, name)
            out[f"{name}_auc"] = float(roc_auc_score(y.numpy(), s.numpy()))
            out[f"{name}_ap"] = float(average_precision_score(y.numpy(), s.numpy()))
        return out


# ---------------------------------------------------------------------------------------------
def run(args, dist: Dist) -> dict:
    """One training run (on every rank): set-up, the training loop, the result of rank 0."""
    r = setup(args, dist)
    t = train(args, dist, r)
    return report(args, dist, r, t)


def setup(args, dist: Dist) -> SimpleNamespace:
    """The graph and this rank's shard of the training edges, the model (same initial
    parameters on every rank), optimiser, neighbour sampler, link loader and evaluator."""
    from torch_geometric.loader import LinkLoader
    from torch_geometric.sampler import NegativeSampling

    from pyg_spherical import GaussianGCNEncoder, SphericalGCNEncoder, SphericalVGAE
    from pyg_spherical.minibatch import EncodeForward, RandomBatchSampler, shard_edges
    from pyg_spherical.sampling import check_fanout, make_neighbor_sampler

    device = args.device
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
    cfg = settings(args)
    if cfg["dim"] < 2:
        raise CLIError(f"--dim must be >= 2, got {cfg['dim']}")
    Enc = SphericalGCNEncoder if args.model == "svgae" else GaussianGCNEncoder
    torch.manual_seed(args.seed)  # same initial parameters on every rank
    enc = Enc(1, cfg["hidden"], cfg["dim"], cfg["dropout"])  # in_channels fixed below
    try:
        fan = check_fanout(args.num_neighbors, enc)
    except ValueError as e:
        raise CLIError(str(e))

    split = synthetic_split(args) if args.dataset == "synthetic" else pubmed_split(args, dist)
    data = split.data
    try:
        shard = shard_edges(split.train_pairs, dist.rank, dist.world)
    except ValueError as e:
        raise CLIError(str(e))
    split.info["graph_bytes"] = nbytes(data.x, data.edge_index)
    split.train_pairs = None
    steps_per_epoch = shard.size(1) // args.batch_size
    if steps_per_epoch == 0:
        raise CLIError(f"--batch-size {args.batch_size} is larger than this process's "
                       f"{shard.size(1)} training edges")
    total_steps = args.steps or ((args.epochs or 0) * steps_per_epoch) or 200
    dist.init(device)

    torch.manual_seed(args.seed)
    enc = Enc(data.num_features, cfg["hidden"], cfg["dim"], cfg["dropout"])
    model = SphericalVGAE(enc).to(device)
    fwd = EncodeForward(model)
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd = DDP(fwd, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    sampler = make_neighbor_sampler(data, fan, backend=args.sampler)
    loader = LinkLoader(data, sampler, edge_label_index=shard, neg_sampling=NegativeSampling("binary"),
                        batch_sampler=RandomBatchSampler(shard.size(1), args.batch_size))
    loader_bytes = nbytes(shard) * 2 + shard.size(1) * 8  # the loader's copy + shuffle permutation
    del shard
    evaluator = Evaluator(args, split, sampler, dist, device)
    torch.manual_seed(args.seed + 1000 * (dist.rank + 1))  # sampling / dropout streams per rank
    return SimpleNamespace(device=device, cfg=cfg, fan=fan, split=split, data=data, model=model,
                           fwd=fwd, opt=opt, sampler=sampler, loader=loader,
                           loader_bytes=loader_bytes, evaluator=evaluator,
                           steps_per_epoch=steps_per_epoch, total_steps=total_steps)


def train(args, dist: Dist, r: SimpleNamespace) -> SimpleNamespace:
    """The training loop: ``r.total_steps`` steps (the first ``--warmup`` untimed), an
    evaluation every ``--eval-every`` steps and at the end; timings, losses, memory."""
    from pyg_spherical.minibatch import link_batch_loss

    device, model, fwd, opt = r.device, r.model, r.fwd, r.opt
    t = SimpleNamespace(peak_setup=rss_mb())
    release_freed_memory()
    t.reset = reset_peak_rss()
    t.rss_start = current_rss_mb()
    bar = (progress_bar(args, r.total_steps, f"{MODELS[args.model]} N={r.split.info['nodes']}")
           if dist.main else None)
    t.sample_t, t.compute_t, t.sub_nodes, t.sub_edges = [], [], [], []
    t.loss_hist, t.evals, window = [], [], []
    t.best = {"val_auc": -1.0}
    t.train_wall = 0.0
    step = 0
    it = iter(r.loader)
    model.train()
    while step < r.total_steps:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(r.loader)
            batch = next(it)
        batch = batch.to(device)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = link_batch_loss(model, batch, r.data.num_nodes, encode_with=fwd)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        step += 1
        window.append(loss.detach())
        if step > args.warmup:
            t.sample_t.append(t1 - t0)
            t.compute_t.append(t2 - t1)
            t.train_wall += t2 - t0
            t.sub_nodes.append(batch.num_nodes)
            t.sub_edges.append(batch.edge_index.size(1))
        if bar is not None:
            bar.update(1)
        if (args.eval_every and step % args.eval_every == 0) or step == r.total_steps:
            mean_loss = dist.all_reduce(torch.stack(window).mean().reshape(1)) / dist.world
            t.loss_hist.append([step, float(mean_loss)])
            window = []
            e = r.evaluator.evaluate(model)
            e["step"] = step
            t.evals.append(e)
            if e["val_auc"] > t.best["val_auc"]:
                t.best = dict(e)
            if bar is not None:
                bar.set_postfix(loss=f"{float(mean_loss):.4f}", val_auc=f"{e['val_auc']:.4f}")
    if bar is not None:
        bar.close()
    t.peak_train = rss_mb()
    return t


def report(args, dist: Dist, r: SimpleNamespace, t: SimpleNamespace) -> dict:
    """The run's result (rates summed and parameters compared over the ranks); closes the
    process group."""
    timed = len(t.sample_t)
    step_t = [a + b for a, b in zip(t.sample_t, t.compute_t)]
    edges_proc = args.batch_size * timed / t.train_wall if timed else float("nan")
    total_rate = dist.all_reduce(torch.tensor([edges_proc], dtype=torch.float64))
    flat = torch.cat([p.detach().reshape(-1).cpu() for p in r.model.parameters()])
    every = dist.all_gather(flat.unsqueeze(0))
    max_diff = float((every - every[0]).abs().max())
    rss_all = dist.all_gather(torch.tensor([[t.peak_train, t.peak_setup]], dtype=torch.float64))
    r.fwd = r.loader = None  # DDP and loader state go before the process group does
    gc.collect()
    dist.close()

    mb = 1024.0 ** 2
    data, sampler, peak_train = r.data, r.sampler, t.peak_train
    graph_mb = r.split.info["graph_bytes"] / mb
    sampler_mb = (nbytes(getattr(sampler, "colptr", None), getattr(sampler, "perm", None))
                  + data.num_nodes * 8) / mb
    if getattr(sampler, "row", None) is not None and sampler.row.data_ptr() != data.edge_index.data_ptr():
        sampler_mb += nbytes(sampler.row) / mb
    loader_mb = r.loader_bytes / mb
    med = statistics.median
    return {
        "dataset": args.dataset, "model": args.model, "config": {**r.cfg, "batch_size": args.batch_size,
                                                                 "num_neighbors": r.fan, "steps": r.total_steps,
                                                                 "steps_per_epoch": r.steps_per_epoch,
                                                                 "eval": args.eval},
        "graph": r.split.info,
        "sampler": type(sampler).__name__,
        "world_size": dist.world,
        "backend": getattr(dist, "backend", None),
        "train": {
            "timed_steps": timed,
            "step_ms_median": 1000 * med(step_t) if timed else None,
            "step_ms_mean": 1000 * statistics.fmean(step_t) if timed else None,
            "sample_ms_median": 1000 * med(t.sample_t) if timed else None,
            "compute_ms_median": 1000 * med(t.compute_t) if timed else None,
            "edges_per_s_per_process": edges_proc,
            "edges_per_s_total": float(total_rate),
            "subgraph_nodes_median": med(t.sub_nodes) if timed else None,
            "subgraph_edges_median": med(t.sub_edges) if timed else None,
            "loss_history": t.loss_hist,
        },
        "eval": {"history": t.evals, "best": t.best, "final": t.evals[-1]},
        "memory": {
            "peak_rss_mb": peak_train, "peak_rss_setup_mb": t.peak_setup, "peak_reset": t.reset,
            "rss_start_of_training_mb": t.rss_start, "training_increment_mb": peak_train - t.rss_start,
            "graph_mb": graph_mb, "loader_edges_mb": loader_mb, "sampler_mb": sampler_mb,
            "peak_rss_minus_graph_mb": peak_train - graph_mb,
            "peak_rss_minus_graph_loader_sampler_mb": peak_train - graph_mb - loader_mb - sampler_mb,
            "per_rank_peak_rss_mb": rss_all[:, 0].tolist(),
        },
        "ddp_max_param_diff": max_diff,
    }


def default_name(args, world: int) -> str:
    """``<graph>_<model>_w<processes>_s<seed>``, the name in ``linkpred_large/`` (no ``.json``)."""
    size = "pubmed" if args.dataset == "PubMed" else f"n{args.nodes}"
    return f"{size}_{args.model}_w{world}_s{args.seed}"


@interruptible("nothing half-written: the result is written when the run ends")
def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    from pyg_spherical.sampling import pyg_sampler_available

    if args.sampler == "pyg" and not pyg_sampler_available():
        p.error("argument --sampler: pyg needs pyg-lib or torch-sparse, and neither is "
                "installed; use --sampler auto or torch")
    set_threads(args)
    dist = Dist()
    started = time.time()
    meta = run_metadata(args)
    try:
        res = run(args, dist)
    except CLIError as e:
        dist.close()
        if dist.main:
            fail(str(e))
        raise SystemExit(2)
    if not dist.main:  # only rank 0 prints and writes
        return 0
    meta["world_size"] = dist.world
    path = write_json(f"{FOLDER}/{args.out or default_name(args, dist.world)}",
                      {"meta": meta, **res}, started, out_dir(args))
    tr, ev, mem = res["train"], res["eval"]["best"], res["memory"]
    print(f"{MODELS[args.model]} on {args.dataset} N={res['graph']['nodes']} "
          f"({res['world_size']} process(es), {res['sampler']}): "
          f"test AUC {100 * ev['test_auc']:.2f} AP {100 * ev['test_ap']:.2f} (best val at step {ev['step']}); "
          + (f"{tr['step_ms_median']:.1f} ms/step (sample {tr['sample_ms_median']:.1f}), "
             f"{tr['edges_per_s_total']:.0f} train edges/s; " if tr["timed_steps"]
             else f"no timed steps (--steps <= --warmup {args.warmup}); ")
          + f"peak RSS {mem['peak_rss_mb']:.0f} MB, "
          f"minus graph {mem['peak_rss_minus_graph_mb']:.0f} MB")
    wrote(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
