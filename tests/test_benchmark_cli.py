"""The benchmark CLIs: one ``error:`` line and exit code 2 for bad input, outputs outside the
committed results/ unless asked, no progress bars in logs, resumed runs that keep their flags."""
from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import common
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BIG_SEED = str(2**70)


def run_main(module: str, argv, capsys):
    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    return e.value.code, capsys.readouterr().err.strip().splitlines()


SINGLE = ["--latent", "vmf", "--dim", "5"]


@pytest.mark.parametrize("module, argv, message", [
    ("mnist_vae", ["--latent", "vmf", "--dim", "0"], "argument --dim: must be > 0"),
    ("mnist_vae", ["--dim", "0"], "argument --dim: must be > 0"),
    ("mnist_vae", [*SINGLE, "--lr", "nan"], "argument --lr: must be > 0 and finite, got nan"),
    ("mnist_vae", [*SINGLE, "--max-new-epochs", "0"], "argument --max-new-epochs: must be > 0"),
    ("mnist_vae", [*SINGLE, "--train-subset", "-5"], "argument --train-subset: must be >= 0"),
    ("mnist_vae", [*SINGLE, "--seed", BIG_SEED], "argument --seed: must be an integer in [0, 2**32)"),
    ("mnist_vae", [*SINGLE, "--device", "foo"], "argument --device: unknown device 'foo'"),
    ("mnist_vae", ["--latent", "vmf"], "--latent and --dim go together"),
    ("mnist_vae", ["--latent", "power", "--dim", "1"], "the P-VAE needs --dim >= 2"),
    ("mnist_vae", ["--table1", "--latents", "poincare"], "argument --latents: invalid choice"),
    ("mnist_m1m2", ["--max-new-epochs", "-1"], "argument --max-new-epochs: must be > 0"),
    ("mnist_m1m2", ["--train-subset", "-1"], "argument --train-subset: must be >= 0"),
    ("mnist_m1m2", ["--lr", "nan"], "argument --lr: must be > 0"),
    ("mnist_m1m2", ["--seed", BIG_SEED], "argument --seed: must be an integer"),
    ("mnist_m1m2_ablations", ["--device", "foo"], "argument --device: unknown device"),
    ("mnist_knn", ["--device", "foo"], "argument --device: unknown device"),
    ("mnist_knn", ["--draw-seed", "-1"], "argument --draw-seed: must be an integer"),
    ("linkpred", ["--seed", BIG_SEED], "argument --seed: must be an integer in [0, 2**32)"),
    ("linkpred", ["--device", "foo"], "argument --device: unknown device 'foo'"),
    ("linkpred", ["--dim", "0"], "argument --dim: must be > 0"),
    ("linkpred", ["--refresh", "--out-dir", "x"], "not allowed with argument"),
    ("linkpred_diagnostics", ["--device", "foo"], "argument --device: unknown device"),
    ("linkpred_large", ["--seed", BIG_SEED], "argument --seed: must be an integer in [0, 2**32)"),
    ("linkpred_large", ["--device", "foo"], "argument --device: unknown device 'foo'"),
    ("linkpred_large", ["--refresh", "--out-dir", "x"], "not allowed with argument"),
    ("linkpred_large", ["--batch-size", "0"], "argument --batch-size: must be > 0"),
    ("linkpred_minibatch", ["--epochs", "0"], "argument --epochs: must be > 0"),
    ("linkpred_minibatch", ["--dataset", "Foo"], "argument --dataset: invalid choice"),
    ("linkpred_minibatch", ["--seed", "-1"], "argument --seed: must be an integer"),
    ("circle", ["--seed", "-1"], "argument --seed: must be an integer"),
    ("sampler", ["--device", "foo"], "argument --device: unknown device"),
    ("sampler", ["--dims", "1"], "--dims must be >= 2"),
    ("sampler", ["--kappas", "1e300"], "argument --kappas: 1e+300 overflows float32"),
    ("mnist_m1m2", ["--combos", "S+N", "--z1-dims", "1"], "the S+N run's z1 is spherical"),
    ("mnist_m1m2", ["--combos", "S+S", "--z2-dims", "1"], "the S+S run's z2 is spherical"),
    ("mnist_m1m2", ["--z1-dims", "0"], "argument --z1-dims: must be > 0"),
    ("linkpred_minibatch", ["--device", "foo"], "argument --device: unknown device"),
])
def test_bad_input_is_one_error_line_and_exit_2(module, argv, message, capsys):
    code, err = run_main(module, argv, capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and message in err[0], err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("module", ["sampler", "linkpred", "linkpred_minibatch", "linkpred_large",
                                    "mnist_vae", "mnist_m1m2"])
def test_cuda_without_cuda_is_exit_2(module, capsys):
    argv = ["--device", "cuda"] + (SINGLE if module == "mnist_vae" else [])
    code, err = run_main(module, argv, capsys)
    expected = ("error: argument --device: cuda requested but CUDA is not available "
                "(use --device cpu or auto)")
    assert code == 2 and err == [expected], err


def test_run_metadata_names_the_gpu_and_the_cuda_versions(monkeypatch):
    cpu = common.run_metadata(argparse.Namespace(device=torch.device("cpu")))
    assert cpu["hardware"]["device"] == "cpu" and cpu["hardware"]["gpu"] is None
    assert cpu["versions"]["cuda"] == torch.version.cuda
    import torch_geometric

    assert cpu["versions"]["torch_geometric"] == torch_geometric.__version__

    class Props:  # what torch reports for a GPU
        name, total_memory, major, minor = "NVIDIA H200", 141 * 2**30, 9, 0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: Props)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    gpu = common.run_metadata(argparse.Namespace(device=torch.device("cuda", 0)))
    assert gpu["hardware"]["device"] == "cuda:0"
    assert (gpu["hardware"]["gpu"], gpu["hardware"]["gpu_memory_gb"],
            gpu["hardware"]["gpu_capability"]) == ("NVIDIA H200", 141.0, "9.0")
    assert gpu["versions"]["cuda"] == "12.8"


