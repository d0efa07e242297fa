#!/usr/bin/env python
r"""Why does the S-VGAE miss the paper's Table 4 at the Table 7 settings? Controlled ablations.

Each ablation changes one thing relative to the S-VGAE at the paper's Table 7 setting of the data
set (Cora: lr 0.001, dropout 0.1, d 32, 200 epochs) and is run with the same seeds, edge splits
and protocol as ``benchmarks/linkpred.py`` (test AUC / AP at the epoch of best validation AUC;
mean ± standard error over runs). Results go to ``runs/linkpred_diagnostics_<dataset>.json``
(``results/`` with ``--refresh``).

Ablations (``--only`` selects a subset by name):

* ``table7``          the reference: Table 7 setting, 200 epochs.
* ``epochs1000``      the same, 1000 epochs (is it still learning after 200 steps?).
* ``lr0.01``          learning rate 0.01 (the largest of the paper's grid).
* ``kappa_min20``     concentration ``kappa = softplus(.) + 20`` instead of ``+ 1``: training
  starts with informative samples instead of near-uniform ones on ``S^{d-1}``.
* ``no_sampling``     ``z = mu`` in training (a deterministic spherical graph auto-encoder).
* ``authors_grad``    the gradient in ``kappa`` of the authors' code: through the accepted Wood
  proposal only (``g_rep``, at a fixed Beta draw), without the correction term of eq. 30
  (:class:`AuthorsVonMisesFisher` below).
* ``eval_mean``       evaluate with ``E[z] = A_d(kappa) mu`` instead of the mean direction ``mu``.
* ``no_kl``           drop the KL term (it is weighted by ``1/N`` as in the reference code).
* ``row_normalized``  row-normalised features (PyG's ``NormalizeFeatures``), for both models.
* ``nvgae_table7``    the N-VGAE at its Table 7 setting (for reference, same seeds).
* ``full_adjacency``  the reference VGAE code's objective instead of negative sampling: weighted
  cross-entropy over all ``N^2`` entries of ``A_train + I`` (``pos_weight = (N^2 - |A|) / |A|``,
  ``norm = N^2 / (2 (N^2 - |A|))``), i.e. every non-edge every epoch instead of one sampled
  negative per positive.
* ``nvgae_full_adjacency``  the N-VGAE (Table 7 setting) with that objective.
* ``eval_raw_loc``    score test edges with the encoder's raw mean output before normalisation
  (its norm, which the unit-sphere decoder never sees, carries degree-like information).
* ``lr0.01_eval_raw_loc``  both changes.

The ablations above use the plain decoder ``sigmoid(z_i^T z_j)`` they were first run with. The
ones below start from the S-VGAE as ``benchmarks/linkpred.py`` runs it by default (the selected
setting of the data set, scaled decoder ``sigmoid(s z_i^T z_j)`` with ``s`` learnable from 5) and
change one choice each, the choices in which public re-implementations differ from ours:

* ``selected``            the reference.
* ``selected_plain``      the plain decoder (``s = 1``, not learned).
* ``selected_fixed_scale`` ``s = 5`` kept fixed.
* ``selected_scale1`` / ``selected_scale10`` / ``selected_scale20``  other initial scales.
* ``selected_decoder_bias``  a learnable bias in the decoder logit.
* ``selected_no_gcn_bias``   GCN layers without bias (the reference VGAE code).
* ``selected_uniform_negatives``  negatives uniform over all node pairs, edges not filtered out.
* ``selected_joint_bce``  the BCE averaged over positives and negatives together (half of PyG's
  sum of the two means, i.e. twice the relative weight of the KL).
* ``selected_dim128``     latent dimension 128.

Encoder variants (ours, not the paper's encoder), the same start and one change each:

* ``selected_input_dropout``   dropout on the input features only, not on the hidden layer.
* ``selected_hidden_dropout``  dropout on the hidden layer only, not on the input features.
* ``selected_two_hop``         the two heads propagate twice, ``A_hat (A_hat drop(H) W)``: each
  code sees three hops instead of two.
* ``selected_skip``            a skip connection around the heads' propagation:
  ``A_hat drop(H) W_mu + drop(H) W_skip`` (a node's own hidden features reach its code
  directly, not only averaged with its neighbours').
* ``selected_skip_decoder_bias``  the skip connection and the decoder bias (the two changes
  with the highest validation AUC).
* ``selected_two_hop_epochs400``  the two-hop heads for 400 epochs (at 200 their best epoch is
  near the end).
* ``selected_skip_decoder_bias_epochs400``  the skip connection and the decoder bias for 400
  epochs.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from common import (
    LATENT_OF,
    PAPER_TABLE4,
    Parser,
    add_common_args,
    dataset_name,
    fmt_runs,
    load_planetoid,
    out_dir,
    positive,
    progress_bar,
    run_metadata,
    set_threads,
    settings,
    summarize,
    write_json,
    wrote,
)
from torch import nn

from pyg_spherical import ScaledInnerProductDecoder, SphericalVGAE, VMFLatent, VonMisesFisher
from pyg_spherical.nn import GCNLatentEncoder
from pyg_spherical.repro.linkpred import Graph, LinkPredRun, make_split

ABLATIONS = ("table7", "epochs1000", "lr0.01", "kappa_min20", "no_sampling", "authors_grad",
             "eval_mean", "no_kl", "row_normalized", "nvgae_table7", "full_adjacency",
             "nvgae_full_adjacency", "eval_raw_loc", "lr0.01_eval_raw_loc")
#: one change each against the default S-VGAE of benchmarks/linkpred.py: config overrides
SELECTED_ABLATIONS = {
    "selected": {},
    "selected_plain": {"decoder": "plain"},
    "selected_fixed_scale": {"learn_scale": False},
    "selected_scale1": {"scale_init": 1.0},
    "selected_scale10": {"scale_init": 10.0},
    "selected_scale20": {"scale_init": 20.0},
    "selected_decoder_bias": {"decoder_bias": True},
    "selected_no_gcn_bias": {"bias": False},
    "selected_uniform_negatives": {"negatives": "uniform"},
    "selected_joint_bce": {"recon_average": "joint"},
    "selected_dim128": {"dim": 128},
    "selected_input_dropout": {"encoder": "input_dropout"},
    "selected_hidden_dropout": {"encoder": "hidden_dropout"},
    "selected_two_hop": {"encoder": "two_hop"},
    "selected_skip": {"encoder": "skip"},
    "selected_skip_decoder_bias": {"encoder": "skip", "decoder_bias": True},
    "selected_two_hop_epochs400": {"encoder": "two_hop", "epochs": 400},
    "selected_skip_decoder_bias_epochs400": {"encoder": "skip", "decoder_bias": True,
                                             "epochs": 400},
}
ABLATIONS = ABLATIONS + tuple(SELECTED_ABLATIONS)


# ------------------------------------------------------------------------- the ablated parts
class _ProposalTheta(torch.autograd.Function):
    r"""Identity on ``theta = arccos(omega)``; backward: ``d theta / d kappa`` at a fixed Beta draw.

    The Wood proposal is ``omega = (1 - (1 + b) eps) / (1 - (1 - b) eps)`` with
    ``b = (-2 kappa + sqrt(4 kappa^2 + (m-1)^2)) / (m - 1)``; inverting it for the accepted
    ``omega`` gives ``eps``, and ``d omega / d kappa = (d omega / d b)(db / d kappa)`` at that
    ``eps`` is what differentiating through the accepted proposal (the authors' code) yields.
    """

    @staticmethod
    def forward(ctx, kappa, theta, m):
        ctx.m = m
        ctx.save_for_backward(kappa, theta)
        return theta.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        kappa, theta = ctx.saved_tensors
        m = ctx.m
        k, om = kappa.double(), torch.cos(theta.double())
        c = torch.sqrt(4 * k * k + (m - 1) ** 2)
        b = (m - 1) / (2 * k + c)
        eps = (1 - om) / ((1 + b) - om * (1 - b))
        num, den = 1 - (1 + b) * eps, 1 - (1 - b) * eps
        domega_db = -eps * (den + num) / den ** 2
        db_dk = (-2 + 4 * k / c) / (m - 1)
        # d theta / d kappa = -(d omega / d kappa) / sin(theta)
        sin = torch.sin(theta.double()).clamp_min(1e-300)
        return grad * (-(domega_db * db_dk) / sin).to(grad.dtype), None, None


class AuthorsVonMisesFisher(VonMisesFisher):
    """The vMF with the authors' gradient in ``kappa``: the derivative through the accepted Wood
    proposal at its fixed Beta draw (``g_rep`` of eq. 30) without the correction term
    ``g_cor``, hence biased. The same samples and gradient in ``loc``; on ``S^2``, which their
    code samples by the exact inverse CDF, the library's exact gradient is theirs too."""

    def _kappa_gradient(self, kappa, theta):
        if self._m == 3:
            return super()._kappa_gradient(kappa, theta)
        return _ProposalTheta.apply(kappa, theta, self._m)


class AuthorsVMFLatent(VMFLatent):
    """:class:`~pyg_spherical.nn.VMFLatent` whose posterior is :class:`AuthorsVonMisesFisher`."""

    def _posterior(self, loc, kappa):
        return AuthorsVonMisesFisher(loc, kappa, validate_args=False)


class MeanLatent(VMFLatent):
    """A vMF latent that never samples: ``z = mu`` in training too (a deterministic spherical
    graph auto-encoder; the encoder keeps its dropout)."""

    def train(self, mode: bool = True):
        return super().train(False)


class VariantEncoder(GCNLatentEncoder):
    """The GCN encoder with one change (``variant``): dropout on the input only
    (``input_dropout``) or on the hidden layer only (``hidden_dropout``), a second
    propagation of the heads (``two_hop``), or a linear skip from the hidden layer to the mean
    direction (``skip``). Built from the run's encoder, so that it starts from the same weights."""

    def __init__(self, base: GCNLatentEncoder, variant: str):
        with torch.random.fork_rng(devices=[]):  # the run's random stream stays as it was
            super().__init__(base.in_channels, base.hidden_channels, base.out_channels,
                             base.dropout, latent=base.latent_kind, cached=base.cached,
                             bias=base.conv1.bias is not None)
        self.load_state_dict(base.state_dict())
        self.variant = variant
        if variant == "skip":  # drawn from the run's seeded stream, after the GCN weights
            self.skip = nn.Linear(base.hidden_channels, base.out_channels, bias=False)

    def _input_layer(self, x, ei, ew, p):
        """The first GCN layer with input dropout ``p`` (sparse features: on their stored
        entries, as the library's encoder does)."""
        if not x.is_sparse:
            return self.conv1(F.dropout(x, p=p, training=self.training), ei, ew)
        dropout, self.dropout = self.dropout, p
        try:
            return self._sparse_input_conv(x, ei, ew)
        finally:
            self.dropout = dropout

    def forward(self, x, edge_index, edge_weight=None):
        ei, ew = self.normalized_adjacency(edge_index, x.size(0), edge_weight, dtype=x.dtype)
        p_in = 0.0 if self.variant == "hidden_dropout" else self.dropout
        p_hidden = 0.0 if self.variant == "input_dropout" else self.dropout
        h = self._input_layer(x, ei, ew, p_in).relu()
        h = F.dropout(h, p=p_hidden, training=self.training)
        loc, scale = self.conv_loc(h, ei, ew), self.conv_scale(h, ei, ew)
        if self.variant == "two_hop":
            loc, scale = (self.conv_loc.propagate(ei, x=t, edge_weight=ew) for t in (loc, scale))
        if self.variant == "skip":
            loc = loc + self.skip(h)
        return loc, scale


class AblatedVGAE(SphericalVGAE):
    """The model of a run with its objective ablated (``ablation`` and the run's ``cfg``):
    negatives uniform over all node pairs (``cfg["negatives"] == "uniform"``, edges not
    filtered out), the BCE as one mean over positives and negatives together
    (``cfg["recon_average"] == "joint"``, half of PyG's sum of the two means), Kipf & Welling's
    reference objective over the dense ``A_train + I`` (``*full_adjacency``), or no KL term."""

    def __init__(self, encoder, decoder, latent, ablation: str, cfg: dict):
        super().__init__(encoder, decoder, latent)
        self.ablation, self.cfg = ablation, cfg
        self._dense = None

    def recon_loss(self, z, pos_edge_index, neg_edge_index=None):
        if self.ablation.endswith("full_adjacency"):
            return self._full_adjacency_loss(z, pos_edge_index)
        if self.cfg.get("negatives") == "uniform":
            neg_edge_index = torch.randint(0, z.size(0), pos_edge_index.shape,
                                           device=pos_edge_index.device)
        recon = super().recon_loss(z, pos_edge_index, neg_edge_index)
        return recon / 2 if self.cfg.get("recon_average") == "joint" else recon

    def kl_loss(self, mu=None, logstd=None):
        if self.ablation == "no_kl":  # the KL term dropped (it is weighted by 1/N)
            return torch.zeros((), device=self.__mu__.device)
        return super().kl_loss(mu, logstd)

    def _full_adjacency_loss(self, z, pos_edge_index):
        """Weighted BCE over all ``N^2`` entries of ``A_train + I``: ``pos_weight = (N^2 - |A|)
        / |A|``, ``norm = N^2 / (2 (N^2 - |A|))``; every non-edge every epoch."""
        if self._dense is None:
            n = z.size(0)
            a = torch.zeros(n, n, device=z.device)
            a[pos_edge_index[0], pos_edge_index[1]] = 1.0
            edges = a.sum()
            self._dense = (a + torch.eye(n, device=z.device), (n * n - edges) / edges,
                           n * n / (2 * (n * n - edges)))
        labels, pos_weight, norm = self._dense
        return norm * torch.nn.functional.binary_cross_entropy_with_logits(
            z @ z.t(), labels, pos_weight=pos_weight)


class AblationRun(LinkPredRun):
    """A run of :mod:`pyg_spherical.repro.linkpred` with the latent, decoder, objective or
    evaluation of one ablation."""

    def __init__(self, model_name, cfg, graph, device, seed, ablation):
        self.ablation = ablation
        super().__init__(LATENT_OF[model_name], cfg, graph, device, seed)

    def _build_model(self, encoder, decoder):
        cfg = self.cfg
        # none of these parts draws random numbers: the model is initialised as in linkpred.py
        latent = {"kappa_min20": lambda: VMFLatent(cfg["dim"], min_concentration=20.0),
                  "authors_grad": lambda: AuthorsVMFLatent(cfg["dim"]),
                  "no_sampling": lambda: MeanLatent(cfg["dim"])}.get(self.ablation, lambda: None)()
        if "encoder" in cfg:
            encoder = VariantEncoder(encoder, cfg["encoder"])
        if "learn_scale" in cfg or "decoder_bias" in cfg:
            decoder = ScaledInnerProductDecoder(cfg["scale_init"],
                                                learn_scale=cfg.get("learn_scale", True),
                                                bias=cfg.get("decoder_bias", False))
        return AblatedVGAE(encoder, decoder, latent, self.ablation, cfg)

    @torch.no_grad()
    def evaluate(self, epoch):
        if self.ablation not in ("eval_mean", "eval_raw_loc", "lr0.01_eval_raw_loc"):
            return super().evaluate(epoch)
        m, g = self.model, self.g
        m.embed(g.x, g.train)
        # A_d(kappa) mu, or the raw (unnormalised) encoder mean
        z = m.posterior.mean if self.ablation == "eval_mean" else m.__mu__
        return self.record(epoch, z)


# ------------------------------------------------------------------------------------- CLI
def ablation_config(args, dataset, name):
    model = "vgae" if name.startswith("nvgae") else "svgae"
    # the first ablations keep the Table 7 setting and plain decoder they were first run with
    selected = name in SELECTED_ABLATIONS
    args = argparse.Namespace(**vars(args))  # the caller's flags stay as given
    args.paper_settings, args.decoder, args.scale_init = not selected, (
        "scaled" if selected else "plain"), None
    cfg = settings(args, dataset, model)
    if selected:
        return model, {**cfg, **SELECTED_ABLATIONS[name]}, args
    if name == "epochs1000" and args.epochs is None:
        cfg["epochs"] = 1000
    if name.startswith("lr0.01"):
        cfg["lr"] = 0.01
    return model, cfg, args


def parse_args(argv=None):
    p = Parser(description="S-VGAE ablations against the paper's Table 4 (see module docstring).")
    p.add_argument("--dataset", type=dataset_name, default="Cora")
    p.add_argument("--runs", type=positive(int), default=5)
    p.add_argument("--epochs", type=positive(int), default=None,
                   help="train every ablation this many epochs instead of its own budget "
                        "(smoke runs)")
    p.add_argument("--only", default=",".join(ABLATIONS),
                   help=f"comma-separated subset of {', '.join(ABLATIONS)}")
    p.add_argument("--out", default=None,
                   help="result name (default linkpred_diagnostics_<dataset>)")
    add_common_args(p)
    args = p.parse_args(argv)
    args.lr = args.dropout = args.dim = None
    args.hidden = 32
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in ABLATIONS]
    if bad:
        p.error(f"unknown ablation(s) {bad}; choose from {', '.join(ABLATIONS)}")
    return args, names


