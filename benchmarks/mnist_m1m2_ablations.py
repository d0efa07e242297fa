#!/usr/bin/env python
r"""Why does the S+S M1+M2 model miss the paper's Table 3? Controlled short-run ablations.

Every ablation trains the M1+M2 model of ``benchmarks/mnist_m1m2.py`` with the same protocol,
labelled draw and seed (100 labels, Adam lr 1e-3, batches of 100 + 100, alpha 1, the labelled
weight of Kingma et al.) for a fixed, short budget (``--epochs``, default 15) and changes one
thing. It reports the best validation accuracy, the test accuracy at that epoch and the
validation curve, then how the model uses its style latent z2 (the diagnostics of
``mnist_m1m2.py --diagnose`` on the first ``--diag-subset`` test images). The full runs diverge
early (by epoch 10 S+N is at 88% validation accuracy and S+S at 78%) and keep their order, so
short runs separate the hypotheses at a fraction of the cost.

Ablations (``--only`` selects a subset by name):

* ``SS``, ``SN``, ``NN``  the three models of Table 3 at z1 = z2 = 10 (references).
* ``NS``             a Gaussian z1 with a vMF z2: is it the vMF z2 or the vMF z1?
* ``SN_iso``         S+N with an *isotropic* Gaussian z2, ``N(mu, s^2 I)``: one scale for all
  coordinates, as the vMF has one concentration for all directions.
* ``NN_iso``         the same control for N+N.
* ``SS_z2-3``, ``SS_z2-5``, ``SS_z2-50``   the S+S model with a vMF z2 on ``S^2``, ``S^4``,
  ``S^49``.
* ``NS_z2-3``        N+S with z2 on ``S^2``.
* ``SS_kappa-min10`` z2's concentration ``softplus(.) + 10`` instead of ``+ 1``: z2 is forced to
  carry information from the first step.
* ``SS_kl-warmup``   z2's KL weight rises linearly from 0 to 1 over the first 6 epochs.
* ``SS_z2-2``        z2 on the circle ``S^1``; ``SS_z2-3_kappa-min10``, ``SS_z2-3_kl-warmup``
  the concentration floor and the warm-up on the best z2 (``S^2``).
* ``SS_z2-5xS1``, ``SS_z2-3xS2``, ``SS_z2-5xS2``, ``SS_z2-2xS1``, ``SS_z2-3xS1``,
  ``SS_z2-2xS2``   z2 a product of small spheres, ``(S^1)^5``, ``(S^2)^3``, ``(S^2)^5``,
  ``(S^1)^2``, ``(S^1)^3``, ``(S^2)^2``; ``SS_z2-3xS1_kl-warmup``, ``SS_z2-3xS2_kl-warmup``
  the KL warm-up on ``(S^1)^3`` and ``(S^2)^3`` (``make_latent("vmf", d, factors=k)``): one concentration
  per factor, a spherical style latent with per-factor precisions.
* ``SS_alpha-0.1``, ``SS_alpha-0.5``, ``SS_alpha-10``, ``SS_alpha-50``   the classification
  weight ``alpha`` per labelled image (reference 1; Kingma et al.'s ``0.1 N`` is about 0.1 in
  our per-image normalisation, an ``alpha N`` with ``alpha = 0.5`` about 0.5, and the larger
  values put the 100 labels above the bound).
* ``SS_equal-weight``  the labelled bound weighs as much as the unlabelled one per step
  (``w_l = 1`` instead of ``N_l / N_u``).
* ``SS_kappa-init``  every vMF concentration head starts at ``kappa = m`` (the dimension)
  instead of ``softplus(0) + 1 = 1.7``.
* ``SS_z2-3_alpha-10``, ``SS_z2-3xS2_alpha-10``   the best z2 with the largest alpha;
  ``SN_alpha-10`` the same alpha on S+N.
* ``SS_z2-3_equal-weight``, ``SS_z2-3xS2_equal-weight``   the best z2 with ``w_l = 1``;
  ``SN_equal-weight``, ``NN_equal-weight`` the same weight on the Gaussian-z2 models.
* ``SS_pz1-normal``, ``SN_pz1-normal``   M2's likelihood ``p(z1|y,z2)`` a diagonal Gaussian on
  the coordinates of the spherical ``z1`` (Kingma et al.'s likelihood for a continuous M2
  input: a scale per coordinate) instead of a vMF; ``SS_z2-3_pz1-normal`` with z2 on ``S^2``.
  The objective is then not a bound on ``log p(x)`` (a density on ``R^{d1}`` for a point of the
  sphere): a test of what the generative classifier gains from per-coordinate scales.

* ``SP``, ``SP_z2-3``   z2 a Power Spherical on ``S^9`` / ``S^2``: the same one-concentration
  family as the vMF with an exact reparameterisation, no rejection sampler and no gradient
  correction term. Does the vMF's sampler or its gradient estimator hold the S+S model back?
* ``SN_z2-3``, ``SN_iso_z2-3``   S+N with a Gaussian z2 in ``R^3``, diagonal and isotropic: is
  a single scale enough once the style latent is small, as for z2 on ``S^2``?

* ``SS_scaled-z2``, ``SS_scaled``, ``SS_z2-3_scaled``   the spherical codes multiplied by
  ``sqrt(d)`` where they enter the MLPs (z2 only, or z1 and z2): a unit vector's coordinates
  are ``1/sqrt(d)`` in size, a standard Gaussian code's 1. The model is the same up to the first
  layers' weights; only the optimisation sees a different scale.

Every run also records, per epoch, the unlabelled bound of the validation images: the table's
``test@ELBO`` column is the test accuracy at the epoch of the best validation bound (early
stopping on the unlabelled ELBO instead of the validation accuracy), and ``sampled`` the test
accuracy of the best model when ``q(y|z1)`` sees one draw of ``z1`` instead of its centre.

Results: ``mnist_m1m2_ablations/<name>.json`` (one file per ablation, so several processes can
share the work) and the table ``mnist_m1m2_ablations.json``, under ``runs/`` (``results/`` with
``--refresh``); the table aggregates the per-ablation files of the same folder.

Examples::

    python benchmarks/mnist_m1m2_ablations.py                       # all, 15 epochs each (3-7 min per ablation)
    python benchmarks/mnist_m1m2_ablations.py --only SS SN_iso      # a subset
    python benchmarks/mnist_m1m2_ablations.py --table-only          # the table from the JSON files
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from common import (
    PAPER_TABLE3,
    Parser,
    add_mnist_run_args,
    add_protocol_args,
    args_for_json,
    build_m1m2,
    check_protocol_args,
    fail,
    load_mnist_splits,
    model_diagnostics,
    out_dir,
    positive,
    run_metadata,
    set_threads,
    shown,
    tqdm_factory,
    write_json,
    wrote,
)

from pyg_spherical.m1m2 import M1M2
from pyg_spherical.nn import make_latent

SMOKE = {"on": False}

#: name -> (combo, dim z1, dim z2, options of z2's latent layer, KL warm-up epochs of z2, what
#: [, protocol overrides: ``alpha``, ``labelled_weight``, ``scaled_init``])
ABLATIONS = {
    "SS": ("S+S", 10, 10, {}, 0, "S+S (reference)"),
    "SN": ("S+N", 10, 10, {}, 0, "S+N (reference)"),
    "NN": ("N+N", 10, 10, {}, 0, "N+N (reference)"),
    "NS": ("N+S", 10, 10, {}, 0, "Gaussian z1, vMF z2"),
    "SN_iso": ("S+N", 10, 10, {"isotropic": True}, 0, "S+N, isotropic Gaussian z2"),
    "NN_iso": ("N+N", 10, 10, {"isotropic": True}, 0, "N+N, isotropic Gaussian z2"),
    "SS_z2-3": ("S+S", 10, 3, {}, 0, "S+S, z2 on S^2"),
    "SS_z2-5": ("S+S", 10, 5, {}, 0, "S+S, z2 on S^4"),
    "SS_z2-50": ("S+S", 10, 50, {}, 0, "S+S, z2 on S^49"),
    "SS_z2-2": ("S+S", 10, 2, {}, 0, "S+S, z2 on S^1"),
    "NS_z2-3": ("N+S", 10, 3, {}, 0, "N+S, z2 on S^2"),
    "SS_kappa-min10": ("S+S", 10, 10, {"min_concentration": 10.0}, 0, "S+S, z2 kappa >= 10"),
    "SS_kl-warmup": ("S+S", 10, 10, {}, 6, "S+S, z2 KL warm-up over 6 epochs"),
    "SS_z2-3_kappa-min10": ("S+S", 10, 3, {"min_concentration": 10.0}, 0,
                            "S+S, z2 on S^2, kappa >= 10"),
    "SS_z2-3_kl-warmup": ("S+S", 10, 3, {}, 6, "S+S, z2 on S^2, KL warm-up over 6 epochs"),
    # a spherical style latent with one concentration per factor
    "SS_z2-5xS1": ("S+S", 10, 10, {"factors": 5}, 0, "S+S, z2 on (S^1)^5"),
    "SS_z2-3xS2": ("S+S", 10, 9, {"factors": 3}, 0, "S+S, z2 on (S^2)^3"),
    "SS_z2-5xS2": ("S+S", 10, 15, {"factors": 5}, 0, "S+S, z2 on (S^2)^5"),
    "SS_z2-2xS1": ("S+S", 10, 4, {"factors": 2}, 0, "S+S, z2 on (S^1)^2"),
    "SS_z2-3xS1": ("S+S", 10, 6, {"factors": 3}, 0, "S+S, z2 on (S^1)^3"),
    "SS_z2-2xS2": ("S+S", 10, 6, {"factors": 2}, 0, "S+S, z2 on (S^2)^2"),
    # do the factors of a product collapse early? the KL warm-up on the products
    "SS_z2-3xS1_kl-warmup": ("S+S", 10, 6, {"factors": 3}, 6,
                             "S+S, z2 on (S^1)^3, KL warm-up over 6 epochs"),
    "SS_z2-3xS2_kl-warmup": ("S+S", 10, 9, {"factors": 3}, 6,
                             "S+S, z2 on (S^2)^3, KL warm-up over 6 epochs"),
    # the choices of an independent re-implementation, one at a time
    "SS_alpha-0.1": ("S+S", 10, 10, {}, 0, "S+S, alpha 0.1", {"alpha": 0.1}),
    "SS_alpha-0.5": ("S+S", 10, 10, {}, 0, "S+S, alpha 0.5", {"alpha": 0.5}),
    "SS_alpha-10": ("S+S", 10, 10, {}, 0, "S+S, alpha 10", {"alpha": 10.0}),
    "SS_alpha-50": ("S+S", 10, 10, {}, 0, "S+S, alpha 50", {"alpha": 50.0}),
    "SS_equal-weight": ("S+S", 10, 10, {}, 0, "S+S, labelled bound weight 1",
                        {"labelled_weight": "equal"}),
    "SS_kappa-init": ("S+S", 10, 10, {}, 0, "S+S, every kappa head starts at m",
                      {"scaled_init": True}),
    "SS_z2-3_alpha-10": ("S+S", 10, 3, {}, 0, "S+S, z2 on S^2, alpha 10", {"alpha": 10.0}),
    "SS_z2-3xS2_alpha-10": ("S+S", 10, 9, {"factors": 3}, 0, "S+S, z2 on (S^2)^3, alpha 10",
                            {"alpha": 10.0}),
    "SN_alpha-10": ("S+N", 10, 10, {}, 0, "S+N, alpha 10", {"alpha": 10.0}),
    # the labelled weight beside the best z2, and as a control on the Gaussian-z2 models
    "SS_z2-3_equal-weight": ("S+S", 10, 3, {}, 0, "S+S, z2 on S^2, labelled weight 1",
                             {"labelled_weight": "equal"}),
    "SS_z2-3xS2_equal-weight": ("S+S", 10, 9, {"factors": 3}, 0,
                                "S+S, z2 on (S^2)^3, labelled weight 1",
                                {"labelled_weight": "equal"}),
    "SN_equal-weight": ("S+N", 10, 10, {}, 0, "S+N, labelled weight 1",
                        {"labelled_weight": "equal"}),
    "NN_equal-weight": ("N+N", 10, 10, {}, 0, "N+N, labelled weight 1",
                        {"labelled_weight": "equal"}),
    # spherical codes on a standard Gaussian code's scale where they enter the MLPs
    "SS_scaled-z2": ("S+S", 10, 10, {}, 0, "S+S, z2 times sqrt(d2) into p(z1|y,z2)",
                     {"input_scale": "z2"}),
    "SS_scaled": ("S+S", 10, 10, {}, 0, "S+S, z1 and z2 times sqrt(d) into every MLP",
                  {"input_scale": "z1z2"}),
    "SS_z2-3_scaled": ("S+S", 10, 3, {}, 0, "S+S, z2 on S^2, z1 and z2 times sqrt(d)",
                       {"input_scale": "z1z2"}),
    # the vMF's rejection sampler and its gradient estimator: the same one-concentration family
    # with an exact reparameterisation (Power Spherical, De Cao & Aziz 2020)
    "SP": ("S+P", 10, 10, {}, 0, "S+S, Power Spherical z2 on S^9"),
    "SP_z2-3": ("S+P", 10, 3, {}, 0, "S+S, Power Spherical z2 on S^2"),
    # one scale in few dimensions: does a small isotropic Gaussian z2 behave like z2 on S^2?
    "SN_z2-3": ("S+N", 10, 3, {}, 0, "S+N, Gaussian z2 in R^3"),
    "SN_iso_z2-3": ("S+N", 10, 3, {"isotropic": True}, 0, "S+N, isotropic Gaussian z2 in R^3"),
    # M2's likelihood of z1 with a scale per coordinate
    "SS_pz1-normal": ("S+S", 10, 10, {}, 0, "S+S, Gaussian p(z1|y,z2)", {"pz1_latent": "normal"}),
    "SN_pz1-normal": ("S+N", 10, 10, {}, 0, "S+N, Gaussian p(z1|y,z2)", {"pz1_latent": "normal"}),
    "SS_z2-3_pz1-normal": ("S+S", 10, 3, {}, 0, "S+S, z2 on S^2, Gaussian p(z1|y,z2)",
                           {"pz1_latent": "normal"}),
}
OUT_DIR = "mnist_m1m2_ablations"


class GaussianLikelihoodM1M2(M1M2):
    """M1+M2 whose ``p(z1|y,z2)`` is a diagonal Gaussian on the embedding coordinates of a
    spherical ``z1`` in ``R^{d1}`` (Kingma et al.'s likelihood for a continuous M2 input: a
    scale per coordinate) instead of ``z1``'s own family. Its density is with respect to the
    Lebesgue measure of ``R^{d1}`` while ``q(z1|x)`` lives on the sphere, so the objective is no
    longer a bound on ``log p(x)``: an ablation of the likelihood, not a model of the paper."""

    def _pz1_latent(self):
        if not self.latent1.spherical:
            raise ValueError("GaussianLikelihoodM1M2 needs a spherical z1 (a Gaussian z1 has a "
                             "Gaussian p(z1|y,z2) already)")
        return make_latent("normal", self.latent1.dim)

    @torch.no_grad()
    def generate(self, z2, y, probs=True):
        """Decode through the Gaussian's centre projected onto the sphere of ``z1``."""
        z1 = F.normalize(self.latent_pz1.point(self.p_z1(z2, self.one_hot(y))), dim=-1)
        logits = self.decode(z1)
        return torch.sigmoid(logits) if probs else logits


