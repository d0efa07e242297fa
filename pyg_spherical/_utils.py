"""Small helpers shared by the library's modules."""
from __future__ import annotations

import contextlib
import warnings

import torch


def compute_dtype(x, highest: bool = False) -> torch.dtype:
    """The dtype a computation on ``x`` (a tensor or a dtype) runs in: float64 stays float64,
    anything else (float32, float16, bfloat16) is float32. ``highest=True`` (``x`` a tensor):
    float64 wherever the device has it, for the scalar functions that need it whatever the input."""
    if highest:
        return torch.float32 if x.device.type == "mps" else torch.float64
    dtype = x if isinstance(x, torch.dtype) else x.dtype
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_compute(x: torch.Tensor, highest: bool = False) -> torch.Tensor:
    """``x`` in its :func:`compute_dtype` (no copy when it already has it)."""
    return x.to(compute_dtype(x, highest))


def renamed(kwargs: dict, old: str, new: str, value, owner: str):
    """``value``, or ``kwargs.pop(old)`` with a :class:`DeprecationWarning` if a caller still
    passes the keyword ``old`` that ``owner`` renamed ``new``."""
    if old not in kwargs:
        return value
    warnings.warn(f"{owner}({old}=...) is deprecated and will be removed in the next release; "
                  f"use {new}=...", DeprecationWarning, stacklevel=3)
    return kwargs.pop(old)


# --------------------------------------------------------------------------- host syncs
# While a HostSyncCounter (repro.host_syncs) emulates an accelerator on the CPU, code that would
# read tensor values on the host to save work (free on the CPU) takes the accelerator's path.
_ACCELERATOR_PATH = {"on": False}


def host_reads_are_free(t: torch.Tensor) -> bool:
    """Whether reading ``t``'s values on the host (``bool(mask.any())``, ``nonzero``) costs
    nothing: on the CPU it does; on an accelerator it waits for the device to finish (a host
    sync). Code that can skip work by such a read asks this first. Inside a
    :class:`~pyg_spherical.repro.host_syncs.HostSyncCounter` on the CPU it answers
    ``False``, so that the CPU runs (and the counter counts) the accelerator's path."""
    return t.device.type == "cpu" and not _ACCELERATOR_PATH["on"]


@contextlib.contextmanager
def accelerator_path():
    """Within this block :func:`host_reads_are_free` is ``False`` on the CPU too: the CPU runs
    the code path of an accelerator (for tests, and for
    :class:`~pyg_spherical.repro.host_syncs.HostSyncCounter`)."""
    previous = _ACCELERATOR_PATH["on"]
    _ACCELERATOR_PATH["on"] = True
    try:
        yield
    finally:
        _ACCELERATOR_PATH["on"] = previous
