#!/usr/bin/env python
r"""MNIST S-VAE vs N-VAE: paper section 5.2, Table 1 and Figures 2, 7, 8, 9.

Protocol (Appendix F.1, all flags): MLP encoder [256, 128] / decoder [128, 256], ReLU, Glorot
init, Bernoulli likelihood; dynamically binarised MNIST (50k train / 10k validation / 10k test);
Adam lr 1e-3, batch 64, linear KL warm-up over 100 epochs, early stopping with a look-ahead of 50
epochs on the validation ELBO (not before the warm-up has ended), best checkpoint kept.
Test metrics: ELBO, RE = E_q[log p(x|z)], KL, and LL = importance-sampled log p(x) with 500
samples (Burda et al., 2016), all in nats per test image (fixed seeded binarisation).

Note the paper's convention: the S-VAE with "d" latent dimensions lives on S^{d-1} in R^d
(``--latent vmf --dim d``). ``--latent power`` trains the P-VAE: a Power Spherical posterior
(De Cao & Aziz, 2020) with the same uniform prior, on the same sphere; ``--latents`` picks the
families of ``--table1`` and ``--speed`` (default: normal vmf). ``--table1 --intrinsic`` also
trains the S-VAE (and the P-VAE, if in ``--latents``) on S^d (latent_dim d + 1) and prints it
beside the paper's "d" row: measured here, the paper's S-VAE numbers at d = 2 (KL 7.28,
LL -132.5) are matched by S^2, while the circle S^1 is ~17 nats worse (see the report).

Examples::

    python benchmarks/mnist_vae.py --latent vmf --dim 5                 # one run (resumes)
    python benchmarks/mnist_vae.py --latent vmf --dim 5 --max-new-epochs 50   # time slice
    python benchmarks/mnist_vae.py --table1 --dims 2 5 10 --runs 1     # train + table
    python benchmarks/mnist_vae.py --latent power --dim 10               # one P-VAE run
    python benchmarks/mnist_vae.py --table1 --dims 20 40 --latents normal vmf power --intrinsic
    python benchmarks/mnist_vae.py --table1 --eval-only               # table from checkpoints
    python benchmarks/mnist_vae.py --figures                          # Figures 2, 7, 8, 9
    python benchmarks/mnist_vae.py --ll-estimators --dims 20 40 --intrinsic   # LL estimator check

Checkpoints: ``checkpoints/mnist_vae/<latent>_d<dim>_s<seed>/{last,best}.pt`` (resumable; a
resumed run keeps its lr, patience and warm-up: other values are refused unless
``--use-checkpoint-settings``). Results: ``mnist_vae_<latent>_d<dim>_s<seed>.json``,
``mnist_table1.json`` and ``figures/mnist_*.png`` under ``runs/`` (``results/`` with
``--refresh``); the tables aggregate the per-run files of the same folder.

``--ll-estimators`` evaluates the best checkpoints of ``--latents`` x ``--dims`` (spherical
latents at ``d + 1`` with ``--intrinsic``) with the protocol's importance-sampled LL and, from the
same draws, with the one-decode estimator of the authors' TensorFlow example
(:func:`pyg_spherical.repro.evaluation.ll_estimators`), and writes
``mnist_ll_estimators.json``: how far each sits above the ELBO, beside the paper's LL - ELBO.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    PAPER_TABLE1,
    REPO,
    VAE_LATENTS,
    VAE_NAMES,
    VAE_SPHERICAL,
    Parser,
    add_mnist_run_args,
    args_for_json,
    fail,
    fmt,
    fmt_runs,
    load_checkpoint,
    load_mnist,
    load_weights,
    non_negative,
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
)

TABLE1_DIMS = (2, 5, 10, 20, 40)
METRICS = ("LL", "ELBO", "RE", "KL")


# --------------------------------------------------------------------------------- helpers
def run_name(latent: str, dim: int, seed: int) -> str:
    return f"{latent}_d{dim}_s{seed}"


def ckpt_dir(args, latent, dim, seed) -> Path:
    return Path(args.checkpoint_dir) / run_name(latent, dim, seed)


SMOKE = {"on": False}  # subset runs write smoke_* files instead of the real result files


def result_name(latent, dim, seed) -> str:
    return ("smoke_" if SMOKE["on"] else "") + f"mnist_vae_{run_name(latent, dim, seed)}"


def load_data(args, device):
    from pyg_spherical.repro.datasets import binarize_fixed

    data = load_mnist(args)
    train = data["train"]
    if args.train_subset:
        train = train._replace(x=train.x[: args.train_subset], y=train.y[: args.train_subset])
    val_x = binarize_fixed(data["val"].x, seed=args.eval_seed)
    test_x = binarize_fixed(data["test"].x, seed=args.eval_seed + 1)
    if args.eval_subset:
        val_x = val_x[: args.eval_subset]
        test_x, test_y = test_x[: args.eval_subset], data["test"].y[: args.eval_subset]
    else:
        test_y = data["test"].y
    return {"train": train, "val_x": val_x.to(device), "test_x": test_x.to(device),
            "test_y": test_y, "test_grey": data["test"].x}


def elbo_terms(model, x, batch_size=2000, seed=None):
    """Mean ELBO, RE, KL over ``x`` (single-sample RE); fixed noise when ``seed`` is given."""
    sums = torch.zeros(3, dtype=torch.float64, device=x.device)
    with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device],
                               enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for xb in x.split(batch_size):
            elbo, rec, kl = model.elbo(xb)
            sums += torch.stack([elbo.sum(), rec.sum(), kl.sum()]).double()
    m = (sums / x.shape[0]).tolist()
    return {"elbo": m[0], "rec": m[1], "kl": m[2]}


def build(args, latent, dim, seed, device):
    from pyg_spherical.repro.datasets import DynamicBinarizedLoader
    from pyg_spherical.repro.training import EarlyStopping, Trainer, linear_warmup
    from pyg_spherical.vae import VAE

    torch.manual_seed(seed)
    model = VAE(latent=latent, dim=dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    def train_step(xb, epoch):
        beta = linear_warmup(epoch, args.warmup)
        loss, rec, kl = model.loss(xb, beta)
        return {"loss": loss, "elbo": rec - kl, "kl": kl}

    val_x = args._data["val_x"]

    def evaluate(m, epoch):
        return elbo_terms(m, val_x, seed=args.eval_seed)

    stopper = EarlyStopping(patience=args.patience, mode="max", min_epochs=args.warmup)
    trainer = Trainer(model, opt, train_step, evaluate, monitor="elbo", early_stopping=stopper,
                      max_epochs=args.max_epochs, checkpoint_dir=ckpt_dir(args, latent, dim, seed))
    train = args._data["train"]
    loader = DynamicBinarizedLoader(train.x, batch_size=args.batch_size, shuffle=True, seed=seed,
                                    device=device)
    return model, trainer, loader


def train_one(args, latent, dim, seed, device):
    """Train (or resume) one run; returns the trainer (with the best weights loaded)."""
    model, trainer, loader = build(args, latent, dim, seed, device)
    name = run_name(latent, dim, seed)
    if resume(trainer, args, ("lr", "patience", "warmup"), device, f"[{name}] "):
        print(f"[{name}] resumed at epoch {trainer.epoch}"
              + (f" (finished: {trainer.stop_reason})" if trainer.finished else ""), flush=True)
    progress = tqdm_factory(args)

    def on_epoch_end(tr, rec):
        if not show_progress(args) or tr.epoch % args.print_every == 0 or tr.finished:
            print(f"[{name}] epoch {rec['epoch']:4d}  train ELBO {rec['train_elbo']:8.2f}  "
                  f"val ELBO {rec['val_elbo']:8.2f} (RE {rec['val_rec']:8.2f}, KL "
                  f"{rec['val_kl']:6.2f})  best {tr.stopper.best:8.2f} @ {tr.stopper.best_epoch + 1}"
                  f"  {rec['time_s']:.1f}s+{rec['eval_time_s']:.1f}s", flush=True)

    if not trainer.finished:
        start_segment(trainer, args)
        trainer.fit(loader, progress=progress, max_new_epochs=args.max_new_epochs,
                    on_epoch_end=on_epoch_end)
    return model, trainer


def load_best_model(args, latent, dim, seed, device):
    """The best checkpointed model of a run, or ``None`` if there is none."""
    from pyg_spherical.vae import VAE

    path = ckpt_dir(args, latent, dim, seed) / "best.pt"
    if not path.is_file():
        return None, None
    best = load_checkpoint(path, device, keys=("model", "epoch", "record"))
    model = VAE(latent=latent, dim=dim).to(device)
    load_weights(model, best, path)
    model.eval()
    last_path = path.with_name("last.pt")
    last = load_checkpoint(last_path, "cpu") if last_path.is_file() else None
    return model, {"best": best, "last": last}


def evaluate_run(args, latent, dim, seed, device, trainer=None, model=None):
    """Test-set metrics of a run's best checkpoint; writes ``mnist_vae_<run>.json``."""
    from pyg_spherical.repro.evaluation import posterior_summary
    from pyg_spherical.repro.training import training_segments

    started = time.time()
    model, ck = load_best_model(args, latent, dim, seed, device)
    if model is None:
        return None
    history = ck["last"]["history"] if ck["last"] else []
    stop_reason = ck["last"].get("stop_reason") if ck["last"] else None
    test_x = args._data["test_x"]
    t0 = time.perf_counter()
    terms = elbo_terms(model, test_x, seed=args.eval_seed + 2)
    torch.manual_seed(args.eval_seed + 3)
    ll = model.log_likelihood(test_x, num_samples=args.ll_samples)
    ll_time = time.perf_counter() - t0
    epoch_times = [r["time_s"] for r in history]
    out = {
        "latent": latent, "dim": dim, "seed": seed,
        "posterior": posterior_summary(model, test_x),
        "test": {"LL": float(ll.double().mean()), "ELBO": terms["elbo"], "RE": terms["rec"],
                 "KL": terms["kl"], "LL_sem": float(ll.double().std() / math.sqrt(ll.numel()))},
        "paper": {k: PAPER_TABLE1.get(latent, {}).get(dim, {}).get(k) for k in METRICS},
        "epochs": len(history),
        "best_epoch": int(ck["best"]["epoch"]),
        "best_val": ck["best"]["record"],
        "stop_reason": stop_reason,
        "finished": stop_reason is not None,
        # what trained it, part by part (older runs: one "unrecorded" first part);
        # "meta" below describes this evaluation
        "training": training_segments(ck["last"]) if ck["last"] else [],
        "max_epochs": args.max_epochs,
        "train_time_s": float(sum(epoch_times)),
        "val_time_s": float(sum(r["eval_time_s"] for r in history)),
        "epoch_time_s": {"median": float(np.median(epoch_times)) if epoch_times else None,
                         "mean": float(np.mean(epoch_times)) if epoch_times else None},
        "eval_time_s": ll_time, "ll_samples": args.ll_samples,
        "history": [{k: r[k] for k in ("epoch", "train_elbo", "val_elbo", "val_rec", "val_kl",
                                        "time_s")} for r in history],
        "meta": run_metadata(args_for_json(args)),
    }
    write_json(result_name(latent, dim, seed), out, started, out_dir(args))
    return out


