#!/usr/bin/env python
r"""Semi-supervised MNIST with the stacked M1+M2 model: paper section 5.3, Table 3 and Figure 10.

Protocol (Appendix F.2; Kingma et al., 2014): M1 (x -> z1 -> x) and M2 (z1 -> y, (z1, y) -> z2,
(z2, y) -> z1) with one hidden layer of 500 ReLU units per MLP, Glorot init; trained end-to-end
with Adam (lr 1e-3), mini-batches of 100 unlabelled + 100 labelled images (dynamically
binarised), 100 class-balanced labels (10 per class) drawn from the 50k training images, the
remaining 49,900 used unlabelled; early stopping with a look-ahead of 50 epochs on the
validation accuracy (10k held-out training images, fixed binarisation), the best-validation
checkpoint is evaluated on the test set (fixed binarisation). z1 and z2 are each vMF ("S") or
Gaussian ("N"): --combos N+N S+S S+N. The classification loss is weighted by --alpha per labelled
image relative to its bound (see pyg_spherical/m1m2.py for the objective).

Examples::

    python benchmarks/mnist_m1m2.py --combos S+N --z1-dims 10 --z2-dims 10        # one run (resumes)
    python benchmarks/mnist_m1m2.py --max-epochs 300                               # N+N, S+S, S+N at 10/10
    python benchmarks/mnist_m1m2.py --z1-dims 5 10 50 --z2-dims 5 10 50            # full Table 3 grid
    python benchmarks/mnist_m1m2.py --eval-only                                    # table from checkpoints
    python benchmarks/mnist_m1m2.py --table-only                                   # table from the run JSONs
    python benchmarks/mnist_m1m2.py --figure --fig-combo S+N --fig-z1 10 --fig-z2 10   # Figure 10
    python benchmarks/mnist_m1m2.py --diagnose                                     # q(y|z1) vs generative classifier, z2 usage
    python benchmarks/mnist_m1m2.py --combos S+S --z2-dims 3                       # the improved S+S: z2 on S^2
    python benchmarks/mnist_m1m2.py --combos S+S --labelled-weight equal           # a protocol variant (tagged)

A protocol other than the default (``--labelled-weight`` other than ``kingma``, ``--alpha`` other
than 1, ``--z2-factors`` above 1) is tagged in every name it writes (``SS_z1-10_z2-10_lw-equal_s0``,
``mnist_m1m2_table3_lw-equal.json``), so it never mixes with or overwrites the default runs.

Checkpoints: ``checkpoints/mnist_m1m2/<combo>_z1-<d1>_z2-<d2>_s<seed>/{last,best}.pt``
(resumable; a resumed run keeps its lr and patience: other values are refused unless
``--use-checkpoint-settings``). Results: ``mnist_m1m2_<run>.json``, ``mnist_m1m2_table3.json``
and ``figures/mnist_m1m2_fig10_<run>.png`` under ``runs/`` (``results/`` with ``--refresh``); the
table aggregates the per-run files of the same folder.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    PAPER_TABLE3,
    REPO,
    Parser,
    add_mnist_run_args,
    add_protocol_args,
    args_for_json,
    build_m1m2,
    check_protocol_args,
    fail,
    fmt,
    fmt_runs,
    labelled_split,
    load_checkpoint,
    load_mnist_splits,
    load_weights,
    model_diagnostics,
    out_dir,
    positive,
    resume,
    run_metadata,
    set_threads,
    show_progress,
    shown,
    start_segment,
    tqdm_factory,
    write_json,
    wrote,
    z2_options_of,
)

COMBOS = ("N+N", "S+S", "S+N")
DIMS = (5, 10, 50)
SMOKE = {"on": False}
#: the run-name tag of a protocol that is not the paper-literal one (set by :func:`main`), so
#: that its checkpoints, results and table never mix with (or overwrite) the paper-literal runs
VARIANT = {"tag": ""}


def variant_tag(args) -> str:
    """``""`` for the default protocol, else e.g. ``"_lw-equal_z2x3"``."""
    parts = []
    if args.labelled_weight != "kingma":
        parts.append(f"lw-{args.labelled_weight}")
    if args.alpha != 1.0:
        parts.append(f"alpha-{args.alpha:g}")
    if getattr(args, "z2_factors", 1) > 1:
        parts.append(f"z2x{args.z2_factors}")
    return "".join(f"_{p}" for p in parts)


def run_name(combo, d1, d2, seed) -> str:
    return f"{combo.replace('+', '')}_z1-{d1}_z2-{d2}{VARIANT['tag']}_s{seed}"


def result_name(combo, d1, d2, seed) -> str:
    return ("smoke_" if SMOKE["on"] else "") + f"mnist_m1m2_{run_name(combo, d1, d2, seed)}"


def ckpt_dir(args, combo, d1, d2, seed) -> Path:
    return Path(args.checkpoint_dir) / (("smoke_" if SMOKE["on"] else "")
                                        + run_name(combo, d1, d2, seed))


# ------------------------------------------------------------------------------- training
def train_one(args, combo, d1, d2, seed, device):
    _, trainer, loader, lab = build_m1m2(args, combo, d1, d2, seed, device,
                                         checkpoint_dir=ckpt_dir(args, combo, d1, d2, seed))
    name = run_name(combo, d1, d2, seed)
    if resume(trainer, args, ("lr", "patience"), device, f"[{name}] "):
        print(f"[{name}] resumed at epoch {trainer.epoch}"
              + (f" (finished: {trainer.stop_reason})" if trainer.finished else ""), flush=True)

    def on_epoch_end(tr, rec):
        if not show_progress(args) and tr.epoch % args.print_every and not tr.finished:
            return
        print(f"[{name}] epoch {rec['epoch']:4d}  train: bound(l) {rec['train_elbo_l']:8.2f} "
              f"bound(u) {rec['train_elbo_u']:8.2f} ce {rec['train_ce']:.3f} acc(l) "
              f"{100 * rec['train_acc_l']:5.1f}  val acc {100 * rec['val_acc']:5.2f}  "
              f"(test {100 * rec['val_test_acc']:5.2f})  best {100 * tr.stopper.best:5.2f} @ "
              f"{tr.stopper.best_epoch + 1}  {rec['time_s']:.1f}s+{rec['eval_time_s']:.1f}s",
              flush=True)

    if not trainer.finished:
        start_segment(trainer, args)
        trainer.fit(loader, progress=tqdm_factory(args), max_new_epochs=args.max_new_epochs,
                    on_epoch_end=on_epoch_end)
    return trainer, lab


def load_best(args, combo, d1, d2, seed, device):
    from pyg_spherical.m1m2 import COMBINATIONS, M1M2

    path = ckpt_dir(args, combo, d1, d2, seed) / "best.pt"
    if not path.is_file():
        return None, None
    best = load_checkpoint(path, device, keys=("model", "epoch"))
    z1, z2 = COMBINATIONS[combo]
    model = M1M2(z1, d1, z2, d2, hidden=args.hidden, z2_options=z2_options_of(args, combo)).to(device)
    load_weights(model, best, path)
    model.eval()
    last_path = path.with_name("last.pt")
    last = load_checkpoint(last_path, "cpu") if last_path.is_file() else None
    return model, {"best": best, "last": last}


def evaluate_run(args, combo, d1, d2, seed, device, lab=None):
    """Test accuracy of the best-validation checkpoint; writes ``mnist_m1m2_<run>.json``."""
    from pyg_spherical.repro.training import training_segments

    started = time.time()
    model, ck = load_best(args, combo, d1, d2, seed, device)
    if model is None:
        return None
    d = args._data
    test_acc = float(model.accuracy(d["test_x"], d["test_y"]))
    val_acc = float(model.accuracy(d["val_x"], d["val_y"]))
    history = ck["last"]["history"] if ck["last"] else []
    stop = ck["last"].get("stop_reason") if ck["last"] else None
    times = [r["time_s"] for r in history]
    out = {
        "combo": combo, "z1_dim": d1, "z2_dim": d2, "seed": seed, "labels": args.labels,
        "alpha": args.alpha, "labelled_weight": args.labelled_weight,
        "z2_factors": args.z2_factors if z2_options_of(args, combo) else 1,
        "variant": VARIANT["tag"].lstrip("_") or "paper-literal",
        "test_acc": 100 * test_acc, "val_acc": 100 * val_acc,
        "paper": PAPER_TABLE3.get((d1, d2), {}).get(combo),
        "epochs": len(history), "best_epoch": int(ck["best"]["epoch"]),
        "stop_reason": stop, "finished": stop is not None, "max_epochs": args.max_epochs,
        "patience": args.patience,
        # what trained it, part by part (older runs: one "unrecorded" first part)
        "training": training_segments(ck["last"]) if ck["last"] else [],
        "train_time_s": float(sum(times)),
        "val_time_s": float(sum(r["eval_time_s"] for r in history)),
        "epoch_time_s": {"median": float(np.median(times)) if times else None,
                         "mean": float(np.mean(times)) if times else None},
        "labelled_indices": lab.tolist() if lab is not None else None,
        "history": [{k: r.get(k) for k in ("epoch", "train_elbo_l", "train_elbo_u", "train_ce",
                                           "train_acc_l", "val_acc", "val_test_acc", "time_s")}
                    for r in history],
        "meta": run_metadata(args_for_json(args)),
    }
    write_json(result_name(combo, d1, d2, seed), out, started, out_dir(args))
    return out


# ----------------------------------------------------------------------------------- table
def collect(args, configs, seeds):
    """The per-run JSONs of :func:`out_dir`, keyed ``(d1, d2, combo)``."""
    rows = {}
    for combo, d1, d2 in configs:
        for s in seeds:
            p = out_dir(args) / f"{result_name(combo, d1, d2, s)}.json"
            if p.is_file():
                rows.setdefault((d1, d2, combo), []).append(json.loads(p.read_text()))
    return rows


def stored_runs(args) -> tuple[list, list]:
    """``(configs, seeds)`` of every per-run JSON of this protocol variant in :func:`out_dir`,
    so that the table written after a subset of runs still holds all of them (it never drops
    runs that an earlier call wrote)."""
    import re

    prefix = ("smoke_" if SMOKE["on"] else "") + "mnist_m1m2_"
    pat = re.compile(re.escape(prefix) + r"(NN|SS|SN)_z1-(\d+)_z2-(\d+)"
                     + re.escape(VARIANT["tag"]) + r"_s(\d+)\.json")
    configs, seeds = set(), set()
    for p in out_dir(args).glob(prefix + "*.json"):
        m = pat.fullmatch(p.name)
        if m:
            configs.add((m[1][0] + "+" + m[1][1], int(m[2]), int(m[3])))
            seeds.add(int(m[4]))
    return sorted(configs), sorted(seeds)


def print_table(args, configs, seeds, started):
    more_configs, more_seeds = stored_runs(args)
    configs = sorted(set(configs) | set(more_configs))
    seeds = sorted(set(seeds) | set(more_seeds))
    rows = collect(args, configs, seeds)
    pairs = sorted({(d1, d2) for _, d1, d2 in configs})
    combos = [c for c in COMBOS if any(c == k for k, _, _ in configs)]
    if not VARIANT["tag"] and not SMOKE["on"]:
        # the paper's protocol: every cell of its table, the unmeasured ones marked as such
        pairs, combos = sorted(set(pairs) | set(PAPER_TABLE3)), list(COMBOS)
    print(f"\nTable 3 (M1+M2, {args.labels} labels, test accuracy %, ours vs paper; "
          "ours: mean ± std over runs, epochs reached in brackets, '+' = not finished)"
          + (f"; protocol variant {VARIANT['tag'].lstrip('_')}" if VARIANT["tag"] else ""))
    versus = [c for c in combos if c != "N+N"] if "N+N" in combos else []
    head = f"{'z1':>3s} {'z2':>3s} " + " ".join(f"{c + ' ours':>23s} {c + ' paper':>13s}"
                                                 for c in combos)
    if versus:
        head += "   " + "  ".join(f"{c + ' - N+N':>13s}" for c in versus)
    print(head)
    print("-" * len(head))
    table, missing, rows_vs = {}, [], {}
    for d1, d2 in pairs:
        parts = []
        ours_row = {c: float(np.mean([r["test_acc"] for r in rows[(d1, d2, c)]]))
                    for c in combos if rows.get((d1, d2, c))}
        paper_row = {c: PAPER_TABLE3[(d1, d2)][c][0] for c in combos
                     if PAPER_TABLE3.get((d1, d2), {}).get(c)}
        best_ours = max(ours_row, key=ours_row.get) if len(ours_row) == len(combos) else None
        best_paper = max(paper_row, key=paper_row.get) if len(paper_row) == len(combos) else None
        for c in combos:
            rs = rows.get((d1, d2, c), [])
            paper = PAPER_TABLE3.get((d1, d2), {}).get(c)
            if rs:
                acc = np.array([r["test_acc"] for r in rs])
                mean, std = float(acc.mean()), float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
                ep = ",".join(f"{r['epochs']}{'' if r['finished'] else '+'}" for r in rs)
                ours = f"{fmt_runs(mean, std, len(rs), 1)} [{ep}]"
                table.setdefault(f"{d1},{d2}", {})[c] = {
                    "mean": mean, "std": std, "n": len(rs), "paper": paper,
                    "runs": [{k: r[k] for k in ("seed", "test_acc", "val_acc", "epochs",
                                                 "best_epoch", "finished", "stop_reason",
                                                 "train_time_s", "epoch_time_s")} for r in rs]}
            elif paper is None:  # a cell beyond the paper's table, not run for this model
                ours = "-"
            else:
                ours = "not measured"
                missing.append(f"{d1},{d2} {c}")
            ref = fmt(*paper, 1) if paper else "-"
            parts.append(f"{ours + ('*' if c == best_ours else ' '):>23s} "
                         f"{ref + ('*' if c == best_paper else ' '):>13s}")
        line = f"{d1:3d} {d2:3d} " + " ".join(parts)
        if versus:
            # the paper's claim, per cell: a spherical z1 (S+S, S+N) ahead of N+N
            vs = {c: {k: (round(row[c] - row["N+N"], 2) if c in row and "N+N" in row else None)
                      for k, row in (("ours", ours_row), ("paper", paper_row))} for c in versus}
            rows_vs[f"{d1},{d2}"] = {"minus_nn": vs, "best": {"ours": best_ours, "paper": best_paper}}
            line += "   " + "  ".join(f"{_signed(vs[c]['ours']) + ' | ' + _signed(vs[c]['paper']):>13s}"
                                      for c in versus)
        print(line)
    summary = _ahead_summary(rows_vs)
    if versus:
        print("'*': the best model of the row (ours: once all three are measured).  "
              "X - N+N: accuracy difference in points, ours | paper ('?': no run of one of the two).")
        for who in ("ours", "paper"):
            got = summary[who]
            print(f"  {who:5s}: a spherical z1 ahead of N+N in {got['ahead']} of {got['compared']} "
                  f"compared cells" + (f" (not ahead: {', '.join(got['not_ahead'])})"
                                       if got["not_ahead"] else ""))
    payload = {"variant": VARIANT["tag"].lstrip("_") or "paper-literal", "ours": table,
               "versus_nn": rows_vs, "ahead_of_nn": summary, "not_measured": missing,
               "paper": {f"{d1},{d2}": PAPER_TABLE3.get((d1, d2)) for d1, d2 in pairs},
               "meta": run_metadata(args_for_json(args))}
    path = write_json(("smoke_" if SMOKE["on"] else "") + "mnist_m1m2_table3" + VARIANT["tag"], payload,
                      started, out_dir(args))
    wrote(path)


def _signed(diff: float | None) -> str:
    return "?" if diff is None else f"{diff:+.1f}"


def _ahead_summary(rows_vs: dict) -> dict:
    """How often a spherical z1 model (S+S, S+N) is ahead of N+N in the same (z1, z2) cell,
    ours and the paper's, over the cells where both numbers exist."""
    out = {}
    for who in ("ours", "paper"):
        diffs = [(f"{cell} {c}", d[who]) for cell, r in rows_vs.items()
                 for c, d in r["minus_nn"].items() if d[who] is not None]
        out[who] = {"compared": len(diffs), "ahead": sum(v > 0 for _, v in diffs),
                    "not_ahead": [k for k, v in diffs if v <= 0]}
    return out


