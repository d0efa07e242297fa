#!/usr/bin/env python
r"""Link prediction on citation graphs: S-VGAE vs N-VGAE (paper section 5.4, Table 4, Figure 3).

Protocol (Appendix F.3): one hidden GCN layer of 32 units, Glorot init; 200 epochs (400 on
PubMed) of full-batch Adam; an 85 / 5 / 10 % undirected edge split; one uniformly sampled negative
pair per positive edge, resampled every epoch; node features as stored (no row normalisation);
the test AUC / AP reported at the epoch of best validation AUC; mean and standard error over runs.
The S-VGAE decodes with the learnable scale ``sigmoid(s z_i^T z_j)`` (``--decoder plain`` for the
formula without it). Defaults are the settings our ``--grid`` selected on validation AUC
(``SELECTED_SETTINGS`` in common.py); ``--paper-settings`` uses the paper's Table 7 instead.

Results go to ``runs/`` (ignored by git); ``--refresh`` writes the committed ``results/`` instead.

Examples::

    python benchmarks/linkpred.py --dataset Cora                 # both models, selected settings
    python benchmarks/linkpred.py --dataset Cora --paper-settings # the paper's Table 7 settings
    python benchmarks/linkpred.py --dataset CiteSeer --model svgae --runs 10
    python benchmarks/linkpred.py --dataset Cora --grid           # grid search, then --runs runs
    python benchmarks/linkpred.py --dataset Cora --speed          # epoch time at equal latent dims
    python benchmarks/linkpred.py --scaling                       # epoch time, Cora -> 10x PubMed
    python benchmarks/linkpred.py --dataset Cora --plot           # Figure 3 (3-d latents)

Run ``r`` (0-based) uses seed ``--seed + r`` for its edge split, initialisation and sampling; both
models of a run see the same split and are trained side by side, epoch by epoch, so that their
epoch times are measured under the same machine load.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    LATENT_OF,
    MODELS,
    NAMES,
    PAPER_TABLE4,
    REPO,
    RUNS,
    Parser,
    add_common_args,
    dataset_name,
    fmt,
    fmt_runs,
    interruptible,
    load_planetoid,
    out_dir,
    positive,
    probability,
    progress_bar,
    run_metadata,
    set_threads,
    settings,
    show_progress,
    shown,
    summarize,
    warn_ignored,
    write_json,
    wrote,
)

#: the paper's grid (Appendix F.3), extended with d = 128
GRID = {"lr": (0.01, 0.005, 0.001), "dropout": (0.0, 0.1, 0.2, 0.3, 0.4),
        "dim": (8, 16, 32, 64, 128)}


def build_parser() -> Parser:
    p = Parser(description=__doc__.split("\n\n")[0] + " See the module docstring for the protocol.",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=dataset_name, default="Cora",
                   help="Cora, CiteSeer or PubMed (default Cora)")
    p.add_argument("--model", choices=("svgae", "vgae", "pvgae", "both"), default="both",
                   help="S-VGAE, N-VGAE, P-VGAE (Power Spherical latent, the S-VGAE's settings) or S- and N-VGAE side by side (default both)")
    p.add_argument("--runs", type=positive(int), default=5, help="independent runs (default 5)")
    p.add_argument("--epochs", type=positive(int), default=None,
                   help="training epochs (default 200, PubMed 400, unless the selected setting "
                        "says otherwise)")
    p.add_argument("--lr", type=positive(float), default=None,
                   help="Adam learning rate (default: our selected setting per data set and "
                        "model; --paper-settings: Table 7)")
    p.add_argument("--dropout", type=probability, default=None,
                   help="dropout on every GCN input (default: selected / Table 7)")
    p.add_argument("--dim", type=positive(int), default=None,
                   help="latent dimension (default: selected / Table 7)")
    p.add_argument("--hidden", type=positive(int), default=32, help="hidden GCN units (default 32)")
    p.add_argument("--paper-settings", action="store_true",
                   help="use the paper's Table 7 lr / dropout / dim instead of our selected ones")
    p.add_argument("--decoder", choices=("scaled", "plain"), default="scaled",
                   help="S-VGAE decoder: sigmoid(s z_i^T z_j) with a learnable s (default), or "
                        "the plain sigmoid(z_i^T z_j); the N-VGAE always uses the plain one")
    p.add_argument("--scale-init", type=positive(float), default=None,
                   help="initial decoder scale s (default 5, the scale of the settings' search)")
    p.add_argument("--grid", action="store_true",
                   help="select lr x dropout x dim on validation AUC over the paper's grid plus "
                        "d = 128 (lr {0.01,0.005,0.001} x dropout {0,...,0.4} x dim "
                        "{8,16,32,64,128}), then run --runs runs of the selected setting; "
                        "resumable: finished points are kept in runs/")
    p.add_argument("--grid-lr", type=positive(float), nargs="+", default=None,
                   help="restrict the grid's learning rates (a documented subset, e.g. PubMed)")
    p.add_argument("--grid-dropout", type=probability, nargs="+", default=None,
                   help="restrict the grid's dropout values")
    p.add_argument("--grid-dim", type=positive(int), nargs="+", default=None,
                   help="restrict the grid's latent dims")
    p.add_argument("--grid-runs", type=positive(int), default=1,
                   help="runs per grid point, seeds --seed + 1000 + r (default 1)")
    p.add_argument("--grid-epochs", type=positive(int), nargs="+", default=None,
                   help="epoch budgets as a grid axis (e.g. 200 400 1000 2000): one run to the "
                        "largest budget gives every budget's best-validation point (default: "
                        "the protocol's epochs)")
    p.add_argument("--grid-hidden", type=positive(int), nargs="+", default=None,
                   help="hidden GCN widths as a grid axis (default: --hidden)")
    p.add_argument("--grid-scale-init", type=positive(float), nargs="+", default=None,
                   help="initial decoder scales as a grid axis (spherical models; default: "
                        "--scale-init)")
    p.add_argument("--grid-top", type=positive(int), default=None,
                   help="re-run the K best points of each model with --grid-top-runs seeds in "
                        "all and select on their mean validation AUC (a less noisy selection)")
    p.add_argument("--grid-top-runs", type=positive(int), default=3,
                   help="seeds per point in the --grid-top stage (default 3)")
    p.add_argument("--grid-datasets", type=dataset_name, nargs="+", default=None,
                   help="with --grid --grid-only: search each of these data sets and select the "
                        "one setting of best validation AUC averaged over them (how the "
                        "library's defaults are chosen)")
    p.add_argument("--grid-only", action="store_true",
                   help="with --grid: stop after the selection (no --runs runs of the pick); "
                        "lets the models' searches run in separate processes")
    p.add_argument("--speed", action="store_true",
                   help="also time training epochs of both models at equal dims {16,32,64}")
    p.add_argument("--scaling", action="store_true",
                   help="only time epochs on Cora, PubMed and a synthetic graph 10x PubMed's size")
    p.add_argument("--plot", action="store_true",
                   help="only draw the paper's Figure 3 (3-d latents of both models) as PNG")
    p.add_argument("--out", default=None, help="result name (default derived)")
    add_common_args(p)
    return p


def train_runs(args, data, cfgs: dict, seeds, device, bar=None, budgets=(), log=False) -> dict:
    """Train every model of ``cfgs`` for each seed, side by side; returns per-model run lists.

    ``budgets``: epoch counts at which each run also records its best-validation point so far
    (``run["at_budget"][b]``), so one run to the largest budget stands for every budget.
    ``log``: print one line per finished run (the progress of a log without a progress bar)."""
    from pyg_spherical.repro.linkpred import Graph, LinkPredRun, make_split

    out = {name: [] for name in cfgs}
    started = time.time()
    for i, seed in enumerate(seeds):
        graph = Graph(data, make_split(data, seed), device)
        trainers = {name: LinkPredRun(LATENT_OF[name], cfg, graph, device, seed)
                    for name, cfg in cfgs.items()}
        at_budget = {name: {} for name in cfgs}
        epochs = max(cfg["epochs"] for cfg in cfgs.values())
        for epoch in range(epochs):
            post = {}
            for name, tr in trainers.items():
                if epoch < tr.cfg["epochs"]:
                    tr.step()
                    post[name] = tr.evaluate(epoch)
                    if epoch + 1 in budgets:
                        at_budget[name][epoch + 1] = dict(tr.best)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({f"{NAMES[k]} val": f"{v:.3f}" for k, v in post.items()})
        for name, tr in trainers.items():
            res = tr.summary()
            res["seed"] = seed
            if budgets:
                res["at_budget"] = at_budget[name]
            out[name].append(res)
        if log:
            done = "; ".join(f"{NAMES[n]} test AUC {100 * r[-1]['test_auc']:.2f} (best epoch "
                             f"{r[-1]['epoch']})" for n, r in out.items())
            print(f"run {i + 1}/{len(seeds)} (seed {seed}): {done}; {time.time() - started:.0f} s",
                  flush=True)
    return out


# ---------------------------------------------------------------------------------------------
def grid_axes(args, base: dict) -> list[dict]:
    """The grid's points as setting overrides: lr x dropout x dim, and where asked for, hidden
    width and initial decoder scale (spherical models only) x epoch budgets (last, so that the
    points of one training run are adjacent)."""
    axes = {"lr": args.grid_lr or GRID["lr"], "dropout": args.grid_dropout or GRID["dropout"],
            "dim": args.grid_dim or GRID["dim"]}
    if args.grid_hidden:
        axes["hidden"] = args.grid_hidden
    if args.grid_scale_init and "scale_init" in base:
        axes["scale_init"] = args.grid_scale_init
    axes["epochs"] = sorted(args.grid_epochs or [base["epochs"]])
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


GRID_KEYS = ("lr", "dropout", "dim", "hidden", "scale_init", "epochs")


def grid_search(args, data, dataset, models, device) -> dict:
    """Every grid point for every model, ``--grid-runs`` seeds each; the point of best mean
    validation AUC is selected per model. With ``--grid-top K`` the K best points of each model
    are run again until they have ``--grid-top-runs`` seeds, and the selection is made on those
    means. One training run to the largest epoch budget yields every budget's point. Finished
    (point, seeds) rows are appended to a JSON-lines file under runs/ and skipped when the same
    search is started again (a resumable search)."""
    import json

    base = {m: settings(args, dataset, m) for m in models}
    log = ((Path(args.out_dir).resolve() if getattr(args, "out_dir", None) else RUNS) / "grid"
           / f"linkpred_grid_{dataset.lower()}.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row["row"]

    def key_of(m, cfg, seeds):
        return json.dumps({"model": m, "cfg": cfg, "seeds": seeds}, sort_keys=True)

    def run_points(stage_points, seeds, label):
        """``stage_points``: (model, cfg) pairs; trains what the log lacks, one run per
        (model, cfg without epochs) up to its largest budget; returns {(m, cfg json): row}."""
        groups = {}
        for m, cfg in stage_points:
            trunk = json.dumps({k: v for k, v in cfg.items() if k != "epochs"}, sort_keys=True)
            groups.setdefault((m, trunk), []).append(cfg)
        todo = [(m, cfgs) for (m, _), cfgs in groups.items()
                if any(key_of(m, c, seeds) not in done for c in cfgs)]
        bar = progress_bar(args, sum(max(c["epochs"] for c in cfgs) for _, cfgs in todo)
                           * len(seeds), f"grid {dataset} {label}")
        for m, cfgs in todo:
            budgets = sorted(c["epochs"] for c in cfgs)
            cfg = {**cfgs[0], "epochs": budgets[-1]}
            runs = train_runs(args, data, {m: cfg}, seeds, device, bar, budgets=budgets)[m]
            with log.open("a") as f:
                for c in cfgs:
                    at = [r["at_budget"][c["epochs"]] for r in runs]
                    row = {k: c[k] for k in GRID_KEYS if k in c}
                    row.update(val_auc=statistics.fmean(r["val_auc"] for r in at),
                               test_auc=statistics.fmean(r["test_auc"] for r in at),
                               best_epoch=statistics.fmean(r["epoch"] for r in at))
                    done[key_of(m, c, seeds)] = row
                    f.write(json.dumps({"key": key_of(m, c, seeds), "row": row}) + "\n")
        bar.close()

    seeds = [args.seed + 1000 + r for r in range(args.grid_runs)]
    points = [(m, {**base[m], **over}) for m in models for over in grid_axes(args, base[m])]
    run_points(points, seeds, "")
    table = {m: [done[key_of(m, c, seeds)] for mm, c in points if mm == m] for m in models}
    out = {"points": table, "seeds": seeds, "log": str(log)}
    best = {m: max(table[m], key=lambda r: r["val_auc"]) for m in models}
    if args.grid_top and args.grid_top_runs > args.grid_runs:
        # the top K points again, with the further seeds; their mean over all seeds decides
        extra = [args.seed + 1000 + r for r in range(args.grid_runs, args.grid_top_runs)]
        top = []
        for m in models:
            ranked = sorted(zip(table[m], [c for mm, c in points if mm == m]),
                            key=lambda rc: -rc[0]["val_auc"])[:args.grid_top]
            top += [(m, c) for _, c in ranked]
        run_points(top, extra, f"top {args.grid_top}")
        n0, n1 = len(seeds), len(extra)
        refined = {m: [] for m in models}
        for m, c in top:
            a, b = done[key_of(m, c, seeds)], done[key_of(m, c, extra)]
            row = {k: a[k] for k in GRID_KEYS if k in a}
            for k in ("val_auc", "test_auc", "best_epoch"):
                if k in a and k in b:  # rows of older searches have no best_epoch
                    row[k] = (n0 * a[k] + n1 * b[k]) / (n0 + n1)
            refined[m].append(row)
        out["top"] = {"k": args.grid_top, "seeds": seeds + extra, "points": refined}
        best = {m: max(refined[m], key=lambda r: r["val_auc"]) for m in models}
    out["selected"] = best
    return out


def joint_selection(grids: dict, models) -> dict:
    """The setting of best validation AUC averaged over data sets, per model: ``grids`` maps a
    data set to its :func:`grid_search` result; a point counts only where every data set has it."""
    out = {}
    for m in models:
        by_point = {}
        for ds, grid in grids.items():
            for row in grid["points"][m]:
                point = tuple((k, row[k]) for k in GRID_KEYS if k in row)
                by_point.setdefault(point, {})[ds] = row["val_auc"]
        rows = [{**dict(point), "val_auc": statistics.fmean(v.values()),
                 "val_auc_by_dataset": v}
                for point, v in by_point.items() if len(v) == len(grids)]
        out[m] = {"points": sorted(rows, key=lambda r: -r["val_auc"]),
                  "selected": max(rows, key=lambda r: r["val_auc"])}
    return out


def speed_test(args, data, device, dims=(16, 32, 64), epochs=60) -> list[dict]:
    """Epoch time of both models at equal latent dims, interleaved epoch by epoch."""
    from pyg_spherical.repro.linkpred import Graph, LinkPredRun, make_split

    graph = Graph(data, make_split(data, args.seed), device)
    rows = []
    for dim in dims:
        cfg = {"lr": 0.01, "dropout": 0.1, "dim": dim, "hidden": args.hidden, "epochs": epochs}
        trs = {m: LinkPredRun(LATENT_OF[m], cfg, graph, device, args.seed) for m in MODELS}
        for _ in range(epochs):
            for tr in trs.values():
                tr.step()
        ms = {m: 1000 * statistics.median(tr.times[5:]) for m, tr in trs.items()}
        rows.append({"dim": dim, "svgae_ms": ms["svgae"], "vgae_ms": ms["vgae"],
                     "ratio": ms["svgae"] / ms["vgae"], "epochs_timed": epochs - 5})
    return rows


# ---------------------------------------------------------------------------------------------
def synthetic_graph(num_nodes: int, num_edges: int, num_features: int, nnz_per_row: int,
                    seed: int):
    """A random graph with PubMed-like sparsity: ``num_edges`` undirected edges whose endpoints
    follow a heavy-tailed (Zipf-like) degree distribution, and sparse non-negative features."""
    from torch_geometric.data import Data
    from torch_geometric.utils import coalesce, to_undirected

    g = torch.Generator().manual_seed(seed)
    weights = (torch.arange(1, num_nodes + 1, dtype=torch.float64) ** -0.5)
    src = torch.multinomial(weights, num_edges, replacement=True, generator=g)
    dst = torch.randint(0, num_nodes, (num_edges,), generator=g)
    keep = src != dst
    ei = to_undirected(coalesce(torch.stack([src[keep], dst[keep]])), num_nodes=num_nodes)
    rows = torch.arange(num_nodes).repeat_interleave(nnz_per_row)
    cols = torch.randint(0, num_features, (num_nodes * nnz_per_row,), generator=g)
    vals = torch.rand(num_nodes * nnz_per_row, generator=g)
    x = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (num_nodes, num_features),
                                check_invariants=False).coalesce()
    return Data(x=x, edge_index=ei, num_nodes=num_nodes)


def epoch_times(data, device, dim, hidden, epochs, seed, sparse_x=None) -> dict:
    """Median training-epoch time of both models (interleaved) on the full graph ``data``."""
    from pyg_spherical import GaussianGCNEncoder, SphericalGCNEncoder, SphericalVGAE
    from pyg_spherical.repro.linkpred import seed_all

    x = (sparse_x if sparse_x is not None else data.x.to_sparse()).to(device)
    ei = data.edge_index.to(device)
    seed_all(seed)
    out = {}
    models = {}
    for name, Enc in (("svgae", SphericalGCNEncoder), ("vgae", GaussianGCNEncoder)):
        m = SphericalVGAE(Enc(x.size(1), hidden, dim, 0.1, cached=True)).to(device)
        models[name] = (m, torch.optim.Adam(m.parameters(), lr=0.01), [])
    for _ in range(epochs):
        for name, (m, opt, times) in models.items():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            z = m.encode(x, ei)
            loss = m.recon_loss(z, ei) + m.kl_loss() / data.num_nodes
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    for name, (_, _, times) in models.items():
        out[f"{name}_ms"] = 1000 * statistics.median(times[1:])
    out["ratio"] = out["svgae_ms"] / out["vgae_ms"]
    return out


def run_scaling(args, device) -> dict:
    rows = []
    bar = progress_bar(args, 4, "scaling")
    for name in ("Cora", "PubMed"):
        data = load_planetoid(args, name)
        r = epoch_times(data, device, 32, args.hidden, 8, args.seed)
        r.update(graph=name, nodes=data.num_nodes, undirected_edges=data.edge_index.size(1) // 2,
                 features=data.num_features)
        rows.append(r)
        bar.update(1)
    pub = load_planetoid(args, "PubMed")
    nnz = round((pub.x != 0).sum().item() / pub.num_nodes)
    for factor in (10,):
        syn = synthetic_graph(factor * pub.num_nodes, factor * pub.edge_index.size(1) // 2,
                              pub.num_features, nnz, args.seed)
        bar.update(1)
        r = epoch_times(syn, device, 32, args.hidden, 5, args.seed, sparse_x=syn.x)
        r.update(graph=f"synthetic {factor}x PubMed", nodes=syn.num_nodes,
                 undirected_edges=syn.edge_index.size(1) // 2, features=pub.num_features)
        rows.append(r)
        bar.update(1)
    bar.close()
    return {"dim": 32, "hidden": args.hidden, "rows": rows}


# ---------------------------------------------------------------------------------------------
def run_plot(args, data, device) -> dict:
    """Figure 3: latent spaces of N-VGAE (R^3) and S-VGAE (S^2, Hammer projection) on Cora."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyg_spherical.repro.linkpred import Graph, LinkPredRun, make_split
    from pyg_spherical.repro.plotting import plot_latent, save_figure

    cfgs = {m: dict(settings(args, args.dataset, m), dim=3)
            for m in MODELS}
    seed = args.seed
    graph = Graph(data, make_split(data, seed), device)
    trainers = {m: LinkPredRun(LATENT_OF[m], cfgs[m], graph, device, seed) for m in MODELS}
    bar = progress_bar(args, cfgs["svgae"]["epochs"], "figure 3")
    for epoch in range(cfgs["svgae"]["epochs"]):
        for tr in trainers.values():
            tr.step()
            tr.evaluate(epoch)
        bar.update(1)
    bar.close()
    z = {m: tr.model.embed(graph.x, graph.train).cpu() for m, tr in trainers.items()}
    labels = data.y.cpu().numpy()
    fig = plt.figure(figsize=(13.5, 4.8))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    zn = z["vgae"].numpy()
    cmap = plt.get_cmap("tab10")
    for c in np.unique(labels):
        sel = labels == c
        ax.scatter(zn[sel, 0], zn[sel, 1], zn[sel, 2], s=2, color=cmap(int(c)), label=str(c),
                   depthshade=False)
    ax.set_title("(a) N-VGAE, $\\mathbb{R}^3$")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_zlabel("$z_3$")
    ax2 = fig.add_subplot(1, 2, 2)
    plot_latent(z["svgae"], labels, ax=ax2, kind="hammer",
                title="(b) S-VGAE, $\\mathcal{S}^2$ (Hammer projection)")
    fig.suptitle(f"{args.dataset}: unsupervised 3-d latent spaces, coloured by the unseen "
                 "document class (paper Figure 3)")
    fig.subplots_adjust(top=0.84, wspace=0.12)
    name = args.out or f"linkpred_fig3_{args.dataset.lower()}"
    path = save_figure(fig, out_dir(args) / "figures" / f"{name}.png")
    plt.close(fig)
    best = {MODELS[m]: tr.best for m, tr in trainers.items()}
    return {"png": shown(path), "config": cfgs, "best": best}


