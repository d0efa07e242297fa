"""The benchmark CLIs run as a user runs them, ``python benchmarks/<name>.py ...``, in a
subprocess (tests never import a benchmark script), with this checkout's package first."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py")
                 if not p.stem.startswith("_") and p.stem != "common")


def cli(script: str, *argv, cwd=None, env=None, timeout: float = 300, benchmarks=None,
        stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    """Run ``benchmarks/<script>.py argv`` (from ``benchmarks``, another copy of the folder,
    if given); stdout and stderr captured as text."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    folder = Path(benchmarks) if benchmarks is not None else REPO / "benchmarks"
    return subprocess.run([sys.executable, str(folder / f"{script}.py"), *map(str, argv)],
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=timeout,
                          check=False, cwd=cwd, env=env)


def cli_many(calls) -> list[subprocess.CompletedProcess]:
    """``cli(script, *argv)`` for every ``(script, argv)`` of ``calls``, as many at a time as the
    machine has cores (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(lambda c: cli(c[0], *c[1]), calls))


def error_line(res: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a run refused with exit code 2."""
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), (
        res.returncode, res.stderr[-2000:])
    return err[0]


def benchmarks_copy(root: Path) -> Path:
    """A copy of ``benchmarks/`` under ``root``: its ``runs/`` and ``results/`` (the folders the
    CLIs write to, beside ``benchmarks/``) are then ``root/runs`` and ``root/results``."""
    target = root / "benchmarks"
    shutil.copytree(REPO / "benchmarks", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target