# --------------------------------------------------------------------------------- figure
def make_figure(args, device):
    from matplotlib.figure import Figure

    from pyg_spherical.repro.plotting import image_grid, save_figure

    combo, d1, d2, seed = args.fig_combo, args.fig_z1, args.fig_z2, args.seed
    model, _ = load_best(args, combo, d1, d2, seed, device)
    if model is None:
        fail(f"no checkpoint for {run_name(combo, d1, d2, seed)} under "
             f"{args.checkpoint_dir}; train it first")
    d = args._data
    test_y = d["test_y"].cpu()
    # one test image per class (the first of each digit), then the next ones in file order
    first = [int(torch.nonzero(test_y == c)[0]) for c in range(10)]
    rest = [i for i in range(test_y.shape[0]) if i not in first][: max(0, args.fig_rows - 10)]
    idx = torch.as_tensor((first + rest)[: args.fig_rows])
    x_bin = d["test_x"].index_select(0, idx.to(d["test_x"].device))
    grey = d["test_grey"].index_select(0, idx)
    gen = model.analogies(x_bin).cpu()  # (R, 10, D), style inferred with the predicted class
    rows = torch.cat([grey.unsqueeze(1), gen], dim=1).reshape(-1, gen.shape[-1])
    fig = Figure(figsize=(6.6, 0.62 * len(idx) + 0.6))
    ax = fig.add_subplot(1, 1, 1)
    image_grid(rows, nrow=11, ax=ax,
               title=f"M1+M2 {combo}, dim z1 = {d1}, dim z2 = {d2}: test image | y = 0 ... 9")
    fig.tight_layout()
    fig_dir = out_dir(args) / ("smoke_figures" if SMOKE["on"] else "figures")
    path = save_figure(fig, fig_dir / f"mnist_m1m2_fig10_{run_name(combo, d1, d2, seed)}.png")
    wrote(path)


