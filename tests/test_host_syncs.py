"""Host-device synchronisations: the counter, and the count per training step.

On the CPU the counter is a proxy (what would synchronise on an accelerator, on the
accelerator's code path); with ``PYG_SPHERICAL_TEST_DEVICE=cuda`` the same step tests count
what torch's CUDA sync debug mode reports. The steps are those of ``benchmarks/sampler.py
--syncs``. Targets: at most one sync per step on the vMF path, none on the Gaussian path.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli import cli

from pyg_spherical._utils import host_reads_are_free
from pyg_spherical.repro.host_syncs import HostSyncCounter

x = torch.arange(6.0) - 2.5
mask = x > 0

SYNCS = {
    "item": lambda: x.sum().item(),
    "bool": lambda: bool(x.sum() > 0),
    "int": lambda: int(x.argmax()),
    "nonzero": lambda: mask.nonzero(),
    "where with one argument": lambda: torch.where(mask),
    "boolean mask": lambda: x[mask],
    "boolean mask assignment": lambda: x.clone().__setitem__(mask, 0.0),
    "masked_select": lambda: x.masked_select(mask),
    "unique": lambda: torch.unique(x),
    "repeat_interleave": lambda: torch.repeat_interleave(torch.arange(3), torch.arange(3)),
    "tensor from host data": lambda: torch.tensor([1.0, 2.0]),
    "as_tensor from a tuple": lambda: torch.as_tensor((1.0, 2.0)),
    "from_numpy": lambda: torch.from_numpy(np.ones(2)),
    "tolist": lambda: x.tolist(),
    "numpy": lambda: x.numpy(),
}
NO_SYNCS = {
    "integer index": lambda: x[torch.arange(2)],
    "scalar assignment": lambda: x.clone().__setitem__(0, 1.0),
    "arithmetic and reductions": lambda: (x * 2.0).sum() + x.any(),
    "fill": lambda: torch.full((), 2.0),
    "where with three arguments": lambda: torch.where(mask, x, 0.0),
    "repeat_interleave with output_size": lambda: torch.repeat_interleave(
        torch.arange(3), torch.arange(3), output_size=3),
    "device-side assertion": lambda: torch._assert_async(mask.any(), "none positive"),
    "as_tensor of a tensor": lambda: torch.as_tensor(x),
}


@pytest.mark.parametrize("name", list(SYNCS))
def test_the_counter_sees_each_kind_of_sync(name):
    with HostSyncCounter() as syncs:
        SYNCS[name]()
    assert syncs.count == 1, syncs.events
    assert syncs.events[0].package == __name__.split(".")[0]  # this file is the caller
    assert syncs.events[0].origin.startswith("test_host_syncs.py:")


@pytest.mark.parametrize("name", list(NO_SYNCS))
def test_the_counter_ignores_what_does_not_sync(name):
    with HostSyncCounter() as syncs:
        NO_SYNCS[name]()
    assert syncs.count == 0, syncs.events


def test_a_sync_in_a_backward_pass_is_counted_and_the_cpu_takes_the_accelerator_path():
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return g * 2 * a * bool(a.any())  # one read

    a = torch.ones(3, requires_grad=True)
    assert host_reads_are_free(a)
    with HostSyncCounter() as syncs:
        assert not host_reads_are_free(a)
        Square.apply(a).sum().backward()
    assert host_reads_are_free(a)
    assert [e.op for e in syncs.events] == ["aten::_local_scalar_dense"]


def test_syncs_per_training_step(device, tmp_path):
    """The steps of ``benchmarks/sampler.py --syncs`` (run as a user runs it): at most one sync
    per step on the vMF path, the rejection sampler's one check, and none on the Gaussian path
    (PyG's negative_sampling, shown for reference, aside)."""
    res = cli("sampler", "--syncs", "--sync-steps", "2", "--device", device, "--no-progress",
              "--out-dir", tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((tmp_path / "sampler_syncs.json").read_text())["rows"]
    for latent, limit in (("vmf", 1), ("normal", 0)):
        mine = [r for r in rows if r["latent"] == latent and r["target"]]
        assert {r["step"] for r in mine} >= {"MNIST VAE step, batch 64",
                                             "full-batch VGAE step, Cora",
                                             "mini-batch step, Cora, batch 256"}
        for r in mine:
            assert r["max"] <= limit, r
            if device.type == "cpu" and latent == "vmf" and "step" in r["step"]:
                assert [o.split(" @ ")[0] for o in r["origins"]] == ["aten::nonzero"], r
