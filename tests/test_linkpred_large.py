"""benchmarks/linkpred_large.py: one-process runs, bad input, output names, 2-process
data-parallel training. Every run writes under tmp_path (``--out-dir``)."""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import common
import pytest
import torch

from pyg_spherical.sampling import pyg_sampler_available

REPO = Path(__file__).resolve().parents[1]

TINY = ["--nodes", "1500", "--avg-degree", "12", "--features", "16", "--communities", "6",
        "--p-in", "0.9", "--lr", "0.02", "--eval-edges", "150", "--batch-size", "64",
        "--num-neighbors", "5", "3", "--no-progress", "--threads", "1"]


def run_cli(argv, capsys):
    import linkpred_large

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
    (["--warmup", "-1"], "argument --warmup: must be >= 0"),
    (["--out", "results/linkpred_large/x.json"], "argument --out: a file name, without a folder"),
    (["--out", "/tmp/x.json"], "argument --out: a file name, without a folder"),
    (["--out", "../../x"], "argument --out: a file name, without a folder"),
    (["--nodes", "1"], "argument --nodes: must be >= 2"),
    (["--p-in", "2"], "argument --p-in: must be in [0, 1]"),
    (["--nodes", "30", "--avg-degree", "2"], "too few to hold out 5 % for validation"),
])
def test_bad_input_is_one_error_line(argv, message, capsys):
    assert message in run_cli(argv, capsys)


def test_world_size_larger_than_training_edges(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "100000")
    monkeypatch.setenv("RANK", "0")
    msg = run_cli(TINY, capsys)
    assert "world size 100000 is larger than the number of training edges" in msg


def test_pubmed_offline_is_one_error_line_in_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PYG_SPHERICAL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYG_SPHERICAL_CACHE", str(tmp_path / "cache"))
    msg = run_cli(["--dataset", "PubMed", "--no-download", "--no-progress",
                   "--out-dir", str(tmp_path)], capsys)
    assert msg.startswith("error: PubMed: raw files not found") and "--root DIR" in msg, msg
    assert not (tmp_path / "linkpred_large").exists()


def test_single_process_run_writes_json(tmp_path, capsys):
    import linkpred_large

    argv = TINY + ["--steps", "30", "--eval-every", "15", "--out-dir", str(tmp_path)]
    assert linkpred_large.main(argv) == 0
    out = tmp_path / "linkpred_large" / "n1500_svgae_w1_s0.json"  # the default name
    assert f"wrote {out}" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["world_size"] == 1 and r["sampler"] in ("TorchNeighborSampler", "NeighborSampler")
    assert 0.5 < r["eval"]["best"]["test_auc"] <= 1.0
    assert [h["step"] for h in r["eval"]["history"]] == [15, 30]
    assert r["train"]["timed_steps"] == 25 and r["train"]["edges_per_s_per_process"] > 0
    assert r["memory"]["peak_rss_mb"] > r["memory"]["graph_mb"] > 0
    assert r["meta"]["args"]["nodes"] == 1500 and r["wall_time_s"] > 0


def test_refresh_writes_results_under_the_given_name(tmp_path, monkeypatch):
    import linkpred_large

    monkeypatch.setattr(common, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    assert linkpred_large.main(TINY + ["--steps", "6", "--refresh", "--out", "x"]) == 0
    assert (tmp_path / "results" / "linkpred_large" / "x.json").is_file()
    assert not (tmp_path / "runs").exists()


def test_committed_results_keep_their_names():
    """The synthetic results carry the default names (``--refresh`` rewrites them in place);
    every committed name is a valid ``--out``."""
    import linkpred_large

    p = linkpred_large.build_parser()
    found = 0
    for path in sorted((REPO / "results" / "linkpred_large").glob("*.json")):
        meta = json.loads(path.read_text())["meta"]
        if "linkpred_large.py" not in meta["command"]:
            continue
        found += 1
        assert p.parse_args(["--out", path.stem]).out == path.stem
        if meta["args"]["dataset"] == "synthetic":
            args = argparse.Namespace(**meta["args"])
            assert linkpred_large.default_name(args, meta["world_size"]) == path.stem
    assert found > 0


@pytest.mark.slow
def test_a_piped_run_from_elsewhere_has_no_progress_refreshes(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "linkpred_large.py"),
                          *[a for a in TINY if a != "--no-progress"], "--steps", "8",
                          "--out-dir", str(tmp_path), "--out", "piped"],
                         capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\r" not in res.stderr and "\r" not in res.stdout
    assert (tmp_path / "linkpred_large" / "piped.json").is_file()


