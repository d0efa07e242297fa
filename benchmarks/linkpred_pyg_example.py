#!/usr/bin/env python
r"""PyG's ``examples/autoencoder.py`` (variational, GCN) with only the model class swapped.

A third row swaps the encoder too: ``SphericalGCNEncoder(in, 32, 16)`` with ``SphericalVGAE``,
both at their library defaults, in the same loop.

The encoder, split and loop are PyG's example, verbatim in substance: ``VariationalGCNEncoder``
(GCN layers ``in -> 2d -> (mu, logstd)`` of width ``d = 16``, with bias), ``RandomLinkSplit``
(5 % validation, 10 % test, undirected), Adam at lr 0.01, loss ``recon_loss + kl_loss / N``.
Differences from the example, as the comparison needs: raw features (no ``NormalizeFeatures``),
200 epochs, and the test AUC / AP at the epoch of best validation AUC. ``VGAE`` is PyG's own
class; ``SphericalVGAE`` gets the same encoder object type, unchanged: its ``(N, d)`` log-std
head is averaged into the vMF concentration, and the latent width is read at the first call.

Example::

    python benchmarks/linkpred_pyg_example.py --dataset Cora --runs 3
"""
from __future__ import annotations

import random
import sys
import time

import torch
from common import (
    DATASETS,
    Parser,
    add_common_args,
    dataset_name,
    fmt,
    load_planetoid,
    mean_se,
    out_dir,
    positive,
    run_metadata,
    set_threads,
    write_json,
    wrote,
)


class VariationalGCNEncoder(torch.nn.Module):
    """The encoder of PyG's ``examples/autoencoder.py``."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1 = GCNConv(in_channels, 2 * out_channels)
        self.conv_mu = GCNConv(2 * out_channels, out_channels)
        self.conv_logstd = GCNConv(2 * out_channels, out_channels)

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        return self.conv_mu(x, edge_index), self.conv_logstd(x, edge_index)


def example_encoder(in_channels, dim):
    return VariationalGCNEncoder(in_channels, dim)


def our_encoder(in_channels, dim):
    """``SphericalGCNEncoder(in, 32, dim)`` at its defaults: what a user of our encoder writes."""
    from pyg_spherical import SphericalGCNEncoder

    return SphericalGCNEncoder(in_channels, 32, dim)


def run(model_cls, make_encoder, data, seed, epochs, lr, dim, device):
    """One seed: the example's split, model and loop; test scores at the best validation AUC."""
    import torch_geometric.transforms as T

    torch.manual_seed(seed)
    random.seed(seed)
    train, val, test = T.RandomLinkSplit(num_val=0.05, num_test=0.1, is_undirected=True,
                                         split_labels=True,
                                         add_negative_train_samples=False)(data.clone())
    train, val, test = train.to(device), val.to(device), test.to(device)
    model = model_cls(make_encoder(data.num_features, dim)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = {"val_auc": -1.0}
    for epoch in range(epochs):
        model.train()
        opt.zero_grad()
        z = model.encode(train.x, train.edge_index)
        loss = model.recon_loss(z, train.pos_edge_label_index)
        loss = loss + (1 / train.num_nodes) * model.kl_loss()
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            z = model.encode(val.x, val.edge_index)
            val_auc, _ = model.test(z, val.pos_edge_label_index, val.neg_edge_label_index)
            if val_auc > best["val_auc"]:
                z = model.encode(test.x, test.edge_index)
                auc, ap = model.test(z, test.pos_edge_label_index, test.neg_edge_label_index)
                best = {"epoch": epoch, "val_auc": float(val_auc), "test_auc": float(auc),
                        "test_ap": float(ap), "seed": seed}
    return best


def main(argv=None) -> int:
    from torch_geometric.nn import VGAE

    from pyg_spherical import SphericalVGAE

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=dataset_name, default="Cora", help=f"one of {DATASETS}")
    p.add_argument("--runs", type=positive(int), default=3, help="seeds 0..runs-1 (default 3)")
    p.add_argument("--epochs", type=positive(int), default=200)
    p.add_argument("--lr", type=positive(float), default=0.01)
    p.add_argument("--dim", type=positive(int), default=16, help="latent width (example: 16)")
    add_common_args(p, seed_default=None)
    args = p.parse_args(argv)
    if args.dim < 2:
        p.error(f"--dim must be >= 2, got {args.dim}")
    set_threads(args)
    device = args.device
    started = time.time()
    data = load_planetoid(args, args.dataset)
    # PyG's VGAE and SphericalVGAE with the example's encoder (only the class swapped), and
    # SphericalVGAE with our encoder at its defaults
    models = {"VGAE (PyG)": (VGAE, example_encoder),
              "SphericalVGAE": (SphericalVGAE, example_encoder),
              "SphericalVGAE + SphericalGCNEncoder": (SphericalVGAE, our_encoder)}
    runs = {name: [] for name in models}
    for seed in range(args.runs):
        for name, (cls, enc) in models.items():
            runs[name].append(run(cls, enc, data, seed, args.epochs, args.lr, args.dim, device))
            r = runs[name][-1]
            print(f"seed {seed} {name:35s} test AUC {100 * r['test_auc']:.2f} "
                  f"AP {100 * r['test_ap']:.2f} (best epoch {r['epoch']})", flush=True)
    summary = {}
    print(f"\n{args.dataset}, PyG's autoencoder example, {args.runs} seeds (test %, mean ± s.e.)")
    for name in models:
        summary[name] = {}
        cells = []
        for key in ("test_auc", "test_ap"):
            m, se = mean_se([100 * r[key] for r in runs[name]])
            summary[name][key] = {"mean": m, "se": se}
            cells.append(fmt(m, se) if args.runs > 1 else fmt(m))
        print(f"{name:35s} AUC {cells[0]:>14s}   AP {cells[1]:>14s}")
    path = write_json(f"linkpred_pyg_example_{args.dataset.lower()}",
                      {"meta": run_metadata(args), "runs": runs, "summary": summary}, started,
                      out_dir(args))
    wrote(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