# ---------------------------------------------------------------------------- diagnostics
@torch.no_grad()
def diagnose(args, configs, seeds, device):
    """How each trained model classifies: M2's inference vs generative classifier, how much
    information z2 carries, how concentrated q(z1|x) and p(z1|y,z2) are, and how well a 5-NN
    on the z1 codes does (what M2 adds over M1). Test set, best checkpoints."""
    started = time.time()
    d = args._data
    x, y = d["test_x"], d["test_y"]
    train = d["train"]
    g = torch.Generator().manual_seed(args.eval_seed + 2)
    x_train = torch.bernoulli(train.x, generator=g).to(device)  # one fixed binarisation
    out = {}
    print("\nDiagnostics (test set, best checkpoints): accuracy of q(y|z1) and of M2's generative "
          "classifier argmax_y -L2(z1, y); KL(q(z2|z1,y)||p(z2)) at the predicted y (nats); "
          "spread = median kappa (vMF) or median std (Gaussian); 5-NN on the z1 codes (100 labels); "
          "active units of a Gaussian z2 (Var_x E[z2_u] > 0.01)")
    head = (f"{'run':22s} {'acc q':>6s} {'acc gen':>7s} {'agree':>6s} {'KL z2':>6s} "
            f"{'q(z1|x)':>9s} {'p(z1|y,z2)':>10s} {'q(z2|.)':>8s} {'kNN z1':>7s} {'bound U':>8s} "
            f"{'z2 units':>8s}")
    print(head)
    print("-" * len(head))
    for combo, d1, d2 in configs:
        for s in seeds:
            model, ck = load_best(args, combo, d1, d2, s, device)
            if model is None:
                continue
            torch.manual_seed(args.eval_seed)
            r = {"epoch": int(ck["best"]["epoch"]),
                 **model_diagnostics(model, x, y, x_train=x_train, y_train=train.y)}
            out[run_name(combo, d1, d2, s)] = r
            print(f"{run_name(combo, d1, d2, s):22s} {r['acc_q']:6.2f} {r['acc_generative']:7.2f} "
                  f"{r['agreement']:6.2f} {r['kl_z2_median']:6.2f} {r['q_z1_spread']:9.3g} "
                  f"{r['p_z1_spread']:10.3g} {r['q_z2_spread']:8.3g} {r['knn_z1_100']:7.2f} "
                  f"{r['test_bound_U']:8.2f} {r.get('z2_active_units', '-'):>8}")
    payload = {"runs": out, "meta": run_metadata(args_for_json(args))}
    path = write_json(("smoke_" if SMOKE["on"] else "") + "mnist_m1m2_diagnostics", payload,
                      started, out_dir(args))
    wrote(path)


