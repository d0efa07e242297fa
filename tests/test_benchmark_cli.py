"""The benchmark CLIs, run as a user runs them: one ``error:`` line and exit code 2 for bad
input, outputs outside the committed results/ unless asked, progress bars only on a terminal,
resumed runs that keep their flags."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from cli import REPO, SCRIPTS, benchmarks_copy, cli, cli_many, error_line

BIG_SEED = str(2**70)
SINGLE = ["--latent", "vmf", "--dim", "5"]

#: (script, argv, what the error line says); the first case of each script runs by default
BAD_INPUT = [
    ("mnist_vae", ["--dim", "0"], "error: argument --dim: must be > 0 and finite, got 0"),
    ("readme_timings", ["--epochs", "0"], "argument --epochs: must be > 0"),
    ("readme_timings", ["--only", "bogus"], "argument --only: invalid choice"),
    ("mnist_vae", ["--latent", "vmf", "--dim", "0"], "argument --dim: must be > 0"),
    ("mnist_vae", [*SINGLE, "--lr", "nan"], "argument --lr: must be > 0 and finite, got nan"),
    ("mnist_vae", [*SINGLE, "--max-new-epochs", "0"], "argument --max-new-epochs: must be > 0"),
    ("mnist_vae", [*SINGLE, "--train-subset", "-5"], "argument --train-subset: must be >= 0"),
    ("mnist_vae", [*SINGLE, "--seed", BIG_SEED], "argument --seed: must be an integer in [0, 2**32)"),
    ("mnist_vae", [*SINGLE, "--device", "foo"], "argument --device: unknown device 'foo'"),
    ("mnist_vae", ["--latent", "vmf"], "--latent and --dim go together"),
    ("mnist_vae", ["--latent", "power", "--dim", "1"], "the P-VAE needs --dim >= 2"),
    ("mnist_vae", ["--table1", "--latents", "poincare"], "argument --latents: invalid choice"),
    ("mnist_vae", ["--ll-estimators", "--table1"], "--ll-estimators runs alone"),
    ("mnist_m1m2", ["--max-new-epochs", "-1"], "argument --max-new-epochs: must be > 0"),
    ("mnist_m1m2", ["--train-subset", "-1"], "argument --train-subset: must be >= 0"),
    ("mnist_m1m2", ["--lr", "nan"], "argument --lr: must be > 0"),
    ("mnist_m1m2", ["--seed", BIG_SEED], "argument --seed: must be an integer"),
    ("mnist_m1m2_ablations", ["--device", "foo"], "argument --device: unknown device"),
    ("mnist_m1m2_ablations", ["--only", "bogus"], "unknown ablation"),
    ("mnist_knn", ["--device", "foo"], "argument --device: unknown device"),
    ("mnist_knn", ["--draw-seed", "-1"], "argument --draw-seed: must be an integer"),
    ("linkpred", ["--seed", BIG_SEED], "argument --seed: must be an integer in [0, 2**32)"),
    ("linkpred", ["--device", "foo"], "argument --device: unknown device 'foo'"),
    ("linkpred", ["--dim", "0"], "argument --dim: must be > 0"),
    ("linkpred", ["--refresh", "--out-dir", "x"], "not allowed with argument"),
    ("linkpred", ["--dataset", "Karate"], "unknown dataset"),
    ("linkpred", ["--runs", "0"], "must be > 0"),
    ("linkpred", ["--dropout", "1"], "dropout must be in [0, 1)"),
    ("linkpred", ["--dim", "1"], "--dim 1: the S-VGAE codes live on the sphere S^(dim-1)"),
    ("linkpred", ["--model", "pvgae", "--dim", "1"], "--dim 1: the P-VGAE codes live"),
    ("linkpred", ["--model", "svgae", "--grid", "--grid-dim", "1", "8"],
     "--dim 1: the S-VGAE codes live"),
    ("linkpred", ["--no-such-flag"], "unrecognized arguments"),
    ("linkpred_diagnostics", ["--device", "foo"], "argument --device: unknown device"),
    ("linkpred_diagnostics", ["--only", "table7,bogus"], "unknown ablation(s) ['bogus']"),
    ("linkpred_large", ["--seed", BIG_SEED], "argument --seed: must be an integer in [0, 2**32)"),
    ("linkpred_large", ["--device", "foo"], "argument --device: unknown device 'foo'"),
    ("linkpred_large", ["--refresh", "--out-dir", "x"], "not allowed with argument"),
    ("linkpred_large", ["--batch-size", "0"], "argument --batch-size: must be > 0"),
    ("linkpred_minibatch", ["--epochs", "0"], "argument --epochs: must be > 0"),
    ("linkpred_minibatch", ["--dataset", "Foo"], "argument --dataset: invalid choice"),
    ("linkpred_minibatch", ["--seed", "-1"], "argument --seed: must be an integer"),
    ("linkpred_pyg_example", ["--dim", "1"], "--dim must be >= 2"),
    ("circle", ["--seed", "-1"], "argument --seed: must be an integer"),
    ("sampler", ["--device", "foo"], "argument --device: unknown device"),
    ("sampler", ["--dims", "1"], "--dims must be >= 2"),
    ("sampler", ["--kappas", "1e300"], "argument --kappas: 1e+300 overflows float32"),
    ("mnist_m1m2", ["--combos", "S+N", "--z1-dims", "1"], "the S+N run's z1 is spherical"),
    ("mnist_m1m2", ["--combos", "S+S", "--z2-dims", "1"], "the S+S run's z2 is spherical"),
    ("mnist_m1m2", ["--z1-dims", "0"], "argument --z1-dims: must be > 0"),
    ("linkpred_minibatch", ["--device", "foo"], "argument --device: unknown device"),
    *[(script, ["--out", out], "argument --out: a file name, without a folder")
      for script in ("linkpred", "linkpred_large", "sampler", "circle", "linkpred_diagnostics")
      for out in ("../../x", "a/b", "/tmp/x")],
]
FIRST = {}
for _case in BAD_INPUT:
    FIRST.setdefault(_case[0], _case)


def test_every_benchmark_refuses_bad_input_in_one_line():
    """One bad flag per benchmark (all of them, run side by side): exit 2 and a single
    ``error:`` line, not a traceback or the usage text; every benchmark imports what it uses."""
    assert set(FIRST) == set(SCRIPTS)
    cases = list(FIRST.values())
    for (script, argv, message), res in zip(cases, cli_many([(s, a) for s, a, _ in cases])):
        assert message in error_line(res), (script, argv)


@pytest.mark.slow
@pytest.mark.parametrize("script, argv, message",
                         [c for c in BAD_INPUT if c not in FIRST.values()])
def test_bad_input_is_one_error_line_and_exit_2(script, argv, message):
    assert message in error_line(cli(script, *argv))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("script", ["sampler", "linkpred", "linkpred_minibatch", "linkpred_large",
                                    "mnist_vae", "mnist_m1m2"])
def test_cuda_without_cuda_is_exit_2(script):
    argv = ["--device", "cuda"] + (SINGLE if script == "mnist_vae" else [])
    assert error_line(cli(script, *argv)) == (
        "error: argument --device: cuda requested but CUDA is not available "
        "(use --device cpu or auto)")


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_prints_its_help_from_anywhere(script, tmp_path):
    """Each CLI runs from any folder (no path set-up of its own) and answers --help."""
    res = cli(script, "--help", cwd=tmp_path)
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr[-500:]


# ---------------------------------------------------------------------------------- output
@pytest.mark.slow
def test_outputs_go_to_runs_unless_refreshed(tmp_path):
    """A run writes to runs/ beside benchmarks/ (ignored by git) and to results/ only with
    --refresh (the other tests write to --out-dir); the sampler table times all three
    samplers."""
    folder = benchmarks_copy(tmp_path)
    argv = ["--batch", "64", "--repeats", "1", "--dims", "3", "--kappas", "2", "--no-progress"]
    res = cli("sampler", *argv, benchmarks=folder)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "runs" / "sampler.json").read_text())
    assert out["meta"]["hardware"]["torch_threads"] == 1  # one thread unless --threads
    assert out["meta"]["hardware"]["device"] == "cpu" and out["meta"]["hardware"]["gpu"] is None
    assert out["meta"]["versions"]["cuda"] == torch.version.cuda
    assert f"wrote {tmp_path / 'runs' / 'sampler.json'}" in res.stdout  # an absolute path
    row = out["rows"][0]
    assert {"vmf", "power", "gauss"} <= set(row["ms"]) and "power_over_gauss" in row
    assert "power/gauss" in res.stdout and not (tmp_path / "results").exists()
    assert cli("sampler", *argv, "--refresh", benchmarks=folder).returncode == 0
    assert (tmp_path / "results" / "sampler.json").is_file()
    assert "runs/" in (REPO / ".gitignore").read_text().splitlines()


def _on_terminal(*argv) -> tuple[subprocess.CompletedProcess, str]:
    """The sampler CLI with its stderr on an 80-column pseudo-terminal: the run and what the
    terminal showed."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    # a fresh pseudo-terminal has 0 columns: no room for a bar
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        res = cli("sampler", *argv, stderr=follower)
        os.close(follower)
        follower = None
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other side is closed: all is read
                break
            if not chunk:
                break
            chunks.append(chunk)
        return res, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)
        if follower is not None:
            os.close(follower)


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
@pytest.mark.slow
@pytest.mark.parametrize("flags, bar", [((), True), (("--no-progress",), False)])
def test_progress_bars_only_on_a_terminal(flags, bar, tmp_path):
    """A bar on a terminal (carriage-return refreshes) unless --no-progress; none on a pipe."""
    argv = ["--batch", "64", "--repeats", "1", "--dims", "3", "--kappas", "2", "3",
            "--out-dir", tmp_path, *flags]
    res, tty = _on_terminal(*argv)
    assert res.returncode == 0 and ("\r" in tty) == bar, tty[-500:]
    if bar:
        assert "sampler" in tty
        piped = cli("sampler", *argv)
        assert piped.returncode == 0 and "\r" not in piped.stderr + piped.stdout