# ---------------------------------------------------------------------------------------------
def print_table(dataset, summaries, cfgs, speed=None):
    paper = PAPER_TABLE4[dataset]
    print(f"\nLink prediction on {dataset} (test set at the epoch of best validation AUC; "
          "mean ± standard error, %)")
    head = f"{'model':8s} {'metric':6s} {'ours':>15s} {'paper':>13s} {'diff':>6s}  setting (lr, dropout, dim, epochs)   epoch"
    print(head)
    print("-" * len(head))
    for m, s in summaries.items():
        cfg = cfgs[m]
        for metric, key in (("AUC", "test_auc"), ("AP", "test_ap")):
            pm, pse = paper[m][metric] if m in paper else (float("nan"), None)
            ours = fmt_runs(s[key]["mean"], s[key]["se"], s.get("runs", 2))
            diff = s[key]["mean"] - pm
            setting = f"{cfg['lr']:g}, {cfg['dropout']:g}, {cfg['dim']}, {cfg['epochs']}"
            ep = f"{s['epoch_ms']:.1f} ms" if metric == "AUC" else ""
            ref, gap = (fmt(pm, pse, 1), f"{diff:+6.2f}") if m in paper else ("–", "–")
            print(f"{NAMES[m]:8s} {metric:6s} {ours:>15s} {ref:>13s} {gap:>6s}  "
                  f"{setting:35s} {ep}")
    if {"svgae", "vgae"} <= set(summaries):
        r = summaries["svgae"]["epoch_ms"] / summaries["vgae"]["epoch_ms"]
        print(f"epoch-time ratio S-VGAE / N-VGAE at these settings: {r:.2f}")
    if speed:
        print("equal-dim epoch times (ms):  " + ",  ".join(
            f"d={r['dim']}: S {r['svgae_ms']:.1f} / N {r['vgae_ms']:.1f} = {r['ratio']:.2f}x"
            for r in speed))


