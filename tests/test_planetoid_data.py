"""Where the Planetoid raw files come from, and what happens when they are wrong.

The loader's order is: a chosen data root, the copy packaged with pyg_spherical (Cora, CiteSeer),
a download (PubMed). These tests pin that order, the md5 checks, the content-keyed processed cache,
relative roots, and the benchmark CLI's one-line errors.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from cli import cli

from pyg_spherical.repro.datasets import (
    PLANETOID_MD5,
    PLANETOID_PACKAGED,
    ChecksumError,
    DataNotFoundError,
    explicit_root,
    link_split,
    load_planetoid,
    planetoid_source,
    resolve_cache,
    resolve_root,
)
from pyg_spherical.repro.datasets import planetoid as planetoid_mod

PACKAGED = Path(planetoid_mod.__file__).parent / "_data" / "planetoid"
CORA_FILES = [f"ind.cora.{s}" for s in PLANETOID_MD5["Cora"]]
CORA_SHAPE = (2708, 1433, 10556)
# read before the fixture below hides it: only the PubMed test uses the real data root
DATA_ROOT = os.environ.get("PYG_SPHERICAL_DATA", "").strip()


@pytest.fixture(autouse=True)
def fresh_user(tmp_path, monkeypatch):
    """No data root, an empty home and cache: what a new user has."""
    monkeypatch.delenv("PYG_SPHERICAL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYG_SPHERICAL_CACHE", str(tmp_path / "cache"))


def copy_cora(root: Path) -> Path:
    """A data root holding Cora (copied from the packaged files); returns its raw folder."""
    raw = root / "Cora" / "raw"
    raw.mkdir(parents=True)
    for f in CORA_FILES:
        shutil.copyfile(PACKAGED / "Cora" / "raw" / f, raw / f)
    return raw


def shape(data):
    return data.num_nodes, data.num_features, data.edge_index.size(1)


# ------------------------------------------------------------------------------ packaged copy
def test_packaged_files_match_the_manifest_the_table_and_carry_the_licence():
    manifest = {}
    for line in (PACKAGED / "MD5SUMS").read_text().splitlines():
        md5, rel = line.split()
        manifest[rel] = md5
    expected = {f"{n}/raw/ind.{n.lower()}.{s}": md5
                for n in PLANETOID_PACKAGED for s, md5 in PLANETOID_MD5[n].items()}
    assert manifest == expected
    for rel, md5 in manifest.items():
        assert hashlib.md5((PACKAGED / rel).read_bytes()).hexdigest() == md5, rel
    licence = (PACKAGED / "LICENSE").read_text()
    assert "MIT" in licence and "Copyright (c) 2016 Zhilin Yang" in licence
    assert set(PLANETOID_PACKAGED) == {"Cora", "CiteSeer"}  # PubMed (8.7 MB) stays external


@pytest.mark.parametrize("name, expected", [("Cora", CORA_SHAPE), ("CiteSeer", (3327, 3703, 9104))])
def test_a_fresh_user_gets_the_packaged_copy_offline(name, expected):
    src = planetoid_source(name, download=False)
    assert src.kind == "packaged" and src.raw_dir == PACKAGED / name / "raw"
    assert shape(load_planetoid(name, download=False)) == expected


def test_a_damaged_packaged_copy_is_refused(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    shutil.copytree(PACKAGED / "Cora", pkg / "Cora")
    with open(pkg / "Cora" / "raw" / "ind.cora.ally", "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(planetoid_mod, "_PACKAGE_DIR", pkg)
    with pytest.raises(ChecksumError, match=r"ind\.cora\.ally: md5 [0-9a-f]{32}, expected 125d708"):
        load_planetoid("Cora")


def test_a_chosen_root_comes_before_the_packaged_copy(tmp_path, monkeypatch):
    raw = copy_cora(tmp_path / "data")
    assert planetoid_source("Cora", tmp_path / "data") == ("Cora", "root", raw)
    monkeypatch.setenv("PYG_SPHERICAL_DATA", str(tmp_path / "data"))
    assert planetoid_source("Cora").kind == "root"
    assert shape(load_planetoid("Cora")) == CORA_SHAPE


def test_a_root_without_the_data_set_falls_through(tmp_path):
    (tmp_path / "data" / "MNIST").mkdir(parents=True)  # e.g. a root holding only MNIST
    assert planetoid_source("Cora", tmp_path / "data").kind == "packaged"


def test_pubmed_offline_without_a_root_names_the_root_and_the_download():
    assert "PubMed" not in PLANETOID_PACKAGED
    assert planetoid_source("PubMed").kind == "download"
    with pytest.raises(DataNotFoundError) as e:
        load_planetoid("PubMed", download=False)
    msg = str(e.value)
    assert "PubMed: raw files not found" in msg
    assert "$PYG_SPHERICAL_DATA" in msg and "download=True" in msg and "\n" not in msg
    assert e.value.needs == ("root", "download")


def test_a_download_is_verified_then_reused(tmp_path, monkeypatch):
    """No network in tests: the "mirror" serves the packaged Cora files."""
    served = []

    def fake_download(url, dest, timeout):
        served.append(url.rsplit("/", 1)[1])
        shutil.copyfile(PACKAGED / "Cora" / "raw" / served[-1], dest)

    monkeypatch.setattr(planetoid_mod, "PLANETOID_PACKAGED", ())
    monkeypatch.setattr(planetoid_mod, "download_url", fake_download)
    dl = tmp_path / "cache" / "planetoid" / "downloads" / "Cora" / "raw"
    assert planetoid_source("Cora") == ("Cora", "download", dl)
    assert shape(load_planetoid("Cora")) == CORA_SHAPE
    assert sorted(served) == sorted(CORA_FILES)
    assert planetoid_source("Cora").kind == "cache"
    load_planetoid("Cora")
    assert len(served) == len(CORA_FILES)  # not downloaded twice


def test_a_corrupt_download_leaves_nothing_behind(tmp_path, monkeypatch):
    def fake_download(url, dest, timeout):
        Path(dest).write_bytes(b"<html>proxy login</html>")

    monkeypatch.setattr(planetoid_mod, "PLANETOID_PACKAGED", ())
    monkeypatch.setattr(planetoid_mod, "download_url", fake_download)
    with pytest.raises(ChecksumError, match=r"ind\.cora\.x: md5"):
        load_planetoid("Cora")
    dl = tmp_path / "cache" / "planetoid" / "downloads" / "Cora"
    assert [p for p in dl.rglob("*") if p.is_file()] == []
    assert planetoid_source("Cora").kind == "download"


def test_a_failed_download_names_the_root(monkeypatch):
    import urllib.error

    def offline(url, dest, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(planetoid_mod, "download_url", offline)
    with pytest.raises(DataNotFoundError, match="download of https://.*ind.pubmed.x failed") as e:
        load_planetoid("PubMed")
    assert e.value.needs == ("root",) and "$PYG_SPHERICAL_DATA" in str(e.value)


# ------------------------------------------------------------- what the cache must not hide
@pytest.fixture
def warm_cache(tmp_path):
    """Cora processed once from a data root into the (shared) cache, as an earlier run leaves it."""
    copy_cora(tmp_path / "first")
    data = load_planetoid("Cora", tmp_path / "first", download=False)
    assert shape(data) == CORA_SHAPE
    return data


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_a_root_that_does_not_exist_is_an_error(warm_cache, tmp_path, monkeypatch, via):
    missing = tmp_path / "no-such-root"
    if via == "environment":
        monkeypatch.setenv("PYG_SPHERICAL_DATA", str(missing))
    root = missing if via == "argument" else None
    with pytest.raises(DataNotFoundError, match=f"the data root {missing} does not exist"):
        load_planetoid("Cora", root, download=False)


def test_a_missing_raw_file_is_an_error(warm_cache, tmp_path):
    raw = copy_cora(tmp_path / "second")
    (raw / "ind.cora.tx").unlink()
    with pytest.raises(DataNotFoundError) as e:
        load_planetoid("Cora", tmp_path / "second", download=False)
    assert e.value.problem == f"Cora: {raw} lacks ind.cora.tx"


def different_cora(root: Path) -> Path:
    """Cora with its test nodes listed in reverse: parseable, but not the canonical files."""
    raw = copy_cora(root)
    idx = raw / "ind.cora.test.index"
    idx.write_text("\n".join(reversed(idx.read_text().split())) + "\n")
    return raw


def test_different_raw_files_are_never_served_the_cached_graph(warm_cache, tmp_path):
    different_cora(tmp_path / "second")
    with pytest.raises(ChecksumError, match=r"ind\.cora\.test\.index: md5"):
        load_planetoid("Cora", tmp_path / "second", download=False)
    other = load_planetoid("Cora", tmp_path / "second", download=False, verify=False)
    assert not torch.equal(other.x, warm_cache.x)  # processed anew from the files given
    fresh = load_planetoid("Cora", tmp_path / "second", cache=tmp_path / "c2", verify=False)
    assert torch.equal(other.x, fresh.x) and torch.equal(other.y, fresh.y)
    # and the first copy still gets its own graph back
    assert torch.equal(load_planetoid("Cora", tmp_path / "first").x, warm_cache.x)


@pytest.mark.parametrize("victim", ["ind.cora.graph", "ind.cora.allx"])
def test_a_truncated_raw_file_is_named(tmp_path, victim):
    raw = copy_cora(tmp_path / "data")
    blob = (raw / victim).read_bytes()
    (raw / victim).write_bytes(blob[: len(blob) // 2])
    path = re.escape(str(raw / victim))
    with pytest.raises(ChecksumError, match=rf"{path}: md5 .*truncated"):
        load_planetoid("Cora", tmp_path / "data")
    # without the md5 check, the parser's failure still names the file, on one line
    with pytest.raises(ValueError, match=rf"^Cora: cannot read {path}: .*truncated") as e:
        load_planetoid("Cora", tmp_path / "data", verify=False)
    assert "\n" not in str(e.value)


# -------------------------------------------------------------------------- relative roots
def test_relative_roots_are_made_absolute_when_read(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_root("../data") == tmp_path / "data"
    assert resolve_cache("c") == tmp_path / "work" / "c"
    monkeypatch.setenv("PYG_SPHERICAL_DATA", "../data")
    monkeypatch.setenv("PYG_SPHERICAL_CACHE", "../cache")
    assert explicit_root() == resolve_root() == tmp_path / "data"
    assert resolve_cache() == tmp_path / "cache"


def test_a_relative_data_root_loads_from_another_working_directory(tmp_path, monkeypatch):
    copy_cora(tmp_path / "data")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("PYG_SPHERICAL_DATA", "../data")  # the README's own relative form
    monkeypatch.setenv("PYG_SPHERICAL_CACHE", "../cache")
    src = planetoid_source("Cora", download=False)
    assert src.kind == "root" and src.raw_dir == tmp_path / "data" / "Cora" / "raw"
    first = load_planetoid("Cora", download=False)
    # a notebook kernel runs one folder down, with the absolute root its parent resolved
    (tmp_path / "work" / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "work" / "notebooks")
    again = load_planetoid("Cora", tmp_path / "data", cache=tmp_path / "cache", download=False)
    assert torch.equal(first.x, again.x) and shape(again) == CORA_SHAPE
    links = [p for p in (tmp_path / "cache").rglob("*") if p.is_symlink()]
    assert all(os.path.isabs(os.readlink(p)) for p in links), links


# ---------------------------------------------------------------------------- benchmark CLI
def run_cli(*argv):
    """``benchmarks/linkpred.py argv`` as a fresh user runs it (this test's environment)."""
    res = cli("linkpred", *argv)
    return res.returncode, res.stderr.strip().splitlines(), res.stdout


@pytest.mark.slow
def test_cli_nonexistent_root_is_one_error_line_even_with_a_warm_cache(warm_cache, tmp_path):
    code, err, _ = run_cli("--root", tmp_path / "nonexistent", "--no-download", "--epochs", "1",
                           "--runs", "1", "--no-progress", "--out", "smoke_planetoid_data")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: Cora: raw files not found: the data root "
                             f"{tmp_path / 'nonexistent'} does not exist; give --root DIR"), err


