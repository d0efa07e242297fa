"""The device the tests that take one run on: ``PYG_SPHERICAL_TEST_DEVICE`` (default ``cpu``).

    PYG_SPHERICAL_TEST_DEVICE=cuda python -m pytest     # those tests on the GPU

Tests that take the ``device`` fixture run there; the others run on the CPU as always, except
those marked ``cpu_only`` (what they test exists only on the CPU), which are skipped with that
reason when another device is named.
"""
from __future__ import annotations

import os

import pytest
import torch

VARIABLE = "PYG_SPHERICAL_TEST_DEVICE"


def _test_device() -> torch.device:
    name = os.environ.get(VARIABLE, "cpu").strip() or "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise pytest.UsageError(f"{VARIABLE}={name!r} is not a device; use cpu, cuda, "
                                "cuda:N or mps") from None
    available = {"cpu": lambda: True, "cuda": torch.cuda.is_available,
                 "mps": lambda: torch.backends.mps.is_available()}.get(dev.type)
    if available is None or not available():
        raise pytest.UsageError(f"{VARIABLE}={name}: this torch has no such device available")
    if dev.type == "cuda" and dev.index is None:  # as tensors report it: cuda:0, not cuda
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


TEST_DEVICE = torch.device("cpu")


def pytest_configure(config):
    global TEST_DEVICE
    config.addinivalue_line("markers", "cpu_only(reason): tests of something only the CPU "
                                       f"has; skipped when {VARIABLE} names another device")
    TEST_DEVICE = _test_device()  # a bad value: one error line, no test runs


def pytest_report_header(config):
    return f"test device: {TEST_DEVICE} ({VARIABLE})"


def pytest_collection_modifyitems(config, items):
    if TEST_DEVICE.type == "cpu":
        return
    for item in items:
        mark = item.get_closest_marker("cpu_only")
        if mark is not None:
            why = mark.args[0] if mark.args else mark.kwargs.get("reason", "CPU only")
            item.add_marker(pytest.mark.skip(reason=f"CPU only: {why}"))


@pytest.fixture
def device() -> torch.device:
    """The device of ``PYG_SPHERICAL_TEST_DEVICE`` (default the CPU)."""
    return TEST_DEVICE