def run_ablation(args, data, name, device) -> tuple[list[dict], dict | None]:
    """``--runs`` runs of one ablation (both models for ``row_normalized``): per run, the
    summary of each model; or, if its training breaks, the failure."""
    model, cfg, run_args = ablation_config(args, args.dataset, name)
    models = [model] if name != "row_normalized" else ["svgae", "vgae"]
    bar = progress_bar(args, args.runs * cfg["epochs"], name)
    runs = []
    seed = args.seed
    try:
        for r in range(args.runs):
            seed = args.seed + r
            graph = Graph(data, make_split(data, seed), device)
            trs = {m: AblationRun(m, settings(run_args, args.dataset, m)
                                  if name == "row_normalized" else cfg,
                                  graph, device, seed, name) for m in models}
            for epoch in range(cfg["epochs"]):
                for tr in trs.values():
                    tr.step()
                    tr.evaluate(epoch)
                bar.update(1)
            runs.append({m: dict(tr.summary(), seed=seed) for m, tr in trs.items()})
    except (RuntimeError, ValueError) as e:
        # an ablation whose training breaks (e.g. a code with no direction once the GCN has
        # no bias) is a finding: recorded in one line, and the others go on
        return runs, {"config": cfg, "seed": seed, "error": str(e).splitlines()[0]}
    finally:
        bar.close()
    return runs, None