def test_cli_offline_message_speaks_in_flags():
    code, err, _ = run_cli("--dataset", "PubMed", "--no-download", "--no-progress")
    assert code == 2 and len(err) == 1 and err[0].startswith("error: PubMed: raw files not found")
    line = err[0]
    assert "--root DIR" in line and "$PYG_SPHERICAL_DATA" in line and "--no-download" in line
    assert "download=True" not in line and "root=" not in line, line


@pytest.mark.slow
def test_cli_truncated_raw_file_is_one_error_line(tmp_path):
    raw = copy_cora(tmp_path / "data")
    (raw / "ind.cora.graph").write_bytes((raw / "ind.cora.graph").read_bytes()[:1000])
    code, err, _ = run_cli("--root", tmp_path / "data", "--no-download", "--no-progress")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {raw / 'ind.cora.graph'}: md5"), err


@pytest.mark.slow
def test_cli_says_in_one_line_which_copy_it_read(tmp_path):
    argv = ["--no-download", "--epochs", "1", "--runs", "1", "--model", "svgae",
            "--no-progress", "--out-dir", tmp_path / "out"]
    code, err, out = run_cli(*argv)
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"data: Cora from the copy packaged with pyg_spherical ({PACKAGED}/Cora/raw)")
    copy_cora(tmp_path / "data")
    code, err, out = run_cli("--root", tmp_path / "data", *argv)
    assert code == 0 and out.splitlines()[0] == f"data: Cora from the data root {tmp_path}/data"