def ll_estimator_check(args, device):
    """Both LL estimators of :func:`~pyg_spherical.repro.evaluation.ll_estimators` on the best
    checkpoints, beside the ELBO and the paper's numbers; writes ``mnist_ll_estimators.json``."""
    from pyg_spherical.repro.evaluation import ll_estimators

    started = time.time()
    configs = [(lat, d, d + 1 if args.intrinsic and lat in VAE_SPHERICAL else d)
               for d in args.dims for lat in args.latents]
    test_x = args._data["test_x"]
    rows = []
    print(f"LL estimators on {test_x.shape[0]} test images, {args.ll_samples} samples "
          "(gaps: estimate - ELBO; paper: its LL - ELBO)")
    print(f"{'run':>16s} {'ELBO':>8s} {'IS LL':>8s} {'one-decode':>10s} {'gap IS':>7s} "
          f"{'gap 1-dec':>9s} {'paper LL':>8s} {'paper gap':>9s}")
    for lat, d, dim in configs:
        model, _ = load_best_model(args, lat, dim, args.seed, device)
        if model is None:
            print(f"{run_name(lat, dim, args.seed):>16s}  (no checkpoint: skipped)")
            continue
        elbo = elbo_terms(model, test_x, seed=args.eval_seed + 2)["elbo"]
        torch.manual_seed(args.eval_seed + 3)
        is_ll, one = (float(t.double().mean()) for t in ll_estimators(model, test_x,
                                                                       args.ll_samples))
        paper = PAPER_TABLE1["vmf" if lat in VAE_SPHERICAL else lat].get(d, {})
        p_ll, p_elbo = (paper[k][0] if k in paper else None for k in ("LL", "ELBO"))
        p_gap = None if p_ll is None else p_ll - p_elbo
        rows.append({"latent": lat, "dim": dim, "paper_d": d, "seed": args.seed, "ELBO": elbo,
                     "is_ll": is_ll, "one_decode": one, "gap_is": is_ll - elbo,
                     "gap_one_decode": one - elbo, "paper_LL": p_ll, "paper_ELBO": p_elbo,
                     "paper_gap": p_gap})
        print(f"{run_name(lat, dim, args.seed):>16s} {elbo:8.2f} {is_ll:8.2f} {one:10.2f} "
              f"{is_ll - elbo:7.2f} {one - elbo:9.2f} "
              f"{'-' if p_ll is None else f'{p_ll:.2f}':>8s} "
              f"{'-' if p_gap is None else f'{p_gap:.2f}':>9s}", flush=True)
    if not rows:
        fail("--ll-estimators: none of the runs has a best checkpoint; train them first")
    out = {"images": int(test_x.shape[0]), "ll_samples": args.ll_samples, "runs": rows,
           "meta": run_metadata(args_for_json(args))}
    write_json(("smoke_" if SMOKE["on"] else "") + "mnist_ll_estimators", out, started,
               out_dir(args))


