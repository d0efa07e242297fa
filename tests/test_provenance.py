"""What a result records about its run (``repro.provenance``) and how it is written
(``repro.training``'s atomic writers): checked through the library, with the GPU mocked."""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest
import torch

from pyg_spherical.repro import provenance
from pyg_spherical.repro.training import save_atomic, write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def test_run_metadata_names_the_cpu_run_and_the_versions():
    import torch_geometric

    meta = provenance.run_metadata(argparse.Namespace(device=torch.device("cpu"), lr=0.01))
    assert meta["hardware"]["device"] == "cpu" and meta["hardware"]["gpu"] is None
    assert meta["args"]["lr"] == 0.01 and meta["commit"] is None  # no checkout given
    assert meta["versions"]["cuda"] == torch.version.cuda
    assert meta["versions"]["torch_geometric"] == torch_geometric.__version__


def test_run_metadata_names_the_gpu_and_the_cuda_versions(monkeypatch):
    class Props:  # what torch reports for a GPU
        name, total_memory, major, minor = "NVIDIA H200", 141 * 2**30, 9, 0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: Props)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    meta = provenance.run_metadata(argparse.Namespace(device=torch.device("cuda", 0)))
    hw = meta["hardware"]
    assert hw["device"] == "cuda:0" and hw["cuda"] == "NVIDIA H200"
    assert (hw["gpu"], hw["gpu_memory_gb"], hw["gpu_capability"]) == ("NVIDIA H200", 141.0, "9.0")
    assert meta["versions"]["cuda"] == "12.8"


def test_the_commit_is_the_checkout_s_and_says_dirty(tmp_path):
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=False).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    assert provenance.git_commit(REPO).split("-")[0] == head
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for cmd in (["add", "f"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        (tmp_path / "f").write_text("a")
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    assert not provenance.git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "f").write_text("b")
    assert provenance.git_commit(tmp_path).endswith("-dirty")


def _interrupt_halfway(monkeypatch, cls, method):
    original = getattr(cls, method)

    def half_then_interrupt(self, data, *a, **k):
        original(self, data[: len(data) // 2], *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(cls, method, half_then_interrupt)


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    """Written aside and renamed: a Ctrl-C in the middle of the write keeps the old file and
    leaves no temporary file."""
    path = tmp_path / "r.json"
    write_text_atomic(path, '{"old": 1}\n')
    _interrupt_halfway(monkeypatch, Path, "write_text")
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(path, '{"new": [' + ", ".join(map(str, range(100))) + "]}\n")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert path.read_text() == '{"old": 1}\n'


def test_an_interrupted_checkpoint_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    path = tmp_path / "ckpt" / "last.pt"
    save_atomic({"epoch": 3}, path)

    def interrupt(obj, f, *a, **k):
        Path(f).write_bytes(b"torn")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"epoch": 4}, path)
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert torch.load(path) == {"epoch": 3}