# ------------------------------------------------------------------- PubMed (external data)
def test_pubmed_from_a_data_root():
    if not DATA_ROOT:
        pytest.skip("PubMed is not packaged: set PYG_SPHERICAL_DATA to a folder holding "
                    "PubMed/raw/ind.pubmed.* to run this test")
    src = planetoid_source("PubMed", DATA_ROOT, download=False)
    if src.kind != "root":
        msg = f"PubMed raw files not found under {DATA_ROOT}/PubMed/raw"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set: the data must be present)")
        pytest.skip(msg)
    assert shape(load_planetoid("PubMed", DATA_ROOT, download=False)) == (19717, 500, 88648)


@pytest.mark.parametrize("edges", [0, 3, 19])
def test_link_split_of_a_tiny_graph_names_the_problem(edges):
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    ei = to_undirected(torch.stack([torch.arange(edges), torch.arange(edges) + 1]))
    with pytest.raises(ValueError, match=rf"has {edges} undirected edge\(s\), too few for the "
                                         r"85 / 5 / 10 % .* at least 20 edges"):
        link_split(Data(edge_index=ei, num_nodes=edges + 1), seed=0)
    ei = to_undirected(torch.stack([torch.arange(20), torch.arange(20) + 1]))
    assert link_split(Data(edge_index=ei, num_nodes=21), seed=0).val_pos_edge_index.shape == (2, 1)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_an_unreadable_processed_cache_is_rebuilt_from_the_raw_files(tmp_path, damage, capsys):
    """The processed file is derived from md5-checked raw files (its folder is keyed by their
    sums), so an unreadable one is rebuilt, with one line saying so, never an unpickling error."""
    first = load_planetoid("Cora")
    [processed] = (tmp_path / "cache" / "planetoid").glob("Cora-*/processed/data.pt")
    blob = processed.read_bytes()
    processed.write_bytes(blob[: len(blob) // 2] if damage == "truncated" else b"\x80\x04junk")
    with pytest.warns(UserWarning, match=r"processed cache .* was unreadable .* rebuilt"):
        again = load_planetoid("Cora")
    assert torch.equal(again.x, first.x) and torch.equal(again.edge_index, first.edge_index)
    if damage != "truncated":
        return
    processed.write_bytes(b"")  # a benchmark says so in one line, and runs
    res = cli("linkpred", "--no-download", "--epochs", "1", "--runs", "1", "--model", "vgae",
              "--no-progress", "--out-dir", tmp_path / "out")
    assert res.returncode == 0, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: Cora: the processed cache"), err
