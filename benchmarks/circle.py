#!/usr/bin/env python
r"""Hyperspherical latent recovery: AE vs N-VAE vs N-VAE (beta < 1) vs S-VAE (paper Figure 1).

Paper sections 2.3 and 5.1. Data (:mod:`pyg_spherical.repro.synthetic`): points on the circle S^1 from a
mixture of three vMFs (mean angles 0, 2pi/3, 4pi/3; kappa 2, 5, 10), mapped into R^100 by a fixed
random tanh MLP (standardised per coordinate) plus Gaussian noise of std 0.1. Models: an MLP
auto-encoder 100-128-64-[2]-64-128-100 (ReLU) with two latent units, trained as

  (b) a plain auto-encoder,  (c) an N-VAE,  (d) an N-VAE with the KL scaled by beta < 1,
  (e) an S-VAE (vMF posterior on S^1, uniform prior),

all with a Gaussian decoder N(f(z), sigma^2 I) of fixed sigma (default 1: the loss is half the
summed squared error plus beta times the KL), Adam (lr 1e-3), 100 epochs of mini-batches of 100 on
2000 training points; the panels show 1000 held-out points (a: their true latent angles).

How well was the circle recovered? (printed, and written to runs/circle.json; results/ with
--refresh)

  |rho| mode / sample   Fisher-Lee circular correlation between the true angle and the angle of
                        the code (the posterior mode, or one posterior draw): 1 = recovered up to
                        rotation/reflection, 0 = unrelated
  KL(q_agg || p)        KL of the aggregate posterior to the prior, Monte Carlo (panel a: KL of
                        the true mixture to the uniform distribution on S^1)
  prior-sample err      mean squared distance per coordinate from decoded prior draws to the clean
                        data curve (do samples of the generative model land on the data manifold?)
  radial CV             std/mean of the code radius about the codes' centre (0 for a circle)
  test MSE              reconstruction error per coordinate (noise floor 0.01)

Examples::

    python benchmarks/circle.py                          # Figure 1 + table, about 1-2 min on 1 core
    python benchmarks/circle.py --runs 3                 # mean ± sd over 3 model seeds
    python benchmarks/circle.py --sigma 1 2 4 8 --runs 3 # how the KL weight changes the picture

The paper reports Figure 1 only as pictures (no numbers); its qualitative claims are printed beside
ours. Figure: figures/circle_fig1.png (posterior draws, as the models' latent representation)
and figures/circle_fig1_modes.png (posterior modes), under runs/ (results/ with --refresh).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from common import (
    REPO,
    Parser,
    add_common_args,
    non_negative,
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

#: panel -> (key, title, latent kind or None, KL weight: None = --beta-low)
PANELS = {
    "a": ("original", "Original", None, None),
    "b": ("ae", "Autoencoder", "ae", 1.0),
    "c": ("nvae", r"$\mathcal{N}$-VAE", "normal", 1.0),
    "d": ("nvae_beta", r"$\mathcal{N}$-VAE, $\beta$={beta}", "normal", None),
    "e": ("svae", r"$\mathcal{S}$-VAE", "vmf", 1.0),
}
#: what section 2.3 / 5.1 of the paper says about each panel (Figure 1 has no numbers)
PAPER_FIGURE1 = {
    "original": "samples of a mixture of three vMFs on the circle",
    "ae": "mostly recovers the original latent space; most of the latent space unoccupied",
    "nvae": "points collapse around the origin due to the KL",
    "nvae_beta": "collapse much less pronounced when the KL is scaled down",
    "svae": "almost perfectly recovers the original circular latent space",
}
METRICS = ("circ_corr_mode", "circ_corr_sample", "aggregate_kl", "prior_sample_error",
           "radial_spread", "test_mse")


def build_parser() -> Parser:
    doc = __doc__.split("\n\n")
    p = Parser(description=doc[0], epilog="\n\n".join(doc[1:]),
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=positive(int), default=2000, help="training points (2000)")
    p.add_argument("--n-test", type=positive(int), default=1000,
                   help="held-out points plotted and scored (1000)")
    p.add_argument("--features", type=positive(int), default=100, help="data dimension (100)")
    p.add_argument("--noise", type=non_negative(float), default=0.1,
                   help="std of the Gaussian noise added to the standardised signal (0.1)")
    p.add_argument("--map-seed", type=seed_int, default=0, help="seed of the random non-linear map (0)")
    p.add_argument("--epochs", type=positive(int), default=100, help="training epochs (100)")
    p.add_argument("--batch-size", type=positive(int), default=100, help="mini-batch size (100)")
    p.add_argument("--lr", type=positive(float), default=1e-3, help="Adam learning rate (1e-3)")
    p.add_argument("--sigma", type=positive(float), nargs="+", default=[1.0],
                   help="decoder std(s); the figure uses the first (default 1). Several values "
                        "give a sweep of the reconstruction/KL balance")
    p.add_argument("--beta-low", type=positive(float), default=0.1,
                   help="KL scale of panel (d) (default 0.1)")
    p.add_argument("--hidden", type=positive(int), nargs="+", default=[128, 64],
                   help="encoder widths, reversed for the decoder (128 64)")
    p.add_argument("--runs", type=positive(int), default=1,
                   help="model seeds --seed .. --seed+runs-1 on the same data (default 1)")
    p.add_argument("--out", default="circle", help="result name (circle)")
    p.add_argument("--no-figure", action="store_true", help="skip the PNGs")
    add_common_args(p, data=False, device_default=None, seed_help="first model seed (0)")
    return p


# ---------------------------------------------------------------------------------------------
def train_panel(args, data, kind, beta, sigma, seed, bar):
    from pyg_spherical.repro import synthetic as S

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = S.CircleAutoEncoder(kind, in_features=args.features, hidden=args.hidden,
                                    sigma=sigma)
    t0 = time.perf_counter()

    def tick(epoch, rec):
        bar.update(1)
        if epoch % 10 == 0 or epoch == args.epochs - 1:
            bar.set_postfix(loss=f"{rec['loss']:.3f}", kl=f"{rec['kl']:.2f}")

    hist = S.fit(model, data["train"].x, epochs=args.epochs, batch_size=args.batch_size,
                 lr=args.lr, beta=beta, seed=seed, callback=tick)
    train_s = time.perf_counter() - t0
    ev = S.evaluate_recovery(model, data["test"], data["embedding"], seed=seed)
    ev["train_time_s"] = train_s
    ev["final_train"] = hist[-1]
    return ev


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    m = statistics.fmean(values)
    return {"mean": m, "sd": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


def draw(panels, args, sigma, which, path):
    """One row of five panels; ``which`` = "z_sample" or "z_mode"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pyg_spherical.repro.plotting import plot_latent, save_figure

    fig = Figure(figsize=(17.5, 3.9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 5)
    labels = panels["labels"]
    for ax, (letter, (key, title, kind, beta)) in zip(axes, PANELS.items()):
        title = title.replace("{beta}", f"{args.beta_low:g}")
        r = panels[key]
        if key == "original":
            z, plot_kind = r["z"], "circle"
            note = f"KL(p||U) = {r['aggregate_kl']:.2f}"
        else:
            z, plot_kind = r[which], ("circle" if kind == "vmf" else "euclidean")
            rho = r["circ_corr_sample" if which == "z_sample" else "circ_corr_mode"]
            note = f"|ρ| = {rho:.3f}"
            if r["aggregate_kl"] is not None:
                note += f", KL(q̄||p) = {r['aggregate_kl']:.2f}"
        plot_latent(z, labels, ax=ax, kind=plot_kind, legend=False, s=3)
        ax.set_title(f"({letter}) {title}\n{note}", fontsize=10)
        if plot_kind == "euclidean":
            if kind == "normal":  # where the N(0, I) prior puts 39% / 86% of its mass
                t = np.linspace(0, 2 * np.pi, 200)
                for radius in (1, 2):
                    ax.plot(radius * np.cos(t), radius * np.sin(t), color="0.5", lw=0.8,
                            ls="--", zorder=3)
            ax.set_aspect("equal", adjustable="datalim")
    what = "one posterior draw per test point" if which == "z_sample" else "posterior modes"
    fig.suptitle(f"Latent recovery of a circle embedded in R^{args.features} ({what}; decoder "
                 f"σ = {sigma:g}; |ρ|: circular correlation with the true angle; dashed: prior "
                 f"radius 1 and 2)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def print_table(sigma, summary, args):
    def cell(s, digits=3):
        if s is None:
            return "—"
        if s["sd"] is None:
            return f"{s['mean']:.{digits}f}"
        return f"{s['mean']:.{digits}f}±{s['sd']:.{digits}f}"

    print(f"\nFigure 1 recovery metrics, decoder sigma = {sigma:g}, {args.runs} run(s), "
          f"{args.n_test} held-out points")
    head = (f"{'panel':22s} {'|rho| mode':>13s} {'|rho| sample':>13s} {'KL(q_agg||p)':>13s} "
            f"{'prior-smp err':>13s} {'radial CV':>11s} {'test MSE':>13s}")
    print(head)
    print("-" * len(head))
    for key, *_ in PANELS.values():
        s = summary[key]
        name = {"original": "(a) original", "ae": "(b) AE", "nvae": "(c) N-VAE",
                "nvae_beta": f"(d) N-VAE beta={args.beta_low:g}", "svae": "(e) S-VAE"}[key]
        print(f"{name:22s} {cell(s['circ_corr_mode']):>13s} {cell(s['circ_corr_sample']):>13s} "
              f"{cell(s['aggregate_kl']):>13s} {cell(s['prior_sample_error'], 4):>13s} "
              f"{cell(s['radial_spread']):>11s} {cell(s['test_mse'], 4):>13s}")
    print("paper (qualitative only):")
    for key, claim in PAPER_FIGURE1.items():
        print(f"  {key:10s} {claim}")


def make_data(args):
    """The embedding, the training and test data, and the scores of the true latent (panel a)."""
    from pyg_spherical.repro import synthetic as S

    emb = S.CircleEmbedding(args.features, map_seed=args.map_seed)
    data = {
        "embedding": emb,
        "train": S.make_circle_data(args.n_train, args.features, args.noise, seed=0,
                                    embedding=emb),
        "test": S.make_circle_data(args.n_test, args.features, args.noise, seed=1, embedding=emb),
    }
    test = data["test"]
    original = {
        "circ_corr_mode": 1.0, "circ_corr_sample": 1.0,
        "aggregate_kl": S.true_aggregate_kl(test.u),
        "prior_sample_error": None,
        "radial_spread": S.radial_spread(test.u, on_sphere=True),
        "test_mse": None,
        # E ||x - f(u)||^2 / D: what a perfect reconstruction of the clean signal would score
        "noise_floor_mse": float(((test.x.double() - emb(test.u.double())) ** 2).mean()),
    }
    return data, original


def run_sigma(args, data, original, sigma, seeds, models, bar) -> dict:
    """Every panel's model at decoder scale ``sigma`` for each seed: the runs, their summary and
    the figures of the first seed."""
    test = data["test"]
    runs = {key: [] for _, (key, *_rest) in models}
    first_panels = None
    for seed in seeds:
        panels = {"labels": test.labels, "original": {**original, "z": test.u}}
        for letter, (key, title, kind, beta) in models:
            beta = args.beta_low if beta is None else beta
            bar.set_description(f"σ={sigma:g} seed {seed} ({letter}) {key}")
            ev = train_panel(args, data, kind, beta, sigma, seed, bar)
            panels[key] = ev
            runs[key].append({"seed": seed, "beta": beta,
                              **{m: ev[m] for m in METRICS},
                              "train_time_s": ev["train_time_s"],
                              "final_train": ev["final_train"]})
        if first_panels is None:
            first_panels = panels
    summary = {"original": {m: (None if original[m] is None else
                                {"mean": original[m], "sd": None})
                            for m in METRICS}}
    for key, rs in runs.items():
        summary[key] = {m: mean_sd([r[m] for r in rs]) for m in METRICS}
        summary[key]["train_time_s"] = mean_sd([r["train_time_s"] for r in rs])
    figures = {}
    if not args.no_figure:
        suffix = "" if sigma == args.sigma[0] else f"_sigma{sigma:g}"
        fig_dir = out_dir(args) / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        for which, tag in (("z_sample", ""), ("z_mode", "_modes")):
            path = fig_dir / f"{args.out}_fig1{tag}{suffix}.png"
            draw(first_panels, args, sigma, which, path)
            figures[which] = shown(path)
    return {"summary": summary, "runs": runs, "figures": figures}


#: what each metric of the JSON measures
METRIC_DOCS = {
    "circ_corr_mode": "|Fisher-Lee circular correlation| of true angle vs angle of the "
                      "posterior mode (AE: the code); angles about the codes' centroid "
                      "in R^2, about the origin on S^1",
    "circ_corr_sample": "the same for one posterior draw per point",
    "aggregate_kl": "KL(q_agg || prior) in nats, Monte Carlo; panel (a): KL(true "
                    "mixture || uniform on S^1)",
    "prior_sample_error": "mean squared distance per coordinate from 2000 decoded prior "
                          "draws to the clean data curve f(S^1)",
    "radial_spread": "std/mean of ||z_mode - centre||",
    "test_mse": "mean squared reconstruction error per coordinate at the posterior mode",
}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args)
    started = time.time()
    meta = run_metadata(args)
    from pyg_spherical.repro import synthetic as S

    data, original = make_data(args)
    seeds = [args.seed + r for r in range(args.runs)]
    models = [(k, v) for k, v in PANELS.items() if v[2] is not None]
    total = len(args.sigma) * len(seeds) * len(models) * args.epochs
    bar = progress_bar(args, total, "circle")
    by_sigma = {f"{sigma:g}": run_sigma(args, data, original, sigma, seeds, models, bar)
                for sigma in args.sigma}
    bar.close()

    for sigma in args.sigma:
        print_table(sigma, by_sigma[f"{sigma:g}"]["summary"], args)
    payload = {
        "meta": meta,
        "data": {"n_train": args.n_train, "n_test": args.n_test, "features": args.features,
                 "noise": args.noise, "map_seed": args.map_seed, "means": S.DEFAULT_MEANS,
                 "kappas": S.DEFAULT_KAPPAS, "train_seed": 0, "test_seed": 1,
                 "noise_floor_mse": original["noise_floor_mse"]},
        "models": {"hidden": args.hidden, "latent_dim": 2, "epochs": args.epochs,
                   "batch_size": args.batch_size, "lr": args.lr, "beta_low": args.beta_low,
                   "seeds": seeds},
        "metrics": METRIC_DOCS,
        "paper": PAPER_FIGURE1,
        "by_sigma": by_sigma,
    }
    path = write_json(args.out, payload, started, out_dir(args))
    for s in by_sigma.values():
        for f in s["figures"].values():
            wrote(REPO / f)
    wrote(path, f" ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