#: flags -> result-name parts: what differs from the default run is in the default name, so a
#: run with other flags never overwrites another's result
NAMED = ("lr", "dropout", "dim", "hidden", "epochs", "scale_init", "runs", "seed", "grid_lr",
         "grid_dropout", "grid_dim", "grid_runs", "grid_epochs", "grid_hidden", "grid_scale_init",
         "grid_top", "grid_top_runs")


def result_name(p: Parser, args) -> str:
    """``linkpred_<dataset>[_<model>][_plain_decoder][_table7][_<flag><value>...][_grid]
    [_speed]``, e.g. ``linkpred_cora`` (both models, 5 runs, selected settings),
    ``linkpred_cora_pvgae``, ``linkpred_cora_svgae_table7``, ``linkpred_cora_runs1``."""
    parts = [f"linkpred_{args.dataset.lower()}"]
    parts += [args.model] if args.model != "both" else []
    parts += ["plain_decoder"] if args.decoder == "plain" else []
    parts += ["table7"] if args.paper_settings else []
    for dest in NAMED:
        v = getattr(args, dest)
        if v != p.get_default(dest):
            vals = v if isinstance(v, list) else [v]
            parts.append(dest.replace("_", "") + "-".join(f"{x:g}" for x in vals))
    parts += ["grid"] if args.grid else []
    parts += ["speed"] if args.speed else []
    return "_".join(parts)