def print_table(args, rows, failed) -> None:
    print(f"\nS-VGAE ablations on {args.dataset} ({args.runs} runs; test %, mean ± s.e.)")
    paper = PAPER_TABLE4[args.dataset]
    print(f"{'ablation':26s} {'val AUC':>15s} {'AUC':>15s} {'AP':>15s} {'best ep':>8s} "
          f"{'kappa/sigma':>11s}  paper AUC/AP")
    for key, row in rows.items():
        s, m = row["summary"], row["model"]
        spread = [r.get("final_kappa_median", r.get("final_sigma_median")) for r in row["runs"]]
        pa = paper[m]
        n = s["runs"]
        print(f"{key:26s} {fmt_runs(s['val_auc']['mean'], s['val_auc']['se'], n):>15s} "
              f"{fmt_runs(s['test_auc']['mean'], s['test_auc']['se'], n):>15s} "
              f"{fmt_runs(s['test_ap']['mean'], s['test_ap']['se'], n):>15s} "
              f"{s['best_epoch_mean']:8.0f} "
              f"{sum(spread) / len(spread):11.2f}  {pa['AUC'][0]} / {pa['AP'][0]}")
    for name, f in failed.items():
        print(f"{name:26s} failed: {f['error']}")


def main(argv=None):
    args, names = parse_args(argv)
    set_threads(args)
    device = args.device
    started = time.time()
    data = load_planetoid(args, args.dataset)
    normalized = None
    rows, failed = {}, {}
    name_out = args.out or f"linkpred_diagnostics_{args.dataset.lower()}"
    payload = {"meta": run_metadata(args), "dataset": args.dataset, "ablations": rows,
               "failed": failed}
    for name in names:
        d = data
        if name == "row_normalized":
            if normalized is None:
                import torch_geometric.transforms as T
                normalized = T.NormalizeFeatures()(data.clone())
            d = normalized
        runs, failure = run_ablation(args, d, name, device)
        if failure is not None:
            failed[name] = failure
            print(f"{name}: failed at seed {failure['seed']}: {failure['error']}",
                  file=sys.stderr)
            continue
        _, cfg, run_args = ablation_config(args, args.dataset, name)
        for m in runs[0]:
            key = name if len(runs[0]) == 1 else f"{name}:{m}"
            rs = [run[m] for run in runs]
            rows[key] = {"model": m, "config": cfg if len(runs[0]) == 1 else
                         settings(run_args, args.dataset, m), "runs": rs,
                         "summary": summarize(rs)}
        # written after every ablation: a long run that stops keeps what it measured
        write_json(name_out, payload, started, out_dir(args))
    print_table(args, rows, failed)
    path = write_json(name_out, payload, started, out_dir(args))
    wrote(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