@pytest.mark.slow
def test_pubmed_runs_on_the_link_split_of_linkpred(tmp_path, capsys):
    """A few steps on PubMed from the data root (skipped without it, as in test_planetoid_data)."""
    import linkpred_large

    from pyg_spherical.repro.datasets import planetoid_source

    root = os.environ.get("PYG_SPHERICAL_DATA", "").strip()
    if not root or planetoid_source("PubMed", root, download=False).kind != "root":
        if os.environ.get("CI"):
            pytest.fail("PubMed raw files not found under $PYG_SPHERICAL_DATA (CI is set)")
        pytest.skip("set PYG_SPHERICAL_DATA to a folder holding PubMed/raw/ind.pubmed.*")
    assert linkpred_large.main(["--dataset", "PubMed", "--steps", "3", "--eval", "full",
                                "--no-download", "--no-progress", "--out-dir", str(tmp_path)]) == 0
    # the root is reported as resolved (absolute, symlinks followed)
    resolved = Path(root).expanduser().resolve()
    assert capsys.readouterr().out.startswith(f"data: PubMed from the data root {resolved}")
    r = json.loads((tmp_path / "linkpred_large" / "pubmed_svgae_w1_s0.json").read_text())
    assert r["graph"]["nodes"] == 19717 and r["config"]["dim"] == 32  # Table 7
    assert r["graph"]["val_edges"] == 2216 and r["graph"]["test_edges"] == 4432


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
    import linkpred_large

    linkpred_large.main(TINY + ["--steps", "150", "--eval-every", "50", "--device", "cpu",
                                "--out-dir", out, "--out", "ddp"])


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_parameters_and_learn(tmp_path):
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
                                join=True)
    out = tmp_path / "linkpred_large"
    assert sorted(p.name for p in out.iterdir()) == ["ddp.json"]  # rank 0 alone writes
    r = json.loads((out / "ddp.json").read_text())
    assert r["world_size"] == 2 and r["backend"] == "gloo"
    assert r["ddp_max_param_diff"] == 0.0  # DDP keeps the replicas in lockstep
    losses = [loss for _, loss in r["train"]["loss_history"]]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.05
    assert r["eval"]["best"]["val_auc"] > 0.7
    assert len(r["memory"]["per_rank_peak_rss_mb"]) == 2
    # both ranks trained: the total throughput sums two processes
    assert r["train"]["edges_per_s_total"] > r["train"]["edges_per_s_per_process"]


def test_generator_keeps_intra_edges_inside_their_community_when_some_are_empty():
    """As many communities as nodes leaves some empty; an intra-community edge must still
    join two nodes of the same community (an empty block used to send it to the last node)."""
    from _graphs import dcsbm_graph, intra_fraction

    data = dcsbm_graph(200, avg_degree=6, num_features=4, num_communities=200, p_in=1.0, seed=0)
    assert torch.bincount(data.y, minlength=200)[0] == 0  # community 0 is empty (seed 0)
    assert intra_fraction(data.edge_index, data.y) == 1.0


@pytest.mark.skipif(pyg_sampler_available(), reason="pyg-lib or torch-sparse is installed")
def test_the_pyg_sampler_without_its_backend_is_refused_before_any_work(capsys):
    msg = run_cli(TINY + ["--sampler", "pyg"], capsys)
    assert "argument --sampler: pyg needs pyg-lib or torch-sparse" in msg


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    import linkpred_large

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(linkpred_large, "run", interrupt)
    with pytest.raises(SystemExit) as e:
        linkpred_large.main(TINY + ["--out-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 130 and err == [
        "interrupted: nothing half-written: the result is written when the run ends"], err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []
