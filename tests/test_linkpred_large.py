"""benchmarks/linkpred_large.py, run as a user runs it: one-process runs, bad input, output
names, 2-process data-parallel training. Every run writes under tmp_path (``--out-dir``)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from cli import REPO, benchmarks_copy, cli, cli_many, error_line

from pyg_spherical.repro.graphs import dcsbm_graph, intra_fraction
from pyg_spherical.sampling import pyg_sampler_available

TINY = ["--nodes", "1500", "--avg-degree", "12", "--features", "16", "--communities", "6",
        "--p-in", "0.9", "--lr", "0.02", "--eval-edges", "150", "--batch-size", "64",
        "--num-neighbors", "5", "3", "--no-progress", "--threads", "1"]

BAD_INPUT = [
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
]


@pytest.mark.slow
def test_bad_input_is_one_error_line():
    results = cli_many([("linkpred_large", argv) for argv, _ in BAD_INPUT])
    for (argv, message), res in zip(BAD_INPUT, results):
        assert message in error_line(res), argv


@pytest.mark.slow
def test_world_size_larger_than_training_edges():
    env = {**os.environ, "WORLD_SIZE": "100000", "RANK": "0"}
    assert ("world size 100000 is larger than the number of training edges"
            in error_line(cli("linkpred_large", *TINY, env=env)))


@pytest.mark.slow
def test_pubmed_offline_is_one_error_line_in_flags(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYG_SPHERICAL_DATA"}
    env.update(HOME=str(tmp_path / "home"), PYG_SPHERICAL_CACHE=str(tmp_path / "cache"))
    msg = error_line(cli("linkpred_large", "--dataset", "PubMed", "--no-download",
                         "--no-progress", "--out-dir", tmp_path, env=env))
    assert msg.startswith("error: PubMed: raw files not found") and "--root DIR" in msg, msg
    assert not (tmp_path / "linkpred_large").exists()


@pytest.mark.slow
def test_single_process_run_writes_json(tmp_path):
    res = cli("linkpred_large", *TINY, "--steps", "30", "--eval-every", "15",
              "--out-dir", tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "linkpred_large" / "n1500_svgae_w1_s0.json"  # the default name
    assert f"wrote {out}" in res.stdout
    r = json.loads(out.read_text())
    assert r["world_size"] == 1 and r["sampler"] in ("TorchNeighborSampler", "NeighborSampler")
    assert 0.5 < r["eval"]["best"]["test_auc"] <= 1.0
    assert [h["step"] for h in r["eval"]["history"]] == [15, 30]
    assert r["train"]["timed_steps"] == 25 and r["train"]["edges_per_s_per_process"] > 0
    assert r["memory"]["peak_rss_mb"] > r["memory"]["graph_mb"] > 0
    assert r["meta"]["args"]["nodes"] == 1500 and r["wall_time_s"] > 0


@pytest.mark.slow
def test_refresh_writes_results_under_the_given_name(tmp_path):
    """``--refresh --out NAME`` writes results/NAME.json (beside the benchmarks folder), not
    runs/; a committed result's own name is a valid ``--out`` (so ``--refresh`` rewrites it)."""
    folder = benchmarks_copy(tmp_path)
    res = cli("linkpred_large", *TINY, "--steps", "6", "--refresh", "--out", "x",
              benchmarks=folder)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "results" / "linkpred_large" / "x.json").is_file()
    assert not (tmp_path / "runs").exists()
    committed = min((REPO / "results" / "linkpred_large").glob("pubmed_minibatch_*.json"))
    res = cli("linkpred_large", *TINY, "--steps", "2", "--out", committed.stem,
              "--out-dir", tmp_path / "o")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "o" / "linkpred_large" / committed.name).is_file()


def test_committed_synthetic_results_carry_their_default_names():
    """Every committed synthetic run is stored under the default name of its arguments,
    ``n<nodes>_<model>_w<processes>_s<seed>`` (the name a plain ``--refresh`` rerun writes, as
    the single-process run above shows for its own arguments)."""
    found = 0
    for path in sorted((REPO / "results" / "linkpred_large").glob("*.json")):
        r = json.loads(path.read_text())
        a = r["meta"]["args"]
        if "linkpred_large.py" in r["meta"]["command"] and a["dataset"] == "synthetic":
            found += 1
            assert path.stem == f"n{a['nodes']}_{a['model']}_w{r['world_size']}_s{a['seed']}"
    assert found > 0


@pytest.mark.slow
def test_a_piped_run_from_elsewhere_has_no_progress_refreshes(tmp_path):
    res = cli("linkpred_large", *[a for a in TINY if a != "--no-progress"], "--steps", "8",
              "--out-dir", tmp_path, "--out", "piped", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\r" not in res.stderr and "\r" not in res.stdout
    assert (tmp_path / "linkpred_large" / "piped.json").is_file()


@pytest.mark.slow
def test_pubmed_runs_on_the_link_split_of_linkpred(tmp_path):
    """A few steps on PubMed from the data root (skipped without it, as in test_planetoid_data)."""
    from pathlib import Path

    from pyg_spherical.repro.datasets import planetoid_source

    root = os.environ.get("PYG_SPHERICAL_DATA", "").strip()
    if not root or planetoid_source("PubMed", root, download=False).kind != "root":
        if os.environ.get("CI"):
            pytest.fail("PubMed raw files not found under $PYG_SPHERICAL_DATA (CI is set)")
        pytest.skip("set PYG_SPHERICAL_DATA to a folder holding PubMed/raw/ind.pubmed.*")
    res = cli("linkpred_large", "--dataset", "PubMed", "--steps", "3", "--eval", "full",
              "--no-download", "--no-progress", "--out-dir", tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    # the root is reported as resolved (absolute, symlinks followed)
    resolved = Path(root).expanduser().resolve()
    assert res.stdout.startswith(f"data: PubMed from the data root {resolved}")
    r = json.loads((tmp_path / "linkpred_large" / "pubmed_svgae_w1_s0.json").read_text())
    assert r["graph"]["nodes"] == 19717 and r["config"]["dim"] == 32  # Table 7
    assert r["graph"]["val_edges"] == 2216 and r["graph"]["test_edges"] == 4432


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_parameters_and_learn(tmp_path):
    """Two processes as ``torchrun`` starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT)."""
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                           os.environ.get("PYTHONPATH")]))}
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "linkpred_large.py"), *TINY, "--steps",
             "150", "--eval-every", "50", "--device", "cpu", "--out-dir", str(tmp_path),
             "--out", "ddp"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:  # a hung collective fails the test instead of hanging the suite
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
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
    data = dcsbm_graph(200, avg_degree=6, num_features=4, num_communities=200, p_in=1.0, seed=0)
    assert torch.bincount(data.y, minlength=200)[0] == 0  # community 0 is empty (seed 0)
    assert intra_fraction(data.edge_index, data.y) == 1.0


@pytest.mark.skipif(pyg_sampler_available(), reason="pyg-lib or torch-sparse is installed")
def test_the_pyg_sampler_without_its_backend_is_refused_before_any_work():
    assert ("argument --sampler: pyg needs pyg-lib or torch-sparse"
            in error_line(cli("linkpred_large", *TINY, "--sampler", "pyg")))