# ----------------------------------------------------------------------------------- table
def collect(args, dims, seeds):
    """Read the per-run JSONs (of :func:`out_dir`) into ``{latent: {dim: [test dicts]}}``."""
    rows = {lat: {} for lat in VAE_LATENTS}
    runs = {lat: {} for lat in VAE_LATENTS}
    for lat in VAE_LATENTS:
        for d in dims:
            for s in seeds:
                p = out_dir(args) / f"{result_name(lat, d, s)}.json"
                if p.is_file():
                    r = json.loads(p.read_text())
                    rows[lat].setdefault(d, []).append(r["test"])
                    runs[lat].setdefault(d, []).append(
                        {k: r[k] for k in ("seed", "epochs", "best_epoch", "finished",
                                           "stop_reason", "train_time_s", "epoch_time_s",
                                           "eval_time_s")})
    return rows, runs


def summarize(rows):
    out = {}
    for lat, by_d in rows.items():
        for d, tests in by_d.items():
            cell = {}
            for k in METRICS:
                v = np.array([t[k] for t in tests], dtype=float)
                cell[k] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
            cell["n"] = len(tests)
            out.setdefault(lat, {})[d] = cell
    return out


def print_table(summary, runs, dims, latents=("normal", "vmf")):
    print("\nTable 1 (MNIST test set, nats; ours vs paper, mean ± std over runs)")
    head = f"{'model':6s} {'d':>3s} " + " ".join(f"{m + ' ours':>16s} {m + ' paper':>16s}"
                                                  for m in METRICS) + "  runs  epochs"
    print(head)
    print("-" * len(head))
    for lat in latents:
        for d in dims:
            cell = summary.get(lat, {}).get(d)
            paper = PAPER_TABLE1.get(lat, {}).get(d, {})
            parts = []
            for m in METRICS:
                ours = fmt_runs(*cell[m], cell["n"]) if cell else "-"
                ref = fmt(*paper[m]) if m in paper else "-"
                parts.append(f"{ours:>16s} {ref:>16s}")
            info = runs.get(lat, {}).get(d, [])
            ep = ",".join(f"{r['epochs']}{'' if r['finished'] else '+'}" for r in info) or "-"
            print(f"{VAE_NAMES[lat]:6s} {d:3d} " + " ".join(parts) + f"  {cell['n'] if cell else 0:4d}  {ep}")
    print("('+' after the epoch count: run not finished, i.e. best checkpoint so far.)")