class _ScaleLeading(torch.nn.Module):
    """``net(cat([h[..., :n] * factor, h[..., n:]]))``: a unit vector on ``S^{d-1}`` has
    coordinates of size ``1/sqrt(d)``, a standard Gaussian code of size 1; this puts a
    spherical code that enters an MLP on the Gaussian's scale (Glorot init and Adam's step
    then act on it as on a Gaussian code)."""

    def __init__(self, net, n, factor):
        super().__init__()
        self.net, self.n, self.factor = net, n, factor

    def forward(self, h):
        return self.net(torch.cat([h[..., :self.n] * self.factor, h[..., self.n:]], dim=-1))


def scale_spherical_inputs(model, which):
    """Wrap the MLPs that read ``z2`` (``which = "z2"``) or ``z1`` and ``z2`` (``"z1z2"``)."""
    d1, d2 = model.z1_dim, model.z2_dim
    model.m2_decoder = _ScaleLeading(model.m2_decoder, d2, d2 ** 0.5)
    if which == "z1z2":
        for name in ("m1_decoder", "classifier", "m2_encoder"):
            setattr(model, name, _ScaleLeading(getattr(model, name), d1, d1 ** 0.5))


def run_ablation(args, name, device):
    combo, d1, d2, z2_options, warmup, what, *rest = ABLATIONS[name]
    extra = dict(rest[0]) if rest else {}
    scaled_init = extra.pop("scaled_init", False)
    pz1_latent = extra.pop("pz1_latent", None)
    input_scale = extra.pop("input_scale", None)
    run_args = argparse.Namespace(**{**vars(args), **extra})
    started = time.time()
    model, trainer, loader, _ = build_m1m2(
        run_args, combo, d1, d2, args.seed, device, z2_options=z2_options or None,
        kl_warmup_epochs=warmup, checkpoint_dir=None, max_epochs=args.epochs,
        scaled_init=scaled_init, val_elbo=True,
        model_cls=GaussianLikelihoodM1M2 if pz1_latent == "normal" else None)
    if input_scale:
        # the optimiser holds the same parameter objects: wrapping adds none
        scale_spherical_inputs(model, input_scale)

    def on_epoch_end(tr, rec):
        print(f"[{name}] epoch {rec['epoch']:3d}  bound(u) {rec['train_elbo_u']:8.2f}  "
              f"val acc {100 * rec['val_acc']:5.2f}  best {100 * tr.stopper.best:5.2f}  "
              f"{rec['time_s']:.1f}s", flush=True)

    trainer.fit(loader, progress=tqdm_factory(args), on_epoch_end=on_epoch_end)
    trainer.load_best()
    model.eval()
    d = args._data
    best = max(trainer.history, key=lambda r: r["val_acc"])
    n = args.diag_subset
    torch.manual_seed(args.eval_seed)
    diag = model_diagnostics(model, d["test_x"][:n], d["test_y"][:n])
    by_elbo = max(trainer.history, key=lambda r: r["val_elbo_u"])
    with torch.no_grad():  # q(y|z1) at one draw of z1 instead of its centre
        z1 = model.q_z1(d["test_x"]).sample()
        sampled = float((model.classify(z1).argmax(-1) == d["test_y"]).double().mean())
    out = {
        "name": name, "what": what, "combo": combo, "z1_dim": d1, "z2_dim": d2,
        "z2_options": z2_options, "kl_warmup_epochs": warmup, "seed": args.seed,
        "epochs": trainer.epoch, "best_epoch": best["epoch"],
        "best_val_acc": 100 * best["val_acc"], "test_acc_at_best": 100 * best["val_test_acc"],
        "val_curve": [100 * r["val_acc"] for r in trainer.history],
        "val_elbo_u_curve": [r["val_elbo_u"] for r in trainer.history],
        "best_elbo_epoch": by_elbo["epoch"], "test_acc_at_best_elbo": 100 * by_elbo["val_test_acc"],
        "test_acc_sampled_z1": 100 * sampled, "overrides": {**extra, "scaled_init": scaled_init,
                                              **({"pz1_latent": pz1_latent} if pz1_latent else {}),
                                              **({"input_scale": input_scale} if input_scale else {})},
        "epoch_time_s": [r["time_s"] for r in trainer.history],
        "diagnostics_test_subset": n, "diagnostics": diag,
        "paper_full_training": PAPER_TABLE3.get((d1, d2), {}).get(combo),
        "meta": run_metadata(args_for_json(args)),
    }
    prefix = "smoke_" if SMOKE["on"] else ""
    path = write_json(f"{prefix}{OUT_DIR}/{name}", out, started, out_dir(args))
    print(f"[{name}] best val {out['best_val_acc']:.2f}% at epoch {out['best_epoch']}, test "
          f"{out['test_acc_at_best']:.2f}%; wrote {path.resolve()}", flush=True)
    return out


