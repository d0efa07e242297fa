"""Counting host-device synchronisations: a diagnostic for the benchmarks and tests.

:class:`HostSyncCounter` counts the host syncs of a block of code: on CUDA what torch reports,
on the CPU a proxy that runs the accelerator's code path (``pyg_spherical._utils.accelerator_path``)
and counts the operations that would wait for the device there.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import NamedTuple

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from .._utils import accelerator_path

__all__ = ["HostSync", "HostSyncCounter"]


class HostSync(NamedTuple):
    """One host-device synchronisation: the operation, the first caller outside torch
    (``file:line``) and that caller's top-level package (``pyg_spherical``, ``torch_geometric``,
    ...)."""

    op: str
    origin: str
    package: str


def _caller() -> tuple[str, str]:
    """``(file:line, package)`` of the innermost frame outside torch and this module."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (name == __name__ or name.split(".")[0] in ("torch", "contextlib", "warnings")):
            path = frame.f_code.co_filename
            return f"{os.path.basename(path)}:{frame.f_lineno}", name.split(".")[0] or "?"
        frame = frame.f_back
    return "?", "?"


def _is_mask(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)


# aten operations whose output shape or value the host must know: on an accelerator each one
# waits for the device (item() / bool() / int() of a tensor, data-dependent shapes)
_SYNC_OPS = {
    "aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique",
    "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive", "aten::bincount",
    "aten::equal", "aten::_to_sparse", "aten::_to_sparse_csr", "aten::_coalesce",
    # a tensor made from host data (torch.tensor, as_tensor, from_numpy): a blocking copy to
    # the device
    "aten::lift_fresh",
}


def _dispatch_sync(func, args, kwargs, in_setitem: bool) -> bool:
    name = func.overloadpacket._qualified_op_name
    if name == "aten::lift_fresh" and in_setitem:
        return False  # the value of x[i] = 1.0, made on the CPU only (a fill elsewhere)
    if name in _SYNC_OPS:
        return True
    if name in ("aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"):
        return any(_is_mask(i) for i in (args[1] if len(args) > 1 else kwargs["indices"]))
    if name == "aten::repeat_interleave":
        return (func is not torch.ops.aten.repeat_interleave.self_int
                and kwargs.get("output_size") is None)
    if name in ("aten::_to_copy", "aten::copy_"):  # between two devices: a blocking copy
        devs = {a.device.type for a in args[:2] if isinstance(a, torch.Tensor)}
        devs.add(torch.device(kwargs["device"]).type if kwargs.get("device") else None)
        devs.discard(None)
        return len(devs) > 1
    return False


def _function_sync(func) -> bool:
    """Python-level tensor methods that read tensor data on the host."""
    return getattr(func, "__name__", "") in ("tolist", "numpy", "cpu", "__array__")


class HostSyncCounter:
    """Counts the host-device synchronisations of a block of code::

        with HostSyncCounter(device) as syncs:
            loss = model.loss(x)
            loss.backward()
        syncs.count, syncs.events   # how many, and HostSync(op, origin, package) for each

    On CUDA it records what torch reports with ``torch.cuda.set_sync_debug_mode("warn")``.
    Elsewhere (the CPU, where nothing waits) it is a proxy that counts what would synchronise on
    an accelerator, from the operations themselves: ``item()``, ``bool()``, ``int()`` and
    ``float()`` of a tensor (``aten._local_scalar_dense``), operations whose output shape
    depends on the data (``nonzero``, ``masked_select``, ``unique``, boolean-mask indexing,
    ``repeat_interleave`` without ``output_size``, ``bincount``), copies between devices,
    tensors made from host data (``torch.tensor``, ``torch.as_tensor``, ``torch.from_numpy``)
    and ``tolist()`` / ``numpy()`` / ``cpu()`` (these three outside backward passes, where
    torch function modes do not reach). Inside it, ``pyg_spherical._utils.host_reads_are_free`` is ``False`` on the CPU too, so
    that the code runs its accelerator path. The proxy cannot tell a tensor that would live on
    the host from one on the device: host-only work (a data loader's sampling) is counted too,
    which ``HostSync.package`` helps to tell apart.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.events: list[HostSync] = []
        self._exit = None
        self._in_setitem = 0

    @property
    def count(self) -> int:
        """Number of synchronisations recorded."""
        return len(self.events)

    def by_package(self) -> dict[str, int]:
        """Counts per package of the calling code."""
        out: dict[str, int] = {}
        for e in self.events:
            out[e.package] = out.get(e.package, 0) + 1
        return out

    def _record(self, op: str) -> None:
        self.events.append(HostSync(op, *_caller()))

    def __enter__(self):
        self.events = []
        stack = contextlib.ExitStack()
        if self.device.type == "cuda":
            stack.enter_context(_CudaSyncWarnings(self))
        else:
            stack.enter_context(_FunctionCounter(self))
            stack.enter_context(_DispatchCounter(self))
            stack.enter_context(accelerator_path())
        self._exit = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._exit.__exit__(*exc)


class _DispatchCounter(TorchDispatchMode):
    def __init__(self, counter: HostSyncCounter):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _dispatch_sync(func, args, kwargs, self.counter._in_setitem > 0):
            self.counter._record(func.overloadpacket._qualified_op_name)
        return func(*args, **kwargs)


class _FunctionCounter(TorchFunctionMode):
    def __init__(self, counter: HostSyncCounter):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if _function_sync(func):
            self.counter._record(func.__name__)
        setitem = getattr(func, "__name__", "") == "__setitem__"
        self.counter._in_setitem += setitem
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.counter._in_setitem -= setitem


class _CudaSyncWarnings:
    """``torch.cuda.set_sync_debug_mode("warn")``, its warnings recorded (with the stack at the
    moment they are raised) instead of shown."""

    def __init__(self, counter: HostSyncCounter):
        self.counter = counter

    def __enter__(self):
        self._mode = torch.cuda.get_sync_debug_mode()
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("always")
        shown = warnings.showwarning

        def hook(message, category, filename, lineno, file=None, line=None):
            if "synchronizing CUDA operation" in str(message):
                self.counter._record("cuda sync")
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = hook
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        torch.cuda.set_sync_debug_mode(self._mode)
        self._warnings.__exit__(*exc)