def check_args(p: Parser, args) -> None:
    """One ``error:`` line for flags that cannot work together, one ``warning:`` line for each
    flag the chosen mode ignores."""
    models = list(MODELS) if args.model == "both" else [args.model]
    spherical = [NAMES[m] for m in models if LATENT_OF[m] != "normal"]
    dims = ([args.dim] if args.dim is not None else []) + (args.grid_dim or [])
    if spherical and not (args.scaling or args.plot) and dims and min(dims) < 2:
        p.error(f"--dim {min(dims)}: the {' and '.join(spherical)} codes live on the sphere "
                "S^(dim-1), which needs dim >= 2")
    grid_flags = [a.dest for a in p._actions if a.dest.startswith("grid_")]
    run_flags = ["dataset", "model", "runs", "epochs", "lr", "dropout", "dim", "paper_settings",
                 "decoder", "scale_init", "grid", "speed", "plot"]
    if args.scaling:
        warn_ignored(p, args, run_flags + grid_flags, "with --scaling (it times epochs only)")
        return
    if args.plot:
        warn_ignored(p, args, ["model", "runs", "dim", "grid", "speed"] + grid_flags,
                     "with --plot (Figure 3: both models, dim 3, one run)")
        return
    if not args.grid:
        warn_ignored(p, args, grid_flags, "without --grid")
    if args.model == "vgae":
        warn_ignored(p, args, ["decoder", "scale_init"], "with --model vgae (the N-VGAE has the "
                     "plain decoder)")
    elif args.decoder == "plain":
        warn_ignored(p, args, ["scale_init"], "with --decoder plain (no scale)")


