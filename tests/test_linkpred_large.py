"""benchmarks/linkpred_large.py: one-process runs, bad input, 2-process data-parallel training."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch

TINY = ["--nodes", "1500", "--avg-degree", "12", "--features", "16", "--communities", "6",
        "--p-in", "0.9", "--lr", "0.02", "--eval-edges", "150", "--batch-size", "64",
        "--num-neighbors", "5", "3", "--no-progress", "--threads", "1"]


def run_cli(argv, capsys):
    from benchmarks import linkpred_large

    with pytest.raises(SystemExit) as e:
        linkpred_large.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "must be > 0"),
    (["--num-neighbors", "5", "5", "5"], "3 hops but the encoder has only 2"),
    (["--nodes", "3", "--avg-degree", "0.1"], "the graph has no edges"),
    (["--steps", "5", "--epochs", "1"], "not allowed with argument"),
    (["--model", "gat"], "invalid choice"),
])
def test_bad_input_is_one_error_line(argv, message, capsys):
    assert message in run_cli(argv, capsys)


def test_world_size_larger_than_training_edges(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "100000")
    monkeypatch.setenv("RANK", "0")
    msg = run_cli(TINY, capsys)
    assert "world size 100000 is larger than the number of training edges" in msg


def test_single_process_run_writes_json(tmp_path):
    from benchmarks import linkpred_large

    out = tmp_path / "r.json"
    assert linkpred_large.main(TINY + ["--steps", "30", "--eval-every", "15", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["world_size"] == 1 and r["sampler"] in ("TorchNeighborSampler", "NeighborSampler")
    assert 0.5 < r["eval"]["best"]["test_auc"] <= 1.0
    assert [h["step"] for h in r["eval"]["history"]] == [15, 30]
    assert r["train"]["timed_steps"] == 25 and r["train"]["edges_per_s_per_process"] > 0
    assert r["memory"]["peak_rss_mb"] > r["memory"]["graph_mb"] > 0
    assert r["meta"]["args"]["nodes"] == 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    import faulthandler
    import sys

    # a hung collective fails the test (with the stack) instead of hanging the suite
    faulthandler.dump_traceback_later(300, exit=True, file=sys.__stderr__)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    from benchmarks import linkpred_large

    linkpred_large.main(TINY + ["--steps", "150", "--eval-every", "50", "--device", "cpu",
                                "--out", out])


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_parameters_and_learn(tmp_path):
    out = tmp_path / "ddp.json"
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    r = json.loads(out.read_text())
    assert r["world_size"] == 2 and r["backend"] == "gloo"
    assert r["ddp_max_param_diff"] == 0.0  # DDP keeps the replicas in lockstep
    losses = [loss for _, loss in r["train"]["loss_history"]]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.05
    assert r["eval"]["best"]["val_auc"] > 0.7
    assert len(r["memory"]["per_rank_peak_rss_mb"]) == 2
    # both ranks trained: the total throughput sums two processes
    assert r["train"]["edges_per_s_total"] > r["train"]["edges_per_s_per_process"]