def print_table(args, started):
    prefix = "smoke_" if SMOKE["on"] else ""
    rows = {}
    for name in ABLATIONS:
        p = out_dir(args) / f"{prefix}{OUT_DIR}" / f"{name}.json"
        if p.is_file():
            rows[name] = json.loads(p.read_text())
    if not rows:
        fail(f"no results under {shown(out_dir(args) / (prefix + OUT_DIR))}/; run the ablations "
             "first (with --refresh to read results/)")
    print("\nM1+M2 ablations (z1 = 10 unless stated; one seed; short runs): best validation "
          "accuracy and test accuracy at that epoch (%); diagnostics on the test subset: "
          "generative classifier, KL of q(z2) (median, nats), spread of q(z2) and p(z1|y,z2) "
          "(median kappa or std)")
    head = (f"{'ablation':20s} {'what':34s} {'ep':>3s} {'val':>6s} {'test':>6s} "
            f"{'test@ELBO':>9s} {'sampled':>7s} {'gen':>6s} {'KL z2':>6s} {'q(z2)':>7s} "
            f"{'p(z1)':>7s}")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        g = r["diagnostics"]
        opt = {k: (f"{r[k]:.2f}" if k in r else "-")
               for k in ("test_acc_at_best_elbo", "test_acc_sampled_z1")}
        print(f"{name:20s} {r['what']:34s} {r['epochs']:3d} {r['best_val_acc']:6.2f} "
              f"{r['test_acc_at_best']:6.2f} {opt['test_acc_at_best_elbo']:>9s} "
              f"{opt['test_acc_sampled_z1']:>7s} {g['acc_generative']:6.2f} {g['kl_z2_median']:6.2f} "
              f"{g['q_z2_spread']:7.3g} {g['p_z1_spread']:7.3g}")
    keep = ("what", "combo", "z1_dim", "z2_dim", "z2_options", "kl_warmup_epochs", "seed",
            "epochs", "best_epoch", "best_val_acc", "test_acc_at_best", "val_curve", "diagnostics",
            "overrides", "best_elbo_epoch", "test_acc_at_best_elbo", "test_acc_sampled_z1",
            "val_elbo_u_curve")
    payload = {"ablations": {k: {f: r[f] for f in keep if f in r} for k, r in rows.items()},
               "meta": run_metadata(args_for_json(args))}
    path = write_json(f"{prefix}{OUT_DIR}", payload, started, out_dir(args))
    wrote(path)


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--only", nargs="+", default=list(ABLATIONS), metavar="NAME",
                   help=f"ablations to run (default: all): {' '.join(ABLATIONS)}")
    p.add_argument("--epochs", type=positive(int), default=15, help="epochs per ablation")
    p.add_argument("--diag-subset", type=positive(int), default=2000,
                   help="test images for the z2 diagnostics (accuracies use all of them)")
    p.add_argument("--table-only", action="store_true", help="only print the table")
    add_protocol_args(p)
    # short runs: the best weights stay in memory, no checkpoints
    add_mnist_run_args(p, seed_help="seed of the model and the labelled draw (default 0)")
    args = p.parse_args(argv)
    bad = [n for n in args.only if n not in ABLATIONS]
    if bad:
        p.error(f"unknown ablation(s) {bad}; choose among {list(ABLATIONS)}")
    check_protocol_args(p, args)
    args.max_epochs, args.patience = args.epochs, args.epochs  # no early stopping in a short run
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    SMOKE["on"] = bool(args.train_subset or args.eval_subset)
    if not args.table_only:
        set_threads(args)
        torch.set_flush_denormal(True)
        device = args.device
        args._data = load_mnist_splits(args, device)
        for name in args.only:
            run_ablation(args, name, device)
    print_table(args, started)


if __name__ == "__main__":
    main()