def print_intrinsic(summary, runs, dims, lat="vmf"):
    """S-VAE (or P-VAE) on S^d (latent_dim d + 1, intrinsic dimension d) beside the paper's "d"
    rows of the S-VAE."""
    print(f"\n{VAE_NAMES[lat]} by intrinsic dimension: ours on S^d (latent_dim d+1) vs the paper's "
          "S-VAE at d (and our N-VAE in R^d)")
    head = (f"{'d':>3s} {'sphere':>6s} " + " ".join(f"{m + ' ours':>16s} {m + ' paper':>16s}"
                                                    for m in METRICS)
            + f" {'N-VAE LL (ours)':>16s}  epochs")
    print(head)
    print("-" * len(head))
    for d in dims:
        cell = summary.get(lat, {}).get(d + 1)
        if cell is None:
            continue
        paper = PAPER_TABLE1["vmf"].get(d, {})
        parts = [f"{fmt_runs(*cell[m], cell['n']):>16s} "
                 f"{fmt(*paper[m]) if m in paper else '-':>16s}" for m in METRICS]
        ncell = summary.get("normal", {}).get(d)
        nll = fmt_runs(*ncell["LL"], ncell["n"]) if ncell else "-"
        info = runs.get(lat, {}).get(d + 1, [])
        ep = ",".join(f"{r['epochs']}{'' if r['finished'] else '+'}" for r in info) or "-"
        print(f"{d:3d} {'S^' + str(d):>6s} " + " ".join(parts) + f" {nll:>16s}  {ep}")


