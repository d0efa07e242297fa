"""Throughput of the reparameterised samplers on the sphere: ``rsample`` + ``backward``.

Side by side, in one run and on the same inputs (batch 100k by default):

- ``vmf``      pyg_spherical.VonMisesFisher.rsample + backward to (loc, concentration)
               (Ulrich/Wood rejection, implicit-reparameterisation gradient in kappa)
- ``power``    pyg_spherical.PowerSpherical.rsample + backward to (loc, concentration)
               (a Beta variate from one Gamma draw, no rejection)
- ``gauss``    torch.distributions.Normal.rsample + backward of the same shape (the N-VAE cost)
- ``powersph`` power_spherical.PowerSpherical.rsample + backward (if the package is installed;
               ``pip install power-spherical``): the reference implementation of the
               Power Spherical distribution
- ``scipy``    scipy.stats.vonmises_fisher(mu, kappa).rvs(batch): sampling only, no gradient,
               one shared mean direction (its API takes a single mu); CPU runs only

Each cell is the median over ``--repeats`` timed calls (after a warm-up), the methods
interleaved so that background load affects them alike; compare the ratios, which are measured
in the same process. Targets at m = 10: vmf within 5x of gauss (4x: stretch), power within 2.5x;
power and vmf faster than powersph in every cell.

``--syncs`` counts host-device synchronisations instead, per call of the samplers above and per
training step (an MNIST VAE step, a full-batch S-VGAE / N-VGAE step on Cora, a mini-batch
link-prediction step on Cora), and writes ``sampler_syncs.json``. On CUDA they are what
``torch.cuda.set_sync_debug_mode("warn")`` reports; elsewhere a proxy counts the operations that
would synchronise on an accelerator, on the accelerator's code path
(``pyg_spherical.repro.host_syncs.HostSyncCounter``). Targets: at most one per step on the vMF path,
none on the Gaussian path.

    python benchmarks/sampler.py                       # full table, writes runs/sampler.json
    python benchmarks/sampler.py --batch 10000 --repeats 3 --dims 3 10 --kappas 1 100
    python benchmarks/sampler.py --out-dir /tmp/bench       # anywhere else
    python benchmarks/sampler.py --compile                 # vmf with the compiled quadrature
    python benchmarks/sampler.py --syncs --device cuda     # host syncs per training step
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import time

import torch
from common import (
    Parser,
    add_common_args,
    out_dir,
    positive,
    progress_bar,
    run_metadata,
    set_threads,
    write_json,
    wrote,
)

from pyg_spherical import PowerSpherical, VonMisesFisher


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def make_methods(batch, m, kappa, device, dtype):
    g = torch.Generator(device="cpu").manual_seed(0)
    loc0 = torch.nn.functional.normalize(torch.randn(batch, m, generator=g, dtype=dtype), dim=-1).to(device)
    loc = loc0.clone().requires_grad_(True)
    kap = torch.full((batch,), float(kappa), dtype=dtype, device=device, requires_grad=True)
    mu = torch.randn(batch, m, dtype=dtype, device=device, requires_grad=True)
    sd = torch.full((batch, m), 0.5, dtype=dtype, device=device, requires_grad=True)

    def vmf():
        z = VonMisesFisher(loc, kap, validate_args=False).rsample()
        z.sum().backward()

    def power():
        z = PowerSpherical(loc, kap, validate_args=False).rsample()
        z.sum().backward()

    def gauss():
        z = torch.distributions.Normal(mu, sd, validate_args=False).rsample()
        z.sum().backward()

    methods = {"vmf": vmf, "power": power, "gauss": gauss}
    try:
        from power_spherical import PowerSpherical as PackagePowerSpherical

        def powersph():
            z = PackagePowerSpherical(loc, kap, validate_args=False).rsample()
            z.sum().backward()

        methods["powersph"] = powersph
    except ImportError:
        pass
    if device.type == "cpu":  # a CPU sampler: no reference for another device's timings
        from scipy.stats import vonmises_fisher

        mu_np = loc0[0].double().cpu().numpy()

        def scipy_rvs():
            vonmises_fisher(mu_np, kappa).rvs(batch, random_state=1)

        methods["scipy"] = scipy_rvs
    return methods


def time_methods(methods, repeats, device):
    times = {k: [] for k in methods}
    for fn in methods.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in methods.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


# ----------------------------------------------------------------------------------- syncs
def _forever(loader):
    while True:
        yield from loader


def vae_step(latent, device, batch=64):
    """An MNIST VAE training step (the paper's architecture, d = 5) on random images: the next
    batch of a :class:`DynamicBinarizedLoader` on the device, the loss and its backward."""
    from pyg_spherical.repro.datasets import DynamicBinarizedLoader
    from pyg_spherical.vae import VAE

    torch.manual_seed(0)
    model = VAE(latent, 5).to(device)
    images = torch.rand(8 * batch, 784, generator=torch.Generator().manual_seed(0))
    batches = _forever(DynamicBinarizedLoader(images, batch_size=batch, shuffle=True, seed=0,
                                              device=device))

    def step():
        loss, _, _ = model.loss(next(batches), 1.0)
        loss.backward()

    return model, step


def _graph(data=None):
    """``data`` (default: Cora, the packaged copy) and its link split."""
    from pyg_spherical.repro.datasets import link_split, load_planetoid

    data = load_planetoid("Cora") if data is None else data
    return data, link_split(data, seed=0)


def vgae_step(latent, device, negatives="device", data=None):
    """A full-batch VGAE epoch on Cora (or ``data``) as ``benchmarks/linkpred.py`` trains it
    (sparse features, cached GCN normalisation): encode, reconstruction with one negative pair
    per edge (uniform pairs drawn on the device, or PyG's ``negative_sampling``:
    ``negatives="pyg"``), KL / N, and the backward pass."""
    from pyg_spherical import SphericalVGAE
    from pyg_spherical.nn import GCNLatentEncoder

    data, split = _graph(data)
    x = data.x.to(device)
    x = x if device.type == "mps" else x.to_sparse()
    ei, n = split.train_pos_edge_index.to(device), data.num_nodes
    torch.manual_seed(0)
    enc = GCNLatentEncoder(data.num_features, 32, 16, 0.0, latent=latent, cached=True)
    model = SphericalVGAE(enc).to(device)

    def step():
        z = model.encode(x, ei)
        neg = torch.randint(0, n, ei.shape, device=device) if negatives == "device" else None
        loss = model.recon_loss(z, ei, neg) + model.kl_loss() / n
        loss.backward()

    return model, step


def minibatch_step(latent, device, batch_size=256, data=None):
    """A mini-batch link-prediction step on Cora (or ``data``): a ``LinkNeighborLoader`` batch
    (pure-torch sampler, fanouts [10, 5], binary negatives) already copied to the device, then
    :func:`~pyg_spherical.minibatch.link_batch_loss` and its backward."""
    from torch_geometric.loader import LinkNeighborLoader

    from pyg_spherical import SphericalVGAE
    from pyg_spherical.minibatch import link_batch_loss
    from pyg_spherical.nn import GCNLatentEncoder
    from pyg_spherical.sampling import TorchNeighborSampler

    data, split = _graph(data)
    train = data.clone()
    train.edge_index = split.train_pos_edge_index
    seeds = train.edge_index[:, train.edge_index[0] < train.edge_index[1]]
    torch.manual_seed(0)
    loader = LinkNeighborLoader(train, [10, 5], edge_label_index=seeds, neg_sampling="binary",
                                batch_size=batch_size, shuffle=True,
                                neighbor_sampler=TorchNeighborSampler(train, [10, 5]))
    batches = itertools.cycle([b.to(device) for b in itertools.islice(loader, 4)])
    enc = GCNLatentEncoder(data.num_features, 32, 16, 0.0, latent=latent)
    model = SphericalVGAE(enc).to(device)

    def step():
        link_batch_loss(model, next(batches), train.num_nodes).backward()

    return model, step


def sampler_call(latent, device, batch=100_000, m=10, kappa=100.0):
    """``rsample`` + backward of one sampler of the timing table (m = 10, kappa = 100)."""
    torch.manual_seed(0)
    name = "gauss" if latent == "normal" else latent
    return None, make_methods(batch, m, kappa, device, torch.float32)[name]


#: (label, latent, builder, counts toward the targets) of every row of the ``--syncs`` table;
#: PyG's negative_sampling (benchmarks/linkpred.py's default) is shown for reference: it moves
#: the edges to the host and back, for either latent
SYNC_CASES = [
    *(("rsample+backward m=10, batch 100k", lat, sampler_call, True)
      for lat in ("vmf", "power", "normal")),
    *(("MNIST VAE step, batch 64", lat, vae_step, True) for lat in ("vmf", "power", "normal")),
    *(("full-batch VGAE step, Cora", lat, vgae_step, True) for lat in ("vmf", "normal")),
    *(("  with PyG's negative_sampling", lat,
       lambda lat, dev: vgae_step(lat, dev, negatives="pyg"), False) for lat in ("vmf", "normal")),
    *(("mini-batch step, Cora, batch 256", lat, minibatch_step, True)
      for lat in ("vmf", "normal")),
]


def count_step_syncs(model, step, device, steps: int) -> list:
    """The :class:`HostSyncCounter` of each of ``steps`` training steps after a warm-up step
    (lazy initialisation, caches). The optimiser's step is counted on CUDA only: on the CPU,
    Adam reads its step counters with ``item()``, which on CUDA stay on the host."""
    from pyg_spherical.repro.host_syncs import HostSyncCounter

    opt = torch.optim.Adam(model.parameters(), lr=1e-3) if model is not None else None
    counted = []
    for i in range(steps + 1):
        counter = HostSyncCounter(device)
        with counter if i else contextlib.nullcontext():
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            step()
            if opt is not None and device.type == "cuda":
                opt.step()
        if opt is not None and device.type != "cuda":
            opt.step()
        if i:
            counted.append(counter)
    return counted


def run_syncs(args, device) -> dict:
    rows = []
    for label, latent, build, target in SYNC_CASES:
        model, step = build(latent, device)
        counters = count_step_syncs(model, step, device, args.sync_steps)
        counts = [c.count for c in counters]
        packages = {}
        for c in counters:
            for k, v in c.by_package().items():
                packages[k] = max(packages.get(k, 0), v)
        rows.append({"step": label.strip(), "latent": latent, "target": target,
                     "max": max(counts),
                     "median": statistics.median(counts), "counts": counts,
                     "max_by_package": packages,
                     "origins": sorted({f"{e.op} @ {e.origin}" for c in counters
                                        for e in c.events})})
    how = ("torch.cuda.set_sync_debug_mode" if device.type == "cuda" else
           "the CPU proxy (what would synchronise on an accelerator, on its code path)")
    print(f"\nhost-device syncs per step, {device}, counted by {how}; max (median) over "
          f"{args.sync_steps} steps after a warm-up step")
    header = (f"{'step':34s} {'latent':>7s} {'syncs':>6s} {'median':>7s} {'pyg_spherical':>14s} "
              f"{'torch_geometric':>16s} {'other':>6s}")
    print(header)
    print("-" * len(header))
    for (label, *_), r in zip(SYNC_CASES, rows):
        pk = r["max_by_package"]
        other = sum(v for k, v in pk.items() if k not in ("pyg_spherical", "torch_geometric"))
        print(f"{label:34s} {r['latent']:>7s} {r['max']:>6d} {r['median']:>7g} "
              f"{pk.get('pyg_spherical', 0):>14d} {pk.get('torch_geometric', 0):>16d} "
              f"{other:>6d}")
    for latent, limit in (("vmf", 1), ("normal", 0)):
        worst = max(r["max"] for r in rows if r["latent"] == latent and r["target"])
        print(f"target at most {limit} per step on the {latent} path: worst {worst} "
              f"({'met' if worst <= limit else 'missed'}; PyG's negative_sampling row excluded)")
    return {"rows": rows, "counted_by": how}


def print_table(args, rows, device) -> None:
    """The timing table and the targets it is held to."""
    cols = [c for c in ("vmf", "power", "gauss", "powersph", "scipy") if c in rows[0]["ms"]]
    ratios = [r for r in ("vmf_over_gauss", "power_over_gauss", "vmf_over_powersph",
                          "power_over_powersph") if r in rows[0]]
    short = {"vmf_over_gauss": "vmf/gauss", "power_over_gauss": "power/gauss",
             "vmf_over_powersph": "vmf/powersph", "power_over_powersph": "power/powersph"}
    header = f"{'m':>4} {'kappa':>7} | " + " ".join(f"{c + ' ms':>11}" for c in cols) + " | " + \
        " ".join(f"{short[r]:>14}" for r in ratios)
    print(f"\nrsample + backward, batch {args.batch}, {args.dtype}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}"
          + (", vmf quadrature compiled" if args.compile else ""))
    print(header)
    print("-" * len(header))
    for r in rows:
        line = f"{r['m']:>4} {r['kappa']:>7g} | " + " ".join(f"{r['ms'][c]:>11.2f}" for c in cols)
        line += " | " + " ".join(f"{r[q]:>14.2f}" for q in ratios)
        print(line)
    for name, limit in (("vmf", 5.0), ("power", 2.5)):
        at10 = [r[f"{name}_over_gauss"] for r in rows if r["m"] == 10]
        if at10:
            print(f"target {name} <= {limit:g}x gauss at m = 10: worst {max(at10):.2f}x "
                  f"({'met' if max(at10) <= limit else 'missed'})")
    if "powersph" in cols:
        for name in ("power", "vmf"):
            worst = max(r[f"{name}_over_powersph"] for r in rows)
            print(f"target {name} faster than power-spherical: worst ratio {worst:.2f} "
                  f"({'met' if worst < 1 else 'missed'})")


def main(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--batch", type=positive(int), default=100_000)
    p.add_argument("--dims", type=positive(int), nargs="+", default=[3, 10, 100],
                   help="ambient dimensions m (>= 2)")
    p.add_argument("--kappas", type=positive(float), nargs="+", default=[1, 10, 100, 1000])
    p.add_argument("--repeats", type=positive(int), default=7)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--compile", action="store_true",
                   help="vmf: the torch.compile'd implicit-gradient quadrature "
                        "(pyg_spherical.distributions.compile_quadrature); compiled in the "
                        "warm-up, not timed")
    p.add_argument("--syncs", action="store_true",
                   help="count host-device syncs per sampler call and training step instead of "
                        "timing (writes <out>_syncs.json)")
    p.add_argument("--sync-steps", type=positive(int), default=5,
                   help="with --syncs: counted steps per row after a warm-up (default 5)")
    p.add_argument("--out", default="sampler", help="result name (sampler)")
    add_common_args(p, data=False, device_default="cpu", seed_default=None)
    args = p.parse_args(argv)
    if min(args.dims) < 2:
        p.error(f"--dims must be >= 2 (the sphere S^(m-1) in R^m), got {min(args.dims)}")
    top = torch.finfo(getattr(torch, args.dtype)).max
    if max(args.kappas) > top:
        p.error(f"argument --kappas: {max(args.kappas):g} overflows {args.dtype} (max {top:.3g})")
    set_threads(args)
    if args.compile:
        from pyg_spherical.distributions import compile_quadrature

        compile_quadrature()
    device = args.device
    dtype = getattr(torch, args.dtype)
    started = time.time()
    meta = run_metadata(args)
    if args.syncs:
        res = run_syncs(args, device)
        path = write_json(f"{args.out}_syncs", {"meta": meta, **res}, started, out_dir(args))
        wrote(path)
        return
    rows = []
    grid = [(m, k) for m in args.dims for k in args.kappas]
    bar = progress_bar(args, len(grid), "sampler")
    for m, k in grid:
        torch.manual_seed(0)
        ms = time_methods(make_methods(args.batch, m, k, device, dtype), args.repeats, device)
        row = {"m": m, "kappa": k, "ms": ms,
               "vmf_over_gauss": ms["vmf"] / ms["gauss"],
               "power_over_gauss": ms["power"] / ms["gauss"]}
        if "powersph" in ms:
            row["vmf_over_powersph"] = ms["vmf"] / ms["powersph"]
            row["power_over_powersph"] = ms["power"] / ms["powersph"]
        rows.append(row)
        bar.update(1)
    bar.close()

    print_table(args, rows, device)
    path = write_json(args.out, {"meta": meta, "rows": rows}, started, out_dir(args))
    wrote(path)


if __name__ == "__main__":
    main()