def test_notebook_tooling_is_its_own_extra_and_ci_installs_it():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert not {"nbclient", "nbformat", "ipykernel"} & set(extras["test"])
    assert {"nbclient", "nbformat", "ipykernel"} <= set(extras["notebooks"])
    ci = (REPO / ".ci" / "run").read_text()
    installed = re.search(r'pip install -q -e "\.\[([\w,-]+)\]"', ci)
    assert installed and {"test", "notebooks"} <= set(installed.group(1).split(","))


# -------------------------------------------------------------------- end to end (slow)
@pytest.mark.slow
def test_linkpred_run_writes_to_runs_and_logs_no_carriage_returns(tmp_path):
    """A piped run: no tqdm refreshes in the log, the JSON in --out-dir, results/ untouched, a
    single run shown as such (no '± nan' spread)."""
    res = cli("linkpred", "--epochs", "2", "--runs", "1", "--model", "svgae", "--out", "t",
              "--out-dir", tmp_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\r" not in res.stderr and "\r" not in res.stdout
    assert (tmp_path / "t.json").is_file() and "nan" not in res.stdout
    assert "(n=1)" in res.stdout
    # without a progress bar, a log still shows each finished run
    assert re.search(r"^run 1/1 \(seed 0\): S-VGAE test AUC \d+\.\d\d \(best epoch \d+\); \d+ s$",
                     res.stdout, flags=re.MULTILINE), res.stdout


@pytest.mark.slow
def test_linkpred_trains_the_power_spherical_latent_too(tmp_path):
    res = cli("linkpred", "--dataset", "Cora", "--model", "pvgae", "--runs", "1", "--epochs", "3",
              "--no-progress", "--out-dir", tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    # its own name: the two-model five-run result (linkpred_cora.json) is not overwritten
    path = tmp_path / "linkpred_cora_pvgae_epochs3_runs1.json"
    out = json.loads(path.read_text())
    assert set(out["runs"]) == {"pvgae"} and out["paper"] == {}
    run = out["runs"]["pvgae"][0]
    assert run["final_kappa_median"] > 0 and run["final_decoder_scale"] > 0
    assert "P-VGAE" in res.stdout and f"wrote {path} (" in res.stdout


@pytest.mark.slow
def test_linkpred_models_trained_side_by_side_match_models_trained_alone(tmp_path):
    """``--model both`` trains the S- and N-VGAE interleaved, epoch by epoch: each owns its
    random streams, so both get the numbers they get alone."""
    common = ["--runs", "1", "--epochs", "4", "--no-progress"]
    runs = {}
    for model in ("both", "svgae", "vgae"):
        res = cli("linkpred", "--model", model, *common, "--out-dir", tmp_path / model)
        assert res.returncode == 0, res.stderr[-2000:]
        (path,) = (tmp_path / model).glob("linkpred_cora*.json")
        runs[model] = json.loads(path.read_text())["runs"]
    keys = ("test_auc", "test_ap", "val_auc", "epoch", "final_loss", "final_kappa_median")
    for model in ("svgae", "vgae"):
        alone, both = runs[model][model][0], runs["both"][model][0]
        assert {k: alone.get(k) for k in keys} == {k: both.get(k) for k in keys}


@pytest.mark.slow
def test_linkpred_diagnostics_runs_every_kind_of_ablation(tmp_path):
    """The ablations that swap the latent (the authors' gradient, no sampling), the decoder
    (a bias, a fixed scale), the objective (uniform negatives, joint BCE, the dense reference
    objective, no KL) and the evaluation: a short run of each, all recorded."""
    names = ["authors_grad", "no_sampling", "selected_decoder_bias", "selected_fixed_scale",
             "selected_uniform_negatives", "selected_joint_bce", "full_adjacency", "no_kl",
             "eval_mean"]
    res = cli("linkpred_diagnostics", "--only", ",".join(names), "--runs", "1", "--epochs", "2",
              "--no-progress", "--out-dir", tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "linkpred_diagnostics_cora.json").read_text())
    assert set(out["ablations"]) == set(names) and out["failed"] == {}
    for name, row in out["ablations"].items():
        assert row["config"]["epochs"] == 2 and len(row["runs"]) == 1, name
    assert out["ablations"]["selected_decoder_bias"]["config"]["decoder_bias"] is True
    # a fixed scale stays at its initial value; a learnt one moves
    fixed = out["ablations"]["selected_fixed_scale"]["runs"][0]["final_decoder_scale"]
    assert fixed == pytest.approx(out["ablations"]["selected_fixed_scale"]["config"]["scale_init"])


@pytest.mark.slow
def test_the_minibatch_example_runs_from_anywhere_on_packaged_cora(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYG_SPHERICAL_DATA"}
    res = cli("linkpred_minibatch", "--epochs", "1", cwd=cwd,
              env={**env, "HOME": str(tmp_path / "home")})
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert lines[0].startswith("data: Cora from the copy packaged with pyg_spherical"), lines
    assert lines[1].startswith("epoch   1") and lines[-1].startswith("test AUC"), lines
    assert list(cwd.iterdir()) == []  # writes nothing


# --------------------------------------------------------------------------------- MNIST
def _mnist_or_skip():
    from pyg_spherical.repro.datasets import load_mnist

    try:
        load_mnist(download=False)
    except (FileNotFoundError, ValueError) as e:
        pytest.skip(f"MNIST not available: {e}")


@pytest.mark.slow
def test_mnist_vae_resume_eval_only_and_aggregation(tmp_path):
    """One epoch on 64 images into tmp folders; a resumed run refuses another --lr unless
    --use-checkpoint-settings; --eval-only needs its best.pt; a damaged checkpoint is one line
    naming the file; --table-only aggregates --out-dir."""
    _mnist_or_skip()
    base = ["--latent", "vmf", "--dim", "3", "--train-subset", "64", "--eval-subset", "64",
            "--ll-samples", "2", "--no-download", "--no-progress", "--checkpoint-dir",
            tmp_path / "ck", "--out-dir", tmp_path / "out"]
    res = cli("mnist_vae", *base, "--max-new-epochs", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "out" / "smoke_mnist_vae_vmf_d3_s0.json").is_file()
    err = error_line(cli("mnist_vae", *base, "--max-new-epochs", "1", "--lr", "0.5"))
    assert err.startswith("error: --lr 0.5 differs from 0.001 in the checkpoint ")
    assert "--use-checkpoint-settings" in err
    res = cli("mnist_vae", *base, "--max-new-epochs", "1", "--lr", "0.5",
              "--use-checkpoint-settings")
    assert res.returncode == 0 and "continuing with the checkpoint's --lr 0.001 (not 0.5)" in res.stdout
    # the run trained in two commands: its result lists both, from the epoch each began at
    out = json.loads((tmp_path / "out" / "smoke_mnist_vae_vmf_d3_s0.json").read_text())
    assert [seg["first_epoch"] for seg in out["training"]] == [1, 2]
    first, second = out["training"]
    assert "--use-checkpoint-settings" in second["command"]
    assert "--use-checkpoint-settings" not in first["command"]
    assert second["args"]["lr"] == 0.001  # the value the session trained with, not --lr 0.5
    assert "vmf_d3_s7/best.pt" in error_line(cli("mnist_vae", *base, "--eval-only", "--seed", "7"))
    # the LL estimator check: vmf at d + 1 = 3 with --intrinsic; the missing N-VAE is skipped
    res = cli("mnist_vae", "--ll-estimators", "--dims", "2", "--intrinsic", *base[4:])
    assert res.returncode == 0 and "normal_d2_s0  (no checkpoint: skipped)" in res.stdout
    (row,) = json.loads((tmp_path / "out" / "smoke_mnist_ll_estimators.json").read_text())["runs"]
    assert (row["latent"], row["dim"], row["paper_d"], row["paper_LL"]) == ("vmf", 3, 2, -132.50)
    assert row["paper_gap"] == pytest.approx(-132.50 + 133.72)  # the paper's S-VAE, d = 2
    assert "none of the runs" in error_line(cli("mnist_vae", "--ll-estimators", "--dims", "5",
                                                *base[4:]))
    best = tmp_path / "ck" / "vmf_d3_s0" / "best.pt"
    good = best.read_bytes()
    for damaged in (good[:100], b"\x80\x04garbage" * 9, b""):
        best.write_bytes(damaged)
        err = error_line(cli("mnist_vae", *base, "--eval-only"))
        assert str(best) in err and "not a readable checkpoint" in err
    torch.save({"epoch": 3}, best)
    assert "no 'model' entry" in error_line(cli("mnist_vae", *base, "--eval-only"))
    res = cli("mnist_vae", "--table1", "--table-only", "--dims", "3", "--train-subset", "64",
              "--no-download", "--out-dir", tmp_path / "out")
    assert res.returncode == 0 and "(n=1)" in res.stdout, res.stderr[-2000:]
    assert (tmp_path / "out" / "smoke_mnist_table1.json").is_file()


def test_table1_keeps_the_runs_of_earlier_calls(tmp_path):
    """A Table 1 written after a call on a subset of dims or latents still lists every stored
    run: the paper's dims as rows, spherical runs at d + 1 as the intrinsic rows of d (no data
    needed to aggregate)."""
    run = {"seed": 0, "test": {"LL": -100.0, "ELBO": -105.0, "RE": -90.0, "KL": 15.0},
           "epochs": 10, "best_epoch": 5, "finished": True, "stop_reason": "early_stopping",
           "train_time_s": 1.0, "epoch_time_s": {"median": 0.1}, "eval_time_s": 1.0}
    for name in ("normal_d2_s0", "normal_d20_s1", "vmf_d21_s0", "power_d3_s0", "vmf_d7_s0"):
        (tmp_path / f"mnist_vae_{name}.json").write_text(json.dumps(run))
    (tmp_path / "mnist_vae_gamma_d2_s0.json").write_text("{}")  # not a latent of ours
    env = {k: v for k, v in os.environ.items() if k != "PYG_SPHERICAL_DATA"}
    res = cli("mnist_vae", "--table1", "--table-only", "--dims", "2", "--no-download",
              "--out-dir", tmp_path, env={**env, "HOME": str(tmp_path / "home")})
    assert res.returncode == 0, res.stderr[-2000:]
    table = json.loads((tmp_path / "mnist_table1.json").read_text())
    ours = {lat: sorted(int(d) for d in by) for lat, by in table["runs"].items() if by}
    # rows: the paper's dims 2 and 20 (the latter from an earlier call); S^20 (dim 21) and the
    # Power Spherical on S^2 (dim 3) as intrinsic rows; dim 7 is neither (no paper row 6 or 7)
    assert ours == {"normal": [2, 20], "vmf": [21], "power": [3]}, ours


@pytest.mark.slow
@pytest.mark.parametrize("script", ["linkpred", "linkpred_large", "mnist_vae", "sampler"])
def test_an_out_dir_that_is_a_file_fails_before_any_work(script, tmp_path):
    (tmp_path / "f").write_text("")
    extra = SINGLE if script == "mnist_vae" else []
    for bad in (tmp_path / "f", tmp_path / "f" / "sub"):
        assert error_line(cli(script, *extra, "--out-dir", bad)) == (
            f"error: argument --out-dir: {tmp_path / 'f'} is a file, not a folder")


@pytest.mark.slow
def test_linkpred_result_names_say_what_differs_from_the_default_run(tmp_path):
    """Every flag that differs from the default run is in the result's name, so no run
    overwrites another's result; the wrote line names it."""
    for argv, name in (
            (["--model", "pvgae"], "linkpred_cora_pvgae_epochs1_runs1"),
            (["--model", "svgae", "--paper-settings", "--seed", "3"],
             "linkpred_cora_svgae_table7_epochs1_runs1_seed3")):
        res = cli("linkpred", *argv, "--epochs", "1", "--runs", "1", "--no-progress",
                  "--out-dir", tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        assert f"wrote {tmp_path / name}.json (" in res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("argv, warning", [
    (["--grid-lr", "0.01"], "--grid-lr does nothing without --grid"),
    (["--model", "vgae", "--scale-init", "3"],
     "--scale-init does nothing with --model vgae (the N-VGAE has the plain decoder)"),
    (["--model", "svgae", "--decoder", "plain", "--scale-init", "3"],
     "--scale-init does nothing with --decoder plain (no scale)"),
])
def test_linkpred_flags_the_mode_ignores_get_one_warning_line(argv, warning, tmp_path):
    res = cli("linkpred", *argv, "--epochs", "1", "--runs", "1", "--no-progress",
              "--out-dir", tmp_path)
    assert res.returncode == 0 and res.stderr.splitlines() == [f"warning: {warning}"], res.stderr


@pytest.mark.slow
def test_a_gaussian_latent_may_have_one_dimension(tmp_path):
    """Only a spherical latent needs dim >= 2: N+N at z2 = 1 and the N-VGAE at dim 1 run."""
    res = cli("mnist_m1m2", "--combos", "N+N", "--z2-dims", "1", "--table-only",
              "--out-dir", tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    res = cli("linkpred", "--model", "vgae", "--dim", "1", "--epochs", "1", "--runs", "1",
              "--no-progress", "--out-dir", tmp_path)
    assert res.returncode == 0 and res.stderr == "", res.stderr[-2000:]


INTERRUPT_FIRST_STEP = """
import torch


def _interrupt(self, *args, **kwargs):
    raise KeyboardInterrupt


torch.optim.Adam.step = _interrupt  # Ctrl-C at the first optimiser step
"""


def test_ctrl_c_in_a_linkpred_run_is_one_line_exit_130_and_no_file(tmp_path):
    """A Ctrl-C inside training (raised at the first optimiser step by a ``sitecustomize``):
    exit 130, one ``interrupted:`` line, no traceback, nothing written."""
    hook, out = tmp_path / "hook", tmp_path / "out"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INTERRUPT_FIRST_STEP)
    env = {**os.environ, "PYTHONPATH": str(hook)}
    res = cli("linkpred", "--runs", "1", "--no-progress", "--out-dir", out, env=env)
    err = res.stderr.splitlines()
    assert res.returncode == 130 and len(err) == 1, res.stderr[-2000:]
    assert err[0].startswith("interrupted: nothing half-written"), err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.slow
def test_sigint_during_a_linkpred_run_leaves_one_line_and_the_previous_result(tmp_path):
    """A real SIGINT in the middle of training: exit 130, one line, no traceback, and the
    result of an earlier run under the same name stays as it was."""
    import signal
    import time

    old = tmp_path / "linkpred_cora.json"
    old.write_text('{"old": 1}\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    # a launcher without job control (`cmd &`) starts us with SIGINT ignored, which a child
    # would inherit; with a handler here the child starts with the default and Python's own
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "linkpred.py"),
                                 "--no-progress", "--out-dir", str(tmp_path)], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.stdout.readline().startswith("data: Cora")
    time.sleep(2)  # into the training loop
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert err.splitlines() == [("interrupted: nothing half-written: a run writes its result when "
                                 "it ends (--grid keeps the points it finished under grid/ in the "
                                 "output folder, for the next call)")], err[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["linkpred_cora.json"]
    assert old.read_text() == '{"old": 1}\n'


# ------------------------------------------------------------------------------- the GPU check
GPU_CHECK = REPO / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_gpu_check_refuses_bad_usage_in_one_line(tmp_path):
    run = lambda *args, **env: subprocess.run(
        ["bash", str(GPU_CHECK), *args], capture_output=True, text=True, timeout=120,
        check=False, env={**os.environ, **env})
    res = run(str(tmp_path / "out"))
    assert res.returncode == 2 and res.stderr.splitlines() == [
        "error: usage: bash benchmarks/gpu_check.sh OUTDIR DATAROOT"], res.stderr
    res = run(str(tmp_path / "out"), str(tmp_path / "no-such-root"))
    assert res.returncode == 2 and res.stderr.startswith("error: no data root"), res.stderr
    res = run(str(tmp_path / "out"), str(tmp_path))  # DEVICE=cuda by default
    assert res.returncode == 2 and res.stderr.splitlines() == [
        "error: DEVICE=cuda but this torch sees no CUDA device"], res.stderr


@pytest.mark.slow
def test_gpu_check_quick_on_the_cpu(tmp_path):
    """The script's steps, shortened, on the CPU: every step succeeds, at most 8 files land in
    OUTDIR and nothing in the checkout."""
    from pyg_spherical.repro.datasets import resolve_root

    _mnist_or_skip()
    status = lambda: subprocess.run(["git", "status", "--porcelain"], cwd=REPO,
                                    capture_output=True, text=True, check=False).stdout
    before = status()
    out = tmp_path / "out"
    res = subprocess.run(["bash", str(GPU_CHECK), str(out), str(resolve_root())],
                         capture_output=True, text=True, timeout=900, check=False,
                         env={**os.environ, "DEVICE": "cpu", "QUICK": "1"})
    assert res.returncode == 0, (res.stdout[-3000:], (out / "gpu_check.log").read_text()[-3000:])
    files = {p.name for p in out.iterdir()}
    assert len(files) <= 8 and {"gpu_check.log", "summary.json", "sampler.json",
                                "sampler_syncs.json", "linkpred_cora.json",
                                "mnist_speed.json"} <= files, files
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["steps"]) == {"tests", "sampler", "syncs", "linkpred", "mnist_speed",
                                     "mnist_run"}
    assert all(s["exit"] == 0 for s in summary["steps"].values()), summary["steps"]
    assert " passed" in summary["tests"] and "failed" not in summary["tests"]
    assert summary["syncs_max_per_step"]["MNIST VAE step, batch 64 / normal"] == 0
    assert set(summary["mnist_step_over_normal"]["5"]) == {"vmf", "power"}
    assert status() == before