def stored_runs(args) -> tuple[set, set]:
    """``(runs, seeds)``: the ``(latent, dim)`` pairs and seeds of every per-run JSON in
    :func:`out_dir`, so that the table written after a subset of runs still holds all of them
    (it never drops rows that an earlier call wrote)."""
    import re

    prefix = ("smoke_" if SMOKE["on"] else "") + "mnist_vae_"
    pat = re.compile(re.escape(prefix) + r"(" + "|".join(VAE_LATENTS) + r")_d(\d+)_s(\d+)\.json")
    runs, seeds = set(), set()
    for p in out_dir(args).glob(prefix + "*.json"):
        m = pat.fullmatch(p.name)
        if m:
            runs.add((m[1], int(m[2])))
            seeds.add(int(m[3]))
    return runs, seeds


def write_table(args, dims, seeds, started):
    stored, more_seeds = stored_runs(args)
    seeds = sorted(set(seeds) | more_seeds)
    # Table 1's rows are the paper's dims; a spherical run at d + 1 is the intrinsic row of d.
    dims = sorted(set(dims) | {d for _, d in stored if d in TABLE1_DIMS})
    latents = [lat for lat in VAE_LATENTS if lat in args.latents or any(lat == k for k, _ in stored)]
    intrinsic = args.intrinsic or any(lat in VAE_SPHERICAL and d - 1 in dims for lat, d in stored)
    all_dims = sorted(set(dims) | ({d + 1 for d in dims} if intrinsic else set()))
    rows, runs = collect(args, all_dims, seeds)
    summary = summarize(rows)
    print_table(summary, runs, dims, latents)
    spherical = [lat for lat in VAE_SPHERICAL if lat in latents]
    if intrinsic:
        for lat in spherical:
            print_intrinsic(summary, runs, dims, lat)
    payload = {
        "convention": "S-VAE latent_dim d = the sphere S^{d-1} in R^d; 'intrinsic' holds the "
                      "S-VAE with latent_dim d+1 (S^d) keyed by d",
        "ours": {lat: {str(d): c for d, c in by.items() if d in dims}
                 for lat, by in summary.items()},
        "intrinsic": {str(d): summary["vmf"][d + 1] for d in dims
                      if intrinsic and d + 1 in summary.get("vmf", {})},
        **({"intrinsic_power": {str(d): summary["power"][d + 1] for d in dims
                                if intrinsic and d + 1 in summary.get("power", {})}}
           if "power" in spherical else {}),
        "paper": {lat: {str(d): PAPER_TABLE1[lat][d] for d in dims if d in PAPER_TABLE1[lat]}
                  for lat in VAE_LATENTS if lat in PAPER_TABLE1},
        "runs": {lat: {str(d): r for d, r in by.items()} for lat, by in runs.items()},
        "meta": run_metadata(args_for_json(args)),
    }
    path = write_json(("smoke_" if SMOKE["on"] else "") + "mnist_table1", payload, started,
                      out_dir(args))
    wrote(path)


# --------------------------------------------------------------------------------- figures
def make_figures(args, device):
    fig_dir = out_dir(args) / ("smoke_figures" if SMOKE["on"] else "figures")
    seed = args.seed
    nvae2, _ = load_best_model(args, "normal", 2, seed, device)
    svae3, _ = load_best_model(args, "vmf", 3, seed, device)
    svae2, _ = load_best_model(args, "vmf", 2, seed, device)
    written = [*figure2(args, fig_dir, nvae2, svae3, svae2), *figures78(args, fig_dir, device),
               *figure9(args, fig_dir, device, nvae2, svae3, svae2)]
    for w in written:
        wrote(w)
    if not written:
        print("no checkpoints found for the figures (train normal d=2, vmf d=3 / d in --fig-dims)")


