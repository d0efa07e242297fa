#!/usr/bin/env python
r"""Semi-supervised MNIST, M1 + k-NN: paper section 5.3 and Table 2.

Protocol (Appendix F.2): the trained VAEs of the expressiveness benchmark (benchmarks/mnist_vae.py,
best-validation checkpoints) encode MNIST with the posterior mode (vMF mean direction / Gaussian
mean) of images binarised once with a fixed seed; a 5-NN classifier is fitted on N in
{100, 600, 1000} labelled training codes, drawn at random and class-balanced (N/10 per class),
and its test accuracy is reported as mean and standard deviation over 20 draws. Distance:
Euclidean for the N-VAE, geodesic arccos(x^T y) for the S-VAE (scikit-learn's Euclidean search on
the unit-normalised codes, which has exactly the geodesic neighbour order; see
pyg_spherical/repro/evaluation.py).

Examples::

    python benchmarks/mnist_knn.py                          # d = 2 5 10, both latents
    python benchmarks/mnist_knn.py --dims 2 5 10 20 40 --draws 20
    python benchmarks/mnist_knn.py --dims 20 40 --latents normal vmf power   # with the P-VAE
    python benchmarks/mnist_knn.py --checkpoint last        # unfinished runs (development)

Convention: the S-VAE is reported both with latent_dim d (codes on S^{d-1} in R^d, the
library's convention) and with latent_dim d+1 (S^d, intrinsic dimension d, as in the authors'
example code, which builds the S-VAE with z_dim = Z_DIM + 1); the paper's "d" is ambiguous. The
P-VAE (``--latents ... power``: a Power Spherical posterior, geodesic distance) is reported the
same two ways.

Reads ``checkpoints/mnist_vae/<latent>_d<dim>_s<seed>/best.pt``; missing runs are listed and
skipped. Writes ``runs/mnist_knn_table2.json`` (``results/`` with ``--refresh``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from common import (
    PAPER_TABLE2,
    REPO,
    VAE_LATENTS,
    VAE_NAMES,
    VAE_SPHERICAL,
    Parser,
    add_common_args,
    fail,
    fmt,
    load_checkpoint,
    load_mnist,
    load_weights,
    out_dir,
    positive,
    progress_bar,
    run_metadata,
    seed_int,
    set_threads,
    shown,
    write_json,
    wrote,
)

VARIANT_NAMES = {"normal": "N-VAE", "vmf": "S-VAE S^(d-1)", "vmf_sd": "S-VAE S^d",
                 "power": "P-VAE S^(d-1)", "power_sd": "P-VAE S^d"}
LABELS = (100, 600, 1000)


def vae_checkpoint(args, latent, dim, seed) -> Path:
    return Path(args.checkpoint_dir) / f"{latent}_d{dim}_s{seed}" / f"{args.checkpoint}.pt"


def load_vae(args, latent, dim, seed, device):
    """The VAE of a run of benchmarks/mnist_vae.py (``best.pt`` or ``last.pt``), or ``None``.

    Both files hold the weights under ``"model"``; ``best.pt`` also the epoch and its validation
    record, ``last.pt`` the full training state (history, stop reason).
    """
    from pyg_spherical.vae import VAE

    path = vae_checkpoint(args, latent, dim, seed)
    if not path.is_file():
        return None, None
    state = load_checkpoint(path, device)
    model = VAE(latent=latent, dim=dim).to(device)
    load_weights(model, state, path)
    model.eval()
    last = path.with_name("last.pt")
    info = {"file": shown(path)}
    if last.is_file():
        ls = load_checkpoint(last, "cpu", keys=("epoch",))
        info.update(epochs=int(ls["epoch"]), stop_reason=ls.get("stop_reason"),
                    finished=ls.get("stop_reason") is not None)
    if "record" in state:  # best.pt
        info.update(best_epoch=int(state["epoch"]), best_val_elbo=state["record"].get("val_elbo"))
    return model, info


@torch.no_grad()
def encode(model, x, batch_size=10_000):
    return torch.cat([model.embed(xb) for xb in x.split(batch_size)])


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10],
                   help="latent dims d (S-VAE: the sphere S^{d-1} in R^d); paper: 2 5 10 20 40")
    p.add_argument("--latents", nargs="+", default=["normal", "vmf"], choices=VAE_LATENTS,
                   help="latent families (default: normal vmf)")
    p.add_argument("--labels", type=int, nargs="+", default=list(LABELS),
                   help="numbers of labelled points N (multiples of 10)")
    p.add_argument("--no-intrinsic", dest="intrinsic", action="store_false",
                   help="do not add the S-VAE / P-VAE with latent_dim d+1 (the sphere S^d) "
                        "beside each d")
    p.add_argument("--k", type=positive(int), default=5, help="neighbours")
    p.add_argument("--draws", type=positive(int), default=20,
                   help="class-balanced label draws per cell")
    p.add_argument("--draw-seed", type=seed_int, default=0, help="base seed of the label draws")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of each run (last: for unfinished runs)")
    p.add_argument("--checkpoint-dir", default=str(REPO / "checkpoints" / "mnist_vae"))
    p.add_argument("--eval-seed", type=seed_int, default=1234,
                   help="seed of the fixed binarisation of the images that are encoded")
    p.add_argument("--encode", choices=("binary", "grey"), default="binary",
                   help="encode one fixed binarisation of the images (default) or the grey levels")
    p.add_argument("--output", default="mnist_knn_table2", help="result name (mnist_knn_table2)")
    add_common_args(p, seed_help="seed of the VAE run to load (default 0)")
    args = p.parse_args(argv)
    if min(args.dims) < 2:
        p.error("--dims must be >= 2 (the S-VAE needs the circle S^1 at least)")
    if min(args.labels) < 10 or any(n % 10 for n in args.labels):
        p.error("--labels must be positive multiples of 10 (class-balanced draws)")
    if args.k > min(args.labels):
        p.error(f"--k must be in [1, {min(args.labels)}]")
    if not Path(args.checkpoint_dir).is_dir():
        p.error(f"checkpoint folder {args.checkpoint_dir} does not exist; train the VAEs with "
                "benchmarks/mnist_vae.py first")
    return args


def variants_of(args) -> list[tuple]:
    """``(key, latent, latent_dim, d of the table row)`` of every requested cell."""
    variants = []
    for d in args.dims:
        for lat in args.latents:
            variants.append((lat, lat, d, d))
            if lat in VAE_SPHERICAL and args.intrinsic:
                variants.append((f"{lat}_sd", lat, d + 1, d))
    return variants


def knn_cells(args, found, device) -> dict:
    """k-NN accuracies of the codes of every found checkpoint: ``{key: {str(d): cell}}``."""
    from pyg_spherical.repro.datasets import binarize_fixed
    from pyg_spherical.repro.evaluation import metric_for_latent, semi_supervised_knn

    data = load_mnist(args)
    if args.encode == "binary":
        x_train = binarize_fixed(data["train"].x, seed=args.eval_seed + 100).to(device)
        x_test = binarize_fixed(data["test"].x, seed=args.eval_seed + 1).to(device)
    else:  # grey levels = the expected binary image
        x_train, x_test = data["train"].x.to(device), data["test"].x.to(device)
    y_train, y_test = data["train"].y.numpy(), data["test"].y.numpy()
    bar = progress_bar(args, len(found) * len(args.labels), "kNN")
    results = {}
    for key, lat, dim, d in found:
        model, info = load_vae(args, lat, dim, args.seed, device)
        t0 = time.perf_counter()
        z_train, z_test = encode(model, x_train).cpu(), encode(model, x_test).cpu()
        enc_time = time.perf_counter() - t0
        metric = metric_for_latent(lat)
        cell = {"metric": metric, "latent_dim": dim, "checkpoint": info, "encode_time_s": enc_time}
        for n in args.labels:
            t0 = time.perf_counter()
            acc = 100 * semi_supervised_knn(z_train, y_train, z_test, y_test, n, k=args.k,
                                            metric=metric, draws=args.draws, seed=args.draw_seed)
            cell[str(n)] = {"mean": float(acc.mean()),
                            "std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
                            "all": acc.tolist(), "time_s": time.perf_counter() - t0}
            bar.update(1)
        results.setdefault(key, {})[str(d)] = cell
    bar.close()
    return results


def print_table(args, results, keys, paper_lats, found, missing) -> None:
    print(f"\nTable 2 (M1 + {args.k}-NN, MNIST test accuracy %, mean ± std over {args.draws} "
          f"class-balanced label draws; ours vs paper; checkpoint: {args.checkpoint})")
    print("  N-VAE: R^d.  S-VAE S^(d-1): latent_dim d (codes in R^d).  S-VAE S^d: latent_dim d+1 "
          "(intrinsic dimension d, as the authors' example code); P-VAE likewise")
    head = (f"{'d':>3s} {'N':>5s} " + " ".join(f"{VARIANT_NAMES[k]:>14s}" for k in keys)
            + " " + " ".join(f"{'paper ' + VAE_NAMES[lat]:>12s}" for lat in paper_lats))
    print(head)
    print("-" * len(head))
    for d in args.dims:
        for n in args.labels:
            parts = []
            for k in keys:
                c = results.get(k, {}).get(str(d), {}).get(str(n))
                ours = fmt(c["mean"], c["std"] if args.draws > 1 else None, 1) if c else "-"
                parts.append(f"{ours:>14s}")
            for lat in paper_lats:
                ref = PAPER_TABLE2.get(lat, {}).get(d, {}).get(n)
                parts.append(f"{fmt(*ref, 1) if ref else '-':>12s}")
            print(f"{d:3d} {n:5d} " + " ".join(parts))
    print("\ncheckpoints used:")
    for key, lat, dim, d in found:
        info = results[key][str(d)]["checkpoint"]
        ep = info.get("epochs")
        state = ("finished: " + str(info.get("stop_reason"))) if info.get("finished") else "not finished"
        print(f"  {VARIANT_NAMES[key]:14s} d = {d:2d}: {info['file']} (best epoch "
              f"{info.get('best_epoch', '?')} of {ep if ep is not None else '?'}, {state})")
    if missing:
        print("missing (skipped): " + ", ".join(f"{VARIANT_NAMES[k]} d = {d}"
                                                  for k, _, _, d in missing))


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    set_threads(args)
    device = args.device
    variants = variants_of(args)
    found, missing = [], []
    for v in variants:
        (found if vae_checkpoint(args, v[1], v[2], args.seed).is_file() else missing).append(v)
    for key, lat, dim, d in missing:
        print(f"missing: {vae_checkpoint(args, lat, dim, args.seed)} ({VARIANT_NAMES[key]}, "
              f"d = {d}) -- train it with: python benchmarks/mnist_vae.py --latent {lat} "
              f"--dim {dim}", file=sys.stderr)
    if not found:
        fail("none of the requested VAE checkpoints exist (see above)")

    results = knn_cells(args, found, device)
    keys = [k for k in VARIANT_NAMES if any(v[0] == k for v in variants)]
    paper_lats = [lat for lat in args.latents if lat in PAPER_TABLE2]
    print_table(args, results, keys, paper_lats, found, missing)
    payload = {
        "ours": results,
        "paper": {lat: {str(d): {str(n): PAPER_TABLE2[lat][d][n] for n in args.labels
                                 if n in PAPER_TABLE2[lat].get(d, {})}
                        for d in args.dims if d in PAPER_TABLE2[lat]} for lat in paper_lats},
        "missing": [{"variant": k, "latent": lat, "latent_dim": dim, "d": d}
                    for k, lat, dim, d in missing],
        "variants": {k: VARIANT_NAMES[k] for k in keys},
        "protocol": {"k": args.k, "draws": args.draws, "labels": args.labels,
                     "codes": ("posterior mode of the fixed-binarised images"
                               if args.encode == "binary" else
                               "posterior mode of the grey-level images"),
                     "train_binarisation_seed": args.eval_seed + 100,
                     "test_binarisation_seed": args.eval_seed + 1,
                     "label_pool": "the 50k training images (validation images excluded)"},
        "meta": run_metadata(args),
    }
    path = write_json(args.output, payload, started, out_dir(args))
    wrote(path)


if __name__ == "__main__":
    main()
