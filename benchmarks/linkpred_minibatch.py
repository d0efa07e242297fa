#!/usr/bin/env python
"""Mini-batch S-VGAE link prediction with PyG's ``LinkNeighborLoader`` (no pyg-lib needed).

    python benchmarks/linkpred_minibatch.py [--dataset Cora] [--epochs 20] [--device cuda]

The loop is PyG's: the loader samples a subgraph around each batch of training edges and
draws one negative pair per positive; ``link_batch_loss`` encodes the subgraph, decodes
``edge_label_index`` and adds the KL of the batch's seed nodes divided by the number of nodes
of the graph (the full-batch weighting). The sampling runs on the CPU (where the graph is);
each batch goes to ``--device``, from pinned memory on CUDA. Inference here embeds the whole
(small) graph.
``benchmarks/linkpred_large.py`` is the same loop for large graphs, with timing and DDP.
It prints and writes nothing else.
"""
import sys

import torch
from common import Parser, add_common_args, load_planetoid, positive, progress_bar, set_threads
from torch_geometric.loader import LinkNeighborLoader

from pyg_spherical import SphericalGCNEncoder, SphericalVGAE
from pyg_spherical.minibatch import link_batch_loss
from pyg_spherical.repro.datasets import link_split
from pyg_spherical.sampling import make_neighbor_sampler


def main(argv=None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("Cora", "CiteSeer", "PubMed"), default="Cora")
    p.add_argument("--epochs", type=positive(int), default=20, help="(default 20)")
    add_common_args(p, outputs=False)
    args = p.parse_args(argv)
    set_threads(args)
    device = args.device

    torch.manual_seed(args.seed)
    data = load_planetoid(args, args.dataset)
    split = link_split(data, seed=args.seed)
    train = data.clone()
    train.edge_index = split.train_pos_edge_index  # the graph the encoder sees (both directions)
    seeds = train.edge_index[:, train.edge_index[0] < train.edge_index[1]]  # each edge once

    fanout = [10, 5]  # one per GCN layer
    model = SphericalVGAE(SphericalGCNEncoder(data.num_features, 32, 16)).to(device)
    sampler = make_neighbor_sampler(train, fanout, encoder=model)  # PyG's if pyg-lib is there
    cuda = device.type == "cuda"
    loader = LinkNeighborLoader(train, fanout, edge_label_index=seeds, neg_sampling="binary",
                                batch_size=256, shuffle=True, neighbor_sampler=sampler,
                                pin_memory=cuda)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, edge_index = train.x.to(device), train.edge_index.to(device)  # for inference
    val = (split.val_pos_edge_index.to(device), split.val_neg_edge_index.to(device))
    test = (split.test_pos_edge_index.to(device), split.test_neg_edge_index.to(device))

    bar = progress_bar(args, args.epochs * len(loader), args.dataset)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in loader:
            batch = batch.to(device, non_blocking=cuda)  # pinned: no wait for the copy
            opt.zero_grad()
            loss = link_batch_loss(model, batch, train.num_nodes)
            loss.backward()
            opt.step()
            bar.update(1)
        z = model.embed(x, edge_index)
        auc, ap = model.test(z, *val)
        bar.write(f"epoch {epoch:3d}  loss {loss.item():.4f}  val AUC {auc:.4f}  AP {ap:.4f}",
                  file=sys.stdout)
    bar.close()
    z = model.embed(x, edge_index)
    auc, ap = model.test(z, *test)
    print(f"test AUC {auc:.4f}  AP {ap:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