def figure2(args, fig_dir, nvae2, svae3, svae2) -> list:
    """Figure 2: test latents, N-VAE in R^2 and S-VAE on S^2 (dim 3, Hammer projection)."""
    from matplotlib.figure import Figure

    from pyg_spherical.repro.plotting import plot_latent, save_figure

    test_x, test_y = args._data["test_x"], args._data["test_y"]
    panels = [(m, t, k) for m, t, k in (
        (nvae2, r"(a) $\mathbb{R}^2$ latent space of the N-VAE", "euclidean"),
        (svae3, r"(b) Hammer projection of the $\mathcal{S}^2$ latent space of the S-VAE", "hammer"),
        (svae2, r"(c) $\mathcal{S}^1$ latent space of the S-VAE (d = 2)", "circle"),
    ) if m is not None]
    if not panels:
        return []
    fig = Figure(figsize=(6 * len(panels), 5.5))
    for i, (m, title, kind) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        z = m.embed(test_x)
        plot_latent(z, test_y, ax=ax, kind=kind, title=title, s=1.5, legend=(i == len(panels) - 1))
    fig.tight_layout()
    return [save_figure(fig, fig_dir / "mnist_fig2_latents.png")]


def figures78(args, fig_dir, device) -> list:
    """Figures 7 / 8: random samples from the prior for every trained d (one random stream,
    seeded with ``--eval-seed``, for all the models in turn)."""
    from matplotlib.figure import Figure

    from pyg_spherical.repro.plotting import image_grid, save_figure

    written, models = [], {}
    for lat in ("normal", "vmf"):  # loaded first: building a model draws from the random stream
        found = [(d, load_best_model(args, lat, d, args.seed, device)[0])
                 for d in sorted(set(args.fig_dims))]
        models[lat] = [(d, m) for d, m in found if m is not None]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.eval_seed)
        for lat, figno in (("normal", 7), ("vmf", 8)):
            if not models[lat]:
                continue
            fig = Figure(figsize=(4 * len(models[lat]), 4.4))
            for i, (d, m) in enumerate(models[lat]):
                ax = fig.add_subplot(1, len(models[lat]), i + 1)
                image_grid(m.sample(100), nrow=10, ax=ax, title=f"d = {d}")
            fig.suptitle(f"Random samples from the {VAE_NAMES[lat]} (Figure {figno})")
            fig.tight_layout()
            written.append(save_figure(fig, fig_dir / f"mnist_fig{figno}_samples_{lat}.png"))
    return written


def figure9(args, fig_dir, device, nvae2, svae3, svae2) -> list:
    """Figure 9: 2-d latent manifolds (N-VAE d = 2 on a normal-quantile grid; S-VAE on S^2),
    and the S-VAE "d = 2" manifold, the circle S^1, decoded along it."""
    from matplotlib.figure import Figure

    from pyg_spherical.repro.plotting import image_grid, plane_grid, save_figure, sphere_grid

    n, written, panels = args.grid, [], []
    if nvae2 is not None:
        panels.append((nvae2, plane_grid(n), "N-VAE, $\\mathbb{R}^2$ (normal quantile grid)"))
    if svae3 is not None:
        panels.append((svae3, sphere_grid(n), "S-VAE, $\\mathcal{S}^2$ (equal-area grid, Hammer layout)"))
    if panels:
        fig = Figure(figsize=(7 * len(panels), 7.4))
        for i, (m, grid, title) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            z = torch.as_tensor(grid, dtype=torch.float32, device=device)
            with torch.no_grad():
                img = torch.sigmoid(m.decode(z))
            image_grid(img, nrow=n, ax=ax, title=title)
        fig.tight_layout()
        written.append(save_figure(fig, fig_dir / "mnist_fig9_manifold.png"))
    if svae2 is not None:
        k = 2 * n
        ang = torch.linspace(-math.pi, math.pi, k + 1, device=device)[:-1]
        z = torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)
        with torch.no_grad():
            img = torch.sigmoid(svae2.decode(z))
        fig = Figure(figsize=(12, 1.9))
        image_grid(img, nrow=k, ax=fig.add_subplot(1, 1, 1),
                   title="S-VAE d = 2: decoded along the circle $S^1$ (angle -pi..pi)")
        fig.tight_layout()
        written.append(save_figure(fig, fig_dir / "mnist_fig9_circle.png"))
    return written