# ------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--combos", nargs="+", default=list(COMBOS), metavar="C",
                   help="latent pairs z1+z2 among N+N S+S S+N (default: all three)")
    pos_int = positive(int)
    p.add_argument("--z1-dims", type=pos_int, nargs="+", default=[10],
                   help="dims of z1 (paper: 5 10 50)")
    p.add_argument("--z2-dims", type=pos_int, nargs="+", default=[10],
                   help="dims of z2 (paper: 5 10 50)")
    add_protocol_args(p)
    p.add_argument("--z2-factors", type=positive(int), default=1, metavar="K",
                   help="a vMF z2 as a product of K spheres, one concentration each (z2's dim "
                        "split in K equal factors of >= 2 coordinates; default 1: one sphere)")
    p.add_argument("--runs", type=pos_int, default=1,
                   help="runs per config (seeds seed..seed+runs-1)")
    p.add_argument("--max-epochs", type=pos_int, default=1000, help="hard cap on epochs per run")
    p.add_argument("--max-new-epochs", type=pos_int, default=None,
                   help="train at most this many more epochs per run in this call")
    p.add_argument("--patience", type=pos_int, default=50, help="look-ahead on validation accuracy")
    p.add_argument("--eval-only", action="store_true",
                   help="no training: evaluate the best checkpoints (all must exist)")
    p.add_argument("--no-eval", action="store_true", help="train only")
    p.add_argument("--table-only", action="store_true",
                   help="only print and write Table 3 from the per-run results of the output "
                        "folder (no data, no training)")
    p.add_argument("--figure", action="store_true",
                   help="only write Figure 10 from the checkpoint of --fig-combo/--fig-z1/--fig-z2")
    p.add_argument("--diagnose", action="store_true",
                   help="only print/write diagnostics of the trained runs (no training)")
    p.add_argument("--fig-combo", default="S+N", help="model of Figure 10 (default S+N)")
    p.add_argument("--fig-z1", type=pos_int, default=10)
    p.add_argument("--fig-z2", type=pos_int, default=10)
    p.add_argument("--fig-rows", type=pos_int, default=10, help="test images in Figure 10")
    add_mnist_run_args(p, REPO / "checkpoints" / "mnist_m1m2",
                       seed_help="seed of the model and the labelled draw (default 0)")
    p.add_argument("--print-every", type=pos_int, default=1,
                   help="without progress bars: log every N epochs")
    args = p.parse_args(argv)
    bad = [c for c in args.combos + [args.fig_combo] if c not in COMBOS]
    if bad:
        p.error(f"unknown combination(s) {bad}; choose among {list(COMBOS)}")
    # dims >= 2 where the latent is a vMF (the circle S^1 at least); a Gaussian takes any
    runs = [(c, args.z1_dims, args.z2_dims) for c in args.combos]
    for c, z1, z2 in runs + ([(args.fig_combo, [args.fig_z1], [args.fig_z2])] if args.figure else []):
        for which, dims, kind in (("z1", z1, c[0]), ("z2", z2, c[2])):
            if kind == "S" and min(dims) < 2:
                p.error(f"--{which}-dims {min(dims)}: the {c} run's {which} is spherical (vMF), "
                        "which needs dim >= 2 (the circle S^1)")
    check_protocol_args(p, args)
    if args.z2_factors > 1:
        for d in args.z2_dims:
            if d % args.z2_factors or d // args.z2_factors < 2:
                p.error(f"--z2-factors {args.z2_factors} must split every z2 dim into equal "
                        f"factors of >= 2 coordinates, got z2 dim {d}")
    if args.eval_only and args.no_eval:
        p.error("--eval-only and --no-eval exclude each other")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    set_threads(args)
    torch.set_flush_denormal(True)  # denormal activations/gradients slow CPU matmuls several-fold
    device = args.device
    SMOKE["on"] = bool(args.train_subset or args.eval_subset)
    VARIANT["tag"] = variant_tag(args)
    if args.table_only:
        print_table(args, [], [], started)
        return
    args._data = load_mnist_splits(args, device)
    seeds = list(range(args.seed, args.seed + args.runs))
    configs = [(c, d1, d2) for d1 in args.z1_dims for d2 in args.z2_dims for c in args.combos]
    if args.figure:  # figure only, from an existing checkpoint
        make_figure(args, device)
        return
    if args.diagnose:
        diagnose(args, configs, seeds, device)
        return
    if args.eval_only:
        missing = [ckpt_dir(args, *c, s) / "best.pt" for c in configs for s in seeds
                   if not (ckpt_dir(args, *c, s) / "best.pt").is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            fail(f"--eval-only: no checkpoint {shown(missing[0])}{more}; train the run first")
    for combo, d1, d2 in configs:
        for s in seeds:
            if args.eval_only:
                lab = labelled_split(args._data["train"], args.labels, s)[0]
            else:
                _, lab = train_one(args, combo, d1, d2, s, device)
            if args.no_eval:
                continue
            r = evaluate_run(args, combo, d1, d2, s, device, lab)
            if r is not None:
                print(f"[{run_name(combo, d1, d2, s)}] test accuracy {r['test_acc']:.2f}% "
                      f"(val {r['val_acc']:.2f}%, best epoch {r['best_epoch']} of "
                      f"{r['epochs']}, {r['stop_reason'] or 'not finished'}; "
                      f"{r['epoch_time_s']['median']:.1f}s/epoch)", flush=True)
    if not args.no_eval:
        print_table(args, configs, seeds, started)


if __name__ == "__main__":
    main()