def test_mnist_vae_errors_are_not_printed_under_the_usage_text():
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mnist_vae.py"), "--dim", "0"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2 and res.stderr.splitlines() == [
        "error: argument --dim: must be > 0 and finite, got 0"], res.stderr


# ------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-a-checkpoint"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(damage, tmp_path, capsys):
    path = tmp_path / "run" / "best.pt"
    path.parent.mkdir()
    torch.save({"model": {"w": torch.zeros(1000)}, "epoch": 3}, path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x80\x04garbage" * 9,
                      "empty": b""}.get(damage, data))
    keys = ("model", "record") if damage == "not-a-checkpoint" else ("model",)
    with pytest.raises(SystemExit) as e:
        common.load_checkpoint(path, keys=keys)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and str(path) in err[0], err
    assert err[0].startswith("error: ")


def _trainer(ckpt, lr=1e-3, patience=5, warmup=2):
    from pyg_spherical.repro.training import EarlyStopping, Trainer

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(batch, epoch):
        return {"loss": model(batch).pow(2).mean()}

    return Trainer(model, opt, step, lambda m, e: {"elbo": -float(e)}, monitor="elbo",
                   early_stopping=EarlyStopping(patience, min_epochs=warmup), max_epochs=10,
                   checkpoint_dir=ckpt)


def test_resume_refuses_flags_that_differ_from_the_checkpoint(tmp_path, capsys):
    _trainer(tmp_path).fit([torch.randn(4, 3)], max_new_epochs=2)
    args = argparse.Namespace(lr=0.5, patience=5, warmup=2, use_checkpoint_settings=False)
    with pytest.raises(SystemExit) as e:
        common.resume(_trainer(tmp_path, lr=0.5), args, ("lr", "patience", "warmup"))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --lr 0.5 differs from 0.001 in the checkpoint ")
    assert "--use-checkpoint-settings" in err[0]
    # matching flags resume silently; the explicit switch takes the checkpoint's values
    same = argparse.Namespace(lr=1e-3, patience=5, warmup=2)
    tr = _trainer(tmp_path)
    assert common.resume(tr, same, ("lr", "patience", "warmup")) and tr.epoch == 2
    args = argparse.Namespace(lr=0.5, patience=9, warmup=2, use_checkpoint_settings=True)
    tr = _trainer(tmp_path, lr=0.5, patience=9)
    assert common.resume(tr, args, ("lr", "patience", "warmup"))
    assert (args.lr, args.patience) == (1e-3, 5)
    assert tr.optimizer.param_groups[0]["lr"] == 1e-3 and tr.stopper.patience == 5
    out = capsys.readouterr().out
    assert "continuing with the checkpoint's --lr 0.001 (not 0.5)" in out