# ----------------------------------------------------------------------------------- speed
def speed(args, device):
    """Training-step time of the ``--latents`` on the same batches, interleaved (fair under load)."""
    from pyg_spherical.vae import VAE

    started = time.time()
    train = args._data["train"]
    g = torch.Generator().manual_seed(0)
    n_steps = args.speed_steps
    idx = torch.randint(0, train.x.shape[0], (n_steps * args.batch_size,), generator=g)
    xs = torch.bernoulli(train.x.index_select(0, idx), generator=g).to(device)
    batches = xs.split(args.batch_size)
    dims = sorted(set(args.dims if args.table1 else ([args.dim] if args.dim else [2, 5, 10])))
    out = {}
    print(f"\ntraining step time, batch {args.batch_size}, {n_steps} steps x {args.speed_reps} "
          f"interleaved repetitions, {torch.get_num_threads()} thread(s), device {device}")
    lats = list(args.latents)
    ratio_of = [lat for lat in lats if lat != "normal"] if "normal" in lats else []
    print(f"{'d':>3s} " + " ".join(f"{VAE_NAMES[lat] + ' ms/step':>14s}" for lat in lats)
          + "".join(f" {VAE_NAMES[lat][0] + '/N':>6s}" for lat in ratio_of) + " "
          + " ".join(f"{VAE_NAMES[lat] + ' s/epoch':>14s}" for lat in lats))
    steps_per_epoch = math.ceil(train.x.shape[0] / args.batch_size)
    for d in dims:
        models = {}
        for lat in lats:
            torch.manual_seed(0)
            m = VAE(lat, d).to(device)
            models[lat] = (m, torch.optim.Adam(m.parameters(), lr=args.lr))
        times = {lat: [] for lat in lats}
        for rep in range(args.speed_reps + 1):  # the first repetition warms up
            for lat, (m, opt) in models.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for xb in batches:
                    loss, _, _ = m.loss(xb, 0.5)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if rep:
                    times[lat].append((time.perf_counter() - t0) / n_steps)
        med = {lat: float(np.median(v)) for lat, v in times.items()}
        ratios = {lat: med[lat] / med["normal"] for lat in ratio_of}
        out[str(d)] = {"ms_per_step": {k: 1e3 * v for k, v in med.items()},
                       "s_per_epoch": {k: v * steps_per_epoch for k, v in med.items()},
                       **{f"ratio_{lat}_over_normal": r for lat, r in ratios.items()},
                       "all_ms_per_step": {k: [1e3 * t for t in v] for k, v in times.items()}}
        print(f"{d:3d} " + " ".join(f"{1e3 * med[lat]:14.2f}" for lat in lats)
              + "".join(f" {r:6.2f}" for r in ratios.values()) + " "
              + " ".join(f"{med[lat] * steps_per_epoch:14.1f}" for lat in lats))
    if not SMOKE["on"]:
        path = write_json("mnist_speed", {"speed": out, "steps_per_epoch": steps_per_epoch,
                                          "meta": run_metadata(args_for_json(args))},
                          started, out_dir(args))
        wrote(path)


