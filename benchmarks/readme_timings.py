"""Time the README's commands as written, one after another, and record how busy the machine was.

Each command runs in a subprocess with its outputs sent to a temporary folder (``--out-dir``,
so the checkout stays clean), one torch thread (every CLI's default) and no progress bars. Each
row records the wall time and how often (sampled twice a second) another process was running
beside it, so that a figure taken beside other jobs can be labelled "loaded" (``idle``: in under
a quarter of the samples; on two cores a one-thread command then has a core to itself).

    python benchmarks/readme_timings.py                    # all rows, writes runs/readme_timings.json
    python benchmarks/readme_timings.py --only cora sampler
    python benchmarks/readme_timings.py --refresh          # results/readme_timings.json (README)

The MNIST row trains ``--epochs`` epochs of the Table 1 model without the test evaluation and
reports the median seconds per epoch; PubMed and MNIST rows need ``$PYG_SPHERICAL_DATA``.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    REPO,
    Parser,
    add_common_args,
    out_dir,
    positive,
    run_metadata,
    write_json,
    wrote,
)

PY = sys.executable
# name -> (README command, argv run here after "python"; "{out}" is a temporary folder)
ROWS = {
    "quick_start": ("README quick start snippet", None),
    "cora": ("python benchmarks/linkpred.py --dataset Cora",
             ["benchmarks/linkpred.py", "--dataset", "Cora", "--out-dir", "{out}"]),
    "citeseer": ("python benchmarks/linkpred.py --dataset CiteSeer",
                 ["benchmarks/linkpred.py", "--dataset", "CiteSeer", "--out-dir", "{out}"]),
    "cora_pvgae": ("python benchmarks/linkpred.py --dataset Cora --model pvgae",
                   ["benchmarks/linkpred.py", "--dataset", "Cora", "--model", "pvgae",
                    "--out-dir", "{out}"]),
    "diagnostics": ("python benchmarks/linkpred_diagnostics.py --dataset Cora --only table7",
                    ["benchmarks/linkpred_diagnostics.py", "--dataset", "Cora", "--only",
                     "table7", "--out-dir", "{out}"]),
    "pyg_example": ("python benchmarks/linkpred_pyg_example.py",
                    ["benchmarks/linkpred_pyg_example.py", "--out-dir", "{out}"]),
    "minibatch": ("python benchmarks/linkpred_minibatch.py",
                  ["benchmarks/linkpred_minibatch.py"]),
    "large": ("python benchmarks/linkpred_large.py --nodes 1000000",
              ["benchmarks/linkpred_large.py", "--nodes", "1000000", "--out-dir", "{out}"]),
    "sampler": ("python benchmarks/sampler.py", ["benchmarks/sampler.py", "--out-dir", "{out}"]),
    "mnist_epoch": ("python benchmarks/mnist_vae.py --latent vmf --dim 3 (per epoch)",
                    ["benchmarks/mnist_vae.py", "--latent", "vmf", "--dim", "3", "--no-eval",
                     "--max-epochs", "{epochs}", "--checkpoint-dir", "{out}/ckpt",
                     "--out-dir", "{out}", "--print-every", "1"]),
    "circle": ("python benchmarks/circle.py --runs 3",
               ["benchmarks/circle.py", "--runs", "3", "--out-dir", "{out}"]),
}
EPOCH_TIME = re.compile(r"epoch\s+\d+\s.*?(\d+\.\d+)s\+(\d+\.\d+)s")


def quick_start_code() -> str:
    readme = (REPO / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", readme.split("## Quick start", 1)[-1],
                     flags=re.DOTALL).group(1)


def others_running(session: int) -> int:
    """User processes in state R outside this one and the timed command's session (Linux;
    else 0)."""
    n = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        # kernel threads (children of kthreadd, pid 2) run for moments and are not load
        if (fields[0] == "R" and int(fields[3]) != session and pid != os.getpid()
                and 2 not in (pid, int(fields[1]))):
            n += 1
    return n


def time_row(name: str, epochs: int, env: dict) -> dict:
    readme_cmd, argv = ROWS[name]
    with tempfile.TemporaryDirectory(prefix="readme_timings_") as tmp:
        if argv is None:
            cmd = [PY, "-c", quick_start_code()]
        else:
            cmd = [PY] + [a.format(out=tmp, epochs=epochs) for a in argv]
            cmd.append("--no-progress") if "--no-progress" not in cmd else None
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        # its own session, so that its children are not counted as other load
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        samples = []
        while proc.poll() is None:
            samples.append(others_running(proc.pid) > 0)
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        out = proc.stdout.read()
    busy = sum(samples) / max(len(samples), 1)
    row = {"command": readme_cmd, "ran": " ".join(["python"] + cmd[1:]) if argv else readme_cmd,
           "wall_s": round(wall, 1), "rc": proc.returncode, "load_1min_before": round(load, 2),
           "busy_fraction": round(busy, 3), "idle": busy < 0.25}
    if proc.returncode != 0:
        row["error_tail"] = out[-600:]
    if name == "mnist_epoch":
        per = [float(a) + float(b) for a, b in EPOCH_TIME.findall(out)]
        row["s_per_epoch_median"] = round(statistics.median(per), 2) if per else None
    return row


def main(argv=None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(ROWS), default=list(ROWS),
                   help="rows to time (default: all)")
    p.add_argument("--epochs", type=positive(int), default=5, help="MNIST epochs timed (default 5)")
    add_common_args(p, data=False, device_default=None, seed_default=None)
    args = p.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rows = {}
    started = time.time()
    for name in args.only:
        row = rows[name] = time_row(name, args.epochs, env)
        extra = f"  {row['s_per_epoch_median']} s/epoch" if "s_per_epoch_median" in row else ""
        state = "idle" if row["idle"] else f"loaded ({row['busy_fraction']:.0%} of samples)"
        print(f"{name:12s} {row['wall_s']:8.1f} s  rc {row['rc']}  {state}{extra}", flush=True)
    path = write_json("readme_timings", {"meta": run_metadata(args), "rows": rows}, started,
                      out_dir(args))
    wrote(path)
    return 1 if any(r["rc"] for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