# ---------------------------------------------------------------------------------- output
def test_progress_bars_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    args = argparse.Namespace(no_progress=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not common.show_progress(args) and common.tqdm_factory(args) is None
    bar = common.progress_bar(args, 100, "x")
    for _ in range(100):
        bar.update(1)
    bar.close()
    assert sys.stderr.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", Tty())
    assert common.show_progress(args) and common.tqdm_factory(args) is not None
    assert not common.show_progress(argparse.Namespace(no_progress=True))


def test_single_run_tables_show_no_nan_spread(capsys):
    import linkpred

    run = {"test_auc": 0.9, "test_ap": 0.91, "val_auc": 0.92, "epoch_ms_median": 3.0, "epoch": 7}
    s = linkpred.summarize([run])
    assert s["test_auc"]["se"] is None and s["runs"] == 1
    cfg = {"lr": 0.01, "dropout": 0.1, "dim": 16, "epochs": 1}
    linkpred.print_table("Cora", {"svgae": s}, {"svgae": cfg})
    out = capsys.readouterr().out
    assert "nan" not in out and "90.00 (n=1)" in out
    assert common.fmt(1.0, float("nan")) == "1.00" and common.fmt(1.0, None) == "1.00"
    assert common.fmt_runs(1.0, 0.5, 3) == "1.00 ± 0.50"


def test_outputs_go_to_runs_unless_refreshed(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    ns = argparse.Namespace
    assert common.out_dir(ns(refresh=False, out_dir=None)) == tmp_path / "runs"
    assert common.out_dir(ns(refresh=True, out_dir=None)) == tmp_path / "results"
    assert common.out_dir(ns(refresh=False, out_dir=str(tmp_path / "x"))) == tmp_path / "x"
    assert "runs/" in (REPO / ".gitignore").read_text().splitlines()


def test_sampler_times_power_too_and_writes_to_runs(monkeypatch, tmp_path, capsys):
    import json

    import sampler

    monkeypatch.setattr(common, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:  # one thread by default, as every CLI (the README's policy)
        sampler.main(["--batch", "64", "--repeats", "1", "--dims", "3", "--kappas", "2",
                      "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    out = json.loads((tmp_path / "runs" / "sampler.json").read_text())
    assert out["meta"]["hardware"]["torch_threads"] == 1
    row = out["rows"][0]
    assert {"vmf", "power", "gauss"} <= set(row["ms"]) and "power_over_gauss" in row
    assert "power/gauss" in capsys.readouterr().out and not (tmp_path / "results").exists()


@pytest.mark.parametrize("script", ["linkpred_diagnostics", "linkpred_large"])
def test_benchmarks_do_not_edit_sys_path_and_run_from_anywhere(script, tmp_path):
    for path in (REPO / "benchmarks").glob("*.py"):
        text = path.read_text()
        assert "sys.path.insert" not in text and "sys.path.append" not in text, path.name
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{script}.py"), "--help"],
                         capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr[-500:]


def test_linkpred_and_diagnostics_share_one_run_class_without_shadowing():
    import linkpred
    import linkpred_diagnostics

    from pyg_spherical.repro.training import Trainer

    assert not hasattr(linkpred, "Trainer") and linkpred.LinkPredRun is not Trainer
    assert issubclass(linkpred_diagnostics.AblationRun, linkpred.LinkPredRun)
    text = (REPO / "benchmarks" / "linkpred_diagnostics.py").read_text()
    assert "reparameterized_theta" not in text and 'gradient="authors"' in text


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
    """A piped run: no tqdm refreshes in the log, the JSON in --out-dir, results/ untouched."""
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "linkpred.py"), "--epochs",
                          "2", "--runs", "1", "--model", "svgae", "--out", "t",
                          "--out-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=300, check=False, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\r" not in res.stderr and "\r" not in res.stdout
    assert (tmp_path / "t.json").is_file() and "± nan" not in res.stdout


@pytest.mark.slow
def test_the_minibatch_example_runs_from_anywhere_on_packaged_cora(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYG_SPHERICAL_DATA"}
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "linkpred_minibatch.py"),
                          "--epochs", "1"], capture_output=True, text=True, timeout=300,
                         check=False, cwd=cwd, env={**env, "HOME": str(tmp_path / "home")})
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert lines[0].startswith("data: Cora from the copy packaged with pyg_spherical"), lines
    assert lines[1].startswith("epoch   1") and lines[-1].startswith("test AUC"), lines
    assert list(cwd.iterdir()) == []  # writes nothing


def _mnist_or_skip():
    from pyg_spherical.repro.datasets import load_mnist

    try:
        load_mnist(download=False)
    except (FileNotFoundError, ValueError) as e:
        pytest.skip(f"MNIST not available: {e}")


@pytest.mark.slow
def test_mnist_vae_resume_eval_only_and_aggregation(tmp_path, capsys):
    """One epoch on 64 images into tmp folders; a resumed run refuses another --lr; --eval-only
    needs its best.pt; a damaged checkpoint is one line; --table-only aggregates --out-dir."""
    import mnist_vae

    _mnist_or_skip()
    base = ["--latent", "vmf", "--dim", "3", "--train-subset", "64", "--eval-subset", "64",
            "--ll-samples", "2", "--no-download", "--checkpoint-dir", str(tmp_path / "ck"),
            "--out-dir", str(tmp_path / "out")]
    mnist_vae.main([*base, "--max-new-epochs", "1"])
    assert (tmp_path / "out" / "smoke_mnist_vae_vmf_d3_s0.json").is_file()
    capsys.readouterr()
    code, err = run_main("mnist_vae", [*base, "--max-new-epochs", "1", "--lr", "0.5"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --lr 0.5 differs from 0.001")
    code, err = run_main("mnist_vae", [*base, "--eval-only", "--seed", "7"], capsys)
    assert code == 2 and len(err) == 1 and "vmf_d3_s7/best.pt" in err[0], err
    best = tmp_path / "ck" / "vmf_d3_s0" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    code, err = run_main("mnist_vae", [*base, "--eval-only"], capsys)
    assert code == 2 and len(err) == 1 and str(best) in err[0], err
    mnist_vae.main(["--table1", "--table-only", "--dims", "3", "--train-subset", "64",
                    "--no-download", "--out-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "(n=1)" in out and (tmp_path / "out" / "smoke_mnist_table1.json").is_file()


def test_table1_keeps_the_runs_of_earlier_calls(tmp_path, monkeypatch):
    """A Table 1 written after a call on a subset of dims or latents still lists every stored
    run: the paper's dims as rows, spherical runs at d + 1 as the intrinsic rows of d."""
    import argparse

    import mnist_vae as m

    monkeypatch.setitem(m.SMOKE, "on", False)  # an earlier smoke run in this process sets it
    for name in ("normal_d2_s0", "normal_d20_s1", "vmf_d21_s0", "power_d3_s0", "vmf_d7_s0"):
        (tmp_path / f"mnist_vae_{name}.json").write_text("{}")
    (tmp_path / "mnist_vae_gamma_d2_s0.json").write_text("{}")  # not a latent of ours
    args = argparse.Namespace(out_dir=str(tmp_path), refresh=False)
    runs, seeds = m.stored_runs(args)
    assert runs == {("normal", 2), ("normal", 20), ("vmf", 21), ("power", 3), ("vmf", 7)}
    assert seeds == {0, 1}


class _StubPosterior(torch.nn.Module):
    """Posteriors with known spreads and means, for :func:`mnist_vae.posterior_summary`."""

    def __init__(self, kind, spread, means):
        super().__init__()
        self.kind, self.spread, self.means = kind, spread, means

    def posterior(self, x):
        from pyg_spherical.distributions import VonMisesFisher

        rows = self.spread[x[:, 0].long()]
        if self.kind == "normal":
            return torch.distributions.Independent(
                torch.distributions.Normal(torch.zeros_like(rows).expand(-1, 2), rows), 1)
        loc = torch.nn.functional.normalize(torch.ones(len(x), 3, dtype=torch.float64), dim=-1)
        return VonMisesFisher(loc, rows.squeeze(-1))

    def embed(self, x):
        return self.means[x[:, 0].long()]


@pytest.mark.parametrize("kind", ["normal", "vmf"])
def test_posterior_summary_quantiles_and_active_units(kind):
    """Quantiles against numpy's, and the active-unit count of means whose per-unit variances
    are known in closed form (alternating +-a over n rows: variance a^2 n / (n - 1)), across
    the 2000-image chunks the summary encodes in."""
    import mnist_vae
    import numpy as np

    n = 2500
    gen = torch.Generator().manual_seed(0)
    spread = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 50 + 0.5
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
    amplitude = torch.tensor([0.0, 0.07, 0.15, 1.0], dtype=torch.float64)  # var 0, .0049, .0225, 1
    means = sign[:, None] * amplitude
    x = torch.arange(n, dtype=torch.float64)[:, None]
    out = mnist_vae.posterior_summary(_StubPosterior(kind, spread, means), x)
    name = "std" if kind == "normal" else "concentration"
    values = spread.expand(-1, 2 if kind == "normal" else 1).flatten().numpy()
    for q, key in ((0.1, "q10"), (0.5, "median"), (0.9, "q90")):
        assert out[f"{name}_{key}"] == pytest.approx(float(np.quantile(values, q)), rel=1e-12)
    assert out["active_units"] == 2


def test_linkpred_trains_the_power_spherical_latent_too(tmp_path, capsys):
    import json

    import linkpred

    assert linkpred.main(["--dataset", "Cora", "--model", "pvgae", "--runs", "1", "--epochs", "3",
                          "--no-progress", "--out-dir", str(tmp_path)]) == 0
    # its own name: the two-model five-run result (linkpred_cora.json) is not overwritten
    path = tmp_path / "linkpred_cora_pvgae_epochs3_runs1.json"
    out = json.loads(path.read_text())
    assert set(out["runs"]) == {"pvgae"} and out["paper"] == {}
    run = out["runs"]["pvgae"][0]
    assert run["final_kappa_median"] > 0 and run["final_decoder_scale"] > 0
    stdout = capsys.readouterr().out
    assert "P-VGAE" in stdout and f"wrote {path} (" in stdout


@pytest.mark.parametrize("argv, name", [
    ([], "linkpred_cora"),
    (["--dataset", "citeseer", "--model", "pvgae"], "linkpred_citeseer_pvgae"),
    (["--model", "svgae", "--paper-settings"], "linkpred_cora_svgae_table7"),
    (["--runs", "1"], "linkpred_cora_runs1"),
    (["--model", "svgae", "--lr", "0.005", "--dim", "32", "--seed", "3"],
     "linkpred_cora_svgae_lr0.005_dim32_seed3"),
    (["--decoder", "plain", "--grid", "--grid-dim", "16", "32"],
     "linkpred_cora_plain_decoder_griddim16-32_grid"),
])
def test_linkpred_result_names_say_what_differs_from_the_default_run(argv, name):
    """The committed names (results/linkpred_cora.json, ..._pvgae, ..._svgae_table7) are what
    these flags give; any other flag adds itself, so no run overwrites another's result."""
    import linkpred

    p = linkpred.build_parser()
    assert linkpred.result_name(p, p.parse_args(argv)) == name


@pytest.mark.parametrize("argv, warning", [
    (["--grid-lr", "0.01"], "--grid-lr does nothing without --grid"),
    (["--model", "vgae", "--scale-init", "3"], "--scale-init does nothing with --model vgae"),
    (["--decoder", "plain", "--scale-init", "3"], "--scale-init does nothing with --decoder plain"),
    (["--plot", "--speed"], "--speed does nothing with --plot"),
])
def test_linkpred_flags_the_mode_ignores_get_one_warning_line(argv, warning, capsys):
    import linkpred

    p = linkpred.build_parser()
    linkpred.check_args(p, p.parse_args(argv))
    assert capsys.readouterr().err.splitlines() == [f"warning: {warning}" + (
        " (the N-VGAE has the plain decoder)" if "vgae" in warning else
        " (no scale)" if "plain" in warning else
        " (Figure 3: both models, dim 3, one run)" if "plot" in warning else "")]
    p.parse_args([])  # the defaults warn about nothing
    linkpred.check_args(p, p.parse_args([]))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("module", ["linkpred", "linkpred_large", "sampler", "circle",
                                    "linkpred_diagnostics"])
@pytest.mark.parametrize("out", ["../../x", "a/b", "/tmp/x"])
def test_out_is_a_file_name_not_a_path(module, out, capsys):
    code, err = run_main(module, ["--out", out], capsys)
    assert code == 2 and len(err) == 1 and "argument --out: a file name, without a folder" in err[0]


@pytest.mark.parametrize("module", ["linkpred", "linkpred_large", "mnist_vae", "sampler"])
def test_an_out_dir_that_is_a_file_fails_before_any_work(module, tmp_path, capsys):
    (tmp_path / "f").write_text("")
    for bad in (tmp_path / "f", tmp_path / "f" / "sub"):
        code, err = run_main(module, ["--out-dir", str(bad)], capsys)
        expected = f"error: argument --out-dir: {tmp_path / 'f'} is a file, not a folder"
        assert code == 2 and err == [expected], err


def test_ctrl_c_in_linkpred_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    import linkpred

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(linkpred, "train_runs", interrupt)
    code, err = run_main("linkpred", ["--runs", "1", "--no-progress", "--out-dir", str(tmp_path)],
                         capsys)
    assert code == 130 and len(err) == 1 and err[0].startswith("interrupted: nothing half-written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigint_during_a_linkpred_run_leaves_one_line(tmp_path):
    """A real SIGINT in the middle of training: exit 130, one line, no traceback, no file."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "linkpred.py"),
                             "--no-progress", "--out-dir", str(tmp_path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("data: Cora")
    time.sleep(2)  # into the training loop
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert err.splitlines() == [("interrupted: nothing half-written: a run writes its result when "
                                 "it ends (--grid keeps the points it finished under grid/ in the "
                                 "output folder, for the next call)")], err[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_wrote_lines_show_absolute_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    common.wrote("runs/x.json", " (3 s)")
    assert capsys.readouterr().out == f"wrote {tmp_path / 'runs' / 'x.json'} (3 s)\n"


SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py")
                 if not p.stem.startswith("_") and p.stem != "common")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_imports_and_prints_its_help(script, capsys):
    """Each CLI imports (no name it needs has moved away) and answers --help with exit 0."""
    import importlib

    module = importlib.import_module(script)
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_a_gaussian_latent_may_have_one_dimension():
    """Only a spherical latent needs dim >= 2: N+N at z2 = 1 and the N-VGAE at dim 1 parse."""
    import linkpred
    import mnist_m1m2

    assert mnist_m1m2.parse_args(["--combos", "N+N", "--z2-dims", "1"]).z2_dims == [1]
    p = linkpred.build_parser()
    linkpred.check_args(p, p.parse_args(["--model", "vgae", "--dim", "1"]))


def test_an_interrupted_write_leaves_the_previous_result_whole(tmp_path, monkeypatch):
    """The JSON is written aside and renamed: a Ctrl-C while writing keeps the old file."""
    common.write_json("r", {"old": 1}, directory=tmp_path)
    write = Path.write_text

    def half_then_interrupt(self, text, *a, **k):
        write(self, text[: len(text) // 2], *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        common.write_json("r", {"new": list(range(100))}, directory=tmp_path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert (tmp_path / "r.json").read_text() == '{\n  "old": 1\n}\n'


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
    import json

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