def write_scaling(args, device, meta, started) -> int:
    """``--scaling``: the epoch-time table over graph sizes, printed and written."""
    res = run_scaling(args, device)
    print("\nTraining-epoch time vs graph size (full batch, dim 32, hidden "
          f"{args.hidden}, median over epochs)")
    print(f"{'graph':26s} {'nodes':>8s} {'edges':>9s} {'S-VGAE ms':>10s} {'N-VGAE ms':>10s} {'ratio':>6s}")
    for r in res["rows"]:
        print(f"{r['graph']:26s} {r['nodes']:8d} {r['undirected_edges']:9d} "
              f"{r['svgae_ms']:10.1f} {r['vgae_ms']:10.1f} {r['ratio']:6.2f}")
    path = write_json(args.out or "linkpred_scaling", {"meta": meta, "scaling": res}, started,
                      out_dir(args))
    wrote(path)
    return 0


def write_joint_grid(args, device, meta, started) -> int:
    """``--grid-datasets``: one grid per data set, then the setting of best mean validation AUC
    over them, printed and written."""
    models = list(MODELS) if args.model == "both" else [args.model]
    grids = {ds: grid_search(args, load_planetoid(args, ds), ds, models, device)
             for ds in args.grid_datasets}
    joint = joint_selection(grids, models)
    for m in models:
        s = joint[m]["selected"]
        picked = " ".join(f"{k}={s[k]:g}" for k in GRID_KEYS if k in s)
        each = ", ".join(f"{ds} {100 * v:.2f}" for ds, v in s["val_auc_by_dataset"].items())
        print(f"joint grid: {NAMES[m]} selected {picked} (mean val AUC "
              f"{100 * s['val_auc']:.2f}: {each})")
    name = args.out or f"linkpred_grid_joint_{args.model}"
    path = write_json(name, {"meta": meta, "datasets": args.grid_datasets, "grids": grids,
                             "joint": joint}, started, out_dir(args))
    wrote(path, f" ({time.time() - started:.0f} s)")
    return 0


