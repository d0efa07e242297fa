"""What produced a result: the command, the commit, the hardware and the versions.

Every benchmark stores :func:`run_metadata` in its JSON, so that a number can be traced to the
run that made it (and a GPU number to its GPU).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

__all__ = ["cpu_model", "git_commit", "gpu_info", "run_metadata"]


def git_commit(repo: str | os.PathLike) -> str:
    """The short commit of the git checkout ``repo`` (``-dirty`` with uncommitted changes to
    tracked files; ``unknown`` without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=repo,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False,
                               cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):  # pragma: no cover - no git
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_info(device) -> dict:
    """The GPU a run used (``device`` a CUDA device): name, memory, compute capability;
    ``{"gpu": None}`` for any other device."""
    device = torch.device(device) if device is not None else None
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return {"gpu": None}
    props = torch.cuda.get_device_properties(device)
    return {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "gpu_capability": f"{props.major}.{props.minor}"}


def run_metadata(args=None, repo: str | os.PathLike | None = None) -> dict:
    """What produced a result: command, arguments (``args``, an ``argparse.Namespace``; its
    ``device`` is the run's), commit (of the checkout ``repo``, if given), hardware (with the
    run's device and, on CUDA, its GPU), versions (torch and the CUDA / cuDNN it was built
    with, PyG), start time."""
    device = getattr(args, "device", None)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "command": "python " + " ".join(sys.argv),
        "args": dict(vars(args)) if args is not None else None,  # a snapshot, not the live namespace
        "commit": git_commit(repo) if repo is not None else None,
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(),
                     # float32 results depend on the kernels' vector code path (RESULTS.md,
                     # reproducibility): the ATen dispatch level and MKL's CNR mode
                     "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                     "mkl_cbwr": os.environ.get("MKL_CBWR"),
                     "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                     "device": str(device) if device is not None else None, **gpu_info(device)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "cuda": torch.version.cuda, "cudnn": cudnn,
                     "torch_geometric": _version("torch_geometric")},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _version(package: str) -> str | None:
    try:
        return __import__(package).__version__
    except ImportError:
        return None
