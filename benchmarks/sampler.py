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
               one shared mean direction (its API takes a single mu)

Each cell is the median over ``--repeats`` timed calls (after a warm-up), the methods
interleaved so that background load affects them alike; compare the ratios, which are measured
in the same process. Targets at m = 10: vmf within 5x of gauss (4x: stretch), power within 2.5x;
power and vmf faster than powersph in every cell.

    python benchmarks/sampler.py                       # full table, writes runs/sampler.json
    python benchmarks/sampler.py --batch 10000 --repeats 3 --dims 3 10 --kappas 1 100
    python benchmarks/sampler.py --out-dir /tmp/bench       # anywhere else
    python benchmarks/sampler.py --compile                 # vmf with the compiled quadrature
"""
from __future__ import annotations

import argparse
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
    try:
        from scipy.stats import vonmises_fisher

        mu_np = loc0[0].double().cpu().numpy()

        def scipy_rvs():
            vonmises_fisher(mu_np, kappa).rvs(batch, random_state=1)

        methods["scipy"] = scipy_rvs
    except ImportError:  # pragma: no cover
        pass
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
    path = write_json(args.out, {"meta": meta, "rows": rows}, started, out_dir(args))
    wrote(path)


if __name__ == "__main__":
    main()