@interruptible("nothing half-written: a run writes its result when it ends (--grid keeps the "
               "points it finished under grid/ in the output folder, for the next call)")
def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.grid_datasets and not (args.grid and args.grid_only):
        p.error("--grid-datasets needs --grid --grid-only")
    check_args(p, args)
    set_threads(args)
    device = args.device
    started = time.time()
    meta = run_metadata(args)

    if args.scaling:
        return write_scaling(args, device, meta, started)
    if args.grid_datasets:
        return write_joint_grid(args, device, meta, started)

    data = load_planetoid(args, args.dataset)
    if args.plot:
        res = run_plot(args, data, device)
        wrote(REPO / res["png"])
        for m, b in res["best"].items():
            print(f"{m}: best val AUC {100 * b['val_auc']:.1f} at epoch {b['epoch']}, "
                  f"test AUC {100 * b['test_auc']:.1f} / AP {100 * b['test_ap']:.1f} (3-d latent)")
        write_json(args.out or f"linkpred_fig3_{args.dataset.lower()}", {"meta": meta, **res},
                   started, out_dir(args))
        return 0

    models = list(MODELS) if args.model == "both" else [args.model]
    payload = {"meta": meta, "dataset": args.dataset,
               "paper": {m: PAPER_TABLE4[args.dataset][m] for m in models
                         if m in PAPER_TABLE4[args.dataset]}}
    if args.grid:
        grid = grid_search(args, data, args.dataset, models, device)
        payload["grid"] = grid
        cfgs = {m: {**settings(args, args.dataset, m),
                    **{k: v for k, v in grid["selected"][m].items() if k in GRID_KEYS}}
                for m in models}
        for m in models:
            s = grid["selected"][m]
            picked = " ".join(f"{k}={s[k]:g}" for k in GRID_KEYS if k in s)
            print(f"grid: {NAMES[m]} selected {picked} (val AUC {100 * s['val_auc']:.2f})")
        if args.grid_only:
            name = args.out or f"linkpred_{args.dataset.lower()}_grid_{args.model}"
            path = write_json(name, payload, started, out_dir(args))
            wrote(path, f" ({time.time() - started:.0f} s)")
            return 0
    else:
        cfgs = {m: settings(args, args.dataset, m) for m in models}
    payload["config"] = cfgs

    seeds = [args.seed + r for r in range(args.runs)]
    epochs = max(c["epochs"] for c in cfgs.values())
    bar = progress_bar(args, len(seeds) * epochs, f"{args.dataset} {'+'.join(NAMES[m] for m in models)}")
    runs = train_runs(args, data, cfgs, seeds, device, bar, log=not show_progress(args))
    bar.close()
    summaries = {m: summarize(runs[m]) for m in models}
    payload["runs"] = runs
    payload["summary"] = summaries
    if {"svgae", "vgae"} <= set(models):
        payload["epoch_time_ratio"] = summaries["svgae"]["epoch_ms"] / summaries["vgae"]["epoch_ms"]
    speed = None
    if args.speed:
        speed = speed_test(args, data, device)
        payload["speed_equal_dims"] = speed
    print_table(args.dataset, summaries, cfgs, speed)
    path = write_json(args.out or result_name(p, args), payload, started, out_dir(args))
    wrote(path, f" ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