# ------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=__doc__.split("\n\n", 1)[1])
    pos_int = positive(int)
    p.add_argument("--latent", choices=VAE_LATENTS, help="latent family of a single run")
    p.add_argument("--dim", type=pos_int,
                   help="latent dimension d (S-VAE: the sphere S^{d-1} in R^d)")
    p.add_argument("--table1", action="store_true",
                   help="run every d in --dims for every --latents and print Table 1")
    p.add_argument("--latents", nargs="+", choices=VAE_LATENTS, default=["normal", "vmf"],
                   help="latent families of --table1 and --speed (default: normal vmf)")
    p.add_argument("--dims", type=pos_int, nargs="+", default=list(TABLE1_DIMS),
                   help="latent dims for --table1 (default: 2 5 10 20 40)")
    p.add_argument("--intrinsic", action="store_true",
                   help="with --table1: also run the S-VAE (and P-VAE, if in --latents) with "
                        "latent_dim d+1 (the sphere S^d, intrinsic dimension d) for every d, and "
                        "print it beside the paper's d")
    p.add_argument("--runs", type=pos_int, default=1, help="runs (seeds seed .. seed+runs-1)")
    p.add_argument("--eval-only", action="store_true",
                   help="do not train: evaluate the existing best checkpoints (all must exist)")
    p.add_argument("--no-eval", action="store_true", help="train only, skip the test evaluation")
    p.add_argument("--table-only", action="store_true",
                   help="with --table1: only aggregate the existing mnist_vae_*.json (of runs/, "
                        "or results/ with --refresh)")
    p.add_argument("--figures", action="store_true", help="write Figures 2, 7, 8, 9 from checkpoints")
    p.add_argument("--speed", action="store_true",
                   help="only time training steps of the --latents (--dim, or --dims with "
                        "--table1)")
    p.add_argument("--ll-estimators", action="store_true",
                   help="only compare two LL estimators on the best checkpoints of --latents x "
                        "--dims (spherical at d+1 with --intrinsic)")
    p.add_argument("--speed-steps", type=pos_int, default=200, help="steps per timing repetition")
    p.add_argument("--speed-reps", type=pos_int, default=3, help="interleaved timing repetitions")
    p.add_argument("--fig-dims", type=pos_int, nargs="+", default=[2, 5, 10, 20],
                   help="dims shown in Figures 7/8 (those with checkpoints)")
    p.add_argument("--grid", type=pos_int, default=20, help="Figure 9 grid size")
    p.add_argument("--max-epochs", type=pos_int, default=1000, help="hard cap on epochs per run")
    p.add_argument("--max-new-epochs", type=pos_int, default=None,
                   help="train at most this many more epochs in this call (time slicing)")
    p.add_argument("--warmup", type=non_negative(int), default=100,
                   help="linear KL warm-up epochs")
    p.add_argument("--patience", type=pos_int, default=50, help="early-stopping look-ahead (epochs)")
    p.add_argument("--lr", type=positive(float), default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=pos_int, default=64)
    p.add_argument("--ll-samples", type=pos_int, default=500, help="importance samples for LL")
    add_mnist_run_args(p, REPO / "checkpoints" / "mnist_vae")
    p.add_argument("--print-every", type=pos_int, default=10, help="epoch log line every N epochs")
    args = p.parse_args(argv)
    # with --speed, --dim alone picks the timed dimension
    single = args.latent is not None or (args.dim is not None and not args.speed)
    if not (args.table1 or args.figures or args.speed or args.ll_estimators or single):
        p.error("give --latent and --dim, or --table1, or --figures, or --speed, or "
                "--ll-estimators")
    if args.ll_estimators and (args.table1 or args.figures or args.speed or single):
        p.error("--ll-estimators runs alone (with --latents, --dims, --intrinsic), not with "
                "--table1, --figures, --speed or --latent/--dim")
    if single and (args.latent is None or args.dim is None):
        p.error("--latent and --dim go together")
    if args.latent in VAE_SPHERICAL and args.dim < 2:
        p.error(f"the {VAE_NAMES[args.latent]} needs --dim >= 2 (the circle S^1 in R^2)")
    if (args.table1 or args.ll_estimators) and min(args.dims) < 2:
        p.error("--dims must be >= 2 for the S-VAE")
    if args.eval_only and args.no_eval:
        p.error("--eval-only and --no-eval exclude each other")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    set_threads(args)
    device = args.device
    SMOKE["on"] = bool(args.train_subset or args.eval_subset)
    if (not (args.table1 and args.table_only) or args.figures or args.speed
            or args.ll_estimators):  # a table needs no data
        args._data = load_data(args, device)
    seeds = list(range(args.seed, args.seed + args.runs))
    if args.speed:
        speed(args, device)
        return
    if args.ll_estimators:
        ll_estimator_check(args, device)
        return

    if args.table1 and args.table_only:
        configs = []
    elif args.table1:
        configs = [(lat, d) for d in args.dims for lat in args.latents]
        if args.intrinsic:
            configs += [(lat, d + 1) for lat in VAE_SPHERICAL if lat in args.latents
                        for d in args.dims if d + 1 not in args.dims]
    elif args.latent:
        configs = [(args.latent, args.dim)]
    else:
        configs = []
    if args.eval_only:
        missing = [ckpt_dir(args, lat, d, s) / "best.pt" for lat, d in configs for s in seeds
                   if not (ckpt_dir(args, lat, d, s) / "best.pt").is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            fail(f"--eval-only: no checkpoint {shown(missing[0])}{more}; train the run first, "
                 "or aggregate existing results with --table1 --table-only")
    for lat, d in configs:
        for s in seeds:
            if not args.eval_only:
                train_one(args, lat, d, s, device)
            if args.no_eval:
                continue
            r = evaluate_run(args, lat, d, s, device)
            if r is not None:
                t = r["test"]
                print(f"[{run_name(lat, d, s)}] test LL {t['LL']:.2f}  ELBO {t['ELBO']:.2f}  RE "
                      f"{t['RE']:.2f}  KL {t['KL']:.2f}  (epochs {r['epochs']}, best "
                      f"{r['best_epoch']}, {r['stop_reason'] or 'not finished'}; "
                      f"{r['epoch_time_s']['median']:.1f}s/epoch, LL eval {r['eval_time_s']:.0f}s)",
                      flush=True)
    if args.table1 and not args.no_eval:
        write_table(args, sorted(set(args.dims)), seeds, started)
    elif configs and not args.no_eval:
        rows, runs = collect(args, [args.dim], seeds)
        print_table(summarize(rows), runs, [args.dim], [args.latent])
    if args.figures:
        make_figures(args, device)


if __name__ == "__main__":
    main()
