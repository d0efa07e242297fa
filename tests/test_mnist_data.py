"""Tests for pyg_spherical.repro.datasets (data roots, IDX parsing, MNIST, binarisation)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from pyg_spherical.repro.datasets import (
    ChecksumError,
    DynamicBinarizedLoader,
    binarize,
    binarize_fixed,
    check_md5,
    load_mnist,
    md5sum,
    mnist_raw_files,
    read_idx,
    resolve_cache,
    resolve_root,
    train_val_split,
)
from pyg_spherical.repro.datasets import mnist as mnist_mod

# ----------------------------------------------------------------- helpers

_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode an array as IDX, independently of the library."""
    code = _CODES[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def fake_mnist(dirpath: Path, n_train: int = 6, n_test: int = 4) -> dict:
    """Write four tiny MNIST-like gz files; return {key: (name, md5)}."""
    rng = np.random.default_rng(0)
    dirpath.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    files = {}
    for key, (name, _) in mnist_mod.MNIST_FILES.items():
        p = write(dirpath / name, idx_bytes(arrays[key]), gz=True)
        files[key] = (name, md5sum(p))
    return files


def no_network(url, dest, timeout=30.0):
    raise urllib.error.URLError("network disabled in tests")


@pytest.fixture(autouse=True)
def _never_download(monkeypatch):
    """No test touches the network unless it installs its own fake downloader."""
    monkeypatch.setattr(mnist_mod, "download_url", no_network)


# --------------------------------------------------------------- root.py


def test_resolve_root_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PYG_SPHERICAL_DATA", raising=False)
    monkeypatch.delenv("PYG_SPHERICAL_CACHE", raising=False)
    home = tmp_path / "home"
    assert resolve_root() == home / ".cache/pyg_spherical/data"
    assert resolve_cache() == home / ".cache/pyg_spherical/cache"
    monkeypatch.setenv("PYG_SPHERICAL_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("PYG_SPHERICAL_CACHE", str(tmp_path / "c"))
    assert resolve_root() == tmp_path / "d"
    assert resolve_cache() == tmp_path / "c"
    assert resolve_root(tmp_path / "x") == tmp_path / "x"
    assert resolve_cache(str(tmp_path / "y")) == tmp_path / "y"
    assert resolve_root("~/z") == home / "z"
    assert not (tmp_path / "d").exists()  # resolution never creates folders


# ------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_images_and_labels(tmp_path, gz):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    pi = write(tmp_path / f"img{suffix}", idx_bytes(images), gz)
    pl = write(tmp_path / f"lab{suffix}", idx_bytes(labels), gz)
    got_i, got_l = read_idx(pi), read_idx(pl)
    assert got_i.dtype == np.uint8 and got_i.shape == (5, 28, 28)
    assert got_l.dtype == np.uint8 and got_l.shape == (5,)
    np.testing.assert_array_equal(got_i, images)
    np.testing.assert_array_equal(got_l, labels)
    got_i[0, 0, 0] = 7  # writable copy


def test_read_idx_gzip_detected_by_content(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    p = write(tmp_path / "labels.idx", idx_bytes(labels), gz=True)  # no .gz suffix
    np.testing.assert_array_equal(read_idx(p), labels)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_big_endian_types(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 11).astype(dtype) * 3
    got = read_idx(write(tmp_path / "a.idx", idx_bytes(arr), gz=False))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


def test_read_idx_header_bytes_exact(tmp_path):
    # hand-written header: magic 0x00000801, 3 labels
    p = write(tmp_path / "l", b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x09", gz=False)
    np.testing.assert_array_equal(read_idx(p), [1, 2, 9])


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"\x00\x00", "truncated header"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated IDX data"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_corrupt(tmp_path, payload, match, gz):
    p = write(tmp_path / "bad", payload, gz)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(p)
    assert str(p) in str(info.value)


def test_read_idx_truncated_image_file(tmp_path):
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    data = idx_bytes(images)[:-100]
    with pytest.raises(ValueError, match="truncated IDX data"):
        read_idx(write(tmp_path / "img", data, gz=False))


def test_read_idx_corrupt_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    trunc = tmp_path / "trunc.gz"
    trunc.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(trunc)
    flipped = bytearray(blob)
    flipped[-6] ^= 0xFF  # inside the CRC32 / size trailer
    bad = tmp_path / "crc.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="gzip"):
        read_idx(bad)


# ------------------------------------------------- checksums / locating


def test_check_md5(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"hello")
    good = hashlib.md5(b"hello").hexdigest()
    assert md5sum(p) == good
    check_md5(p, good)
    check_md5(p, good.upper())
    with pytest.raises(ChecksumError) as info:
        check_md5(p, "0" * 32)
    msg = str(info.value)
    assert str(p) in msg and "0" * 32 in msg and good in msg
    assert isinstance(info.value, ValueError)


def test_checksum_mismatch_real_names(tmp_path):
    """Tiny files under the canonical names fail the canonical md5 check."""
    root = tmp_path / "data"
    fake_mnist(root / "MNIST" / "raw")
    with pytest.raises(ChecksumError) as info:
        mnist_raw_files(root, cache=tmp_path / "cache")
    msg = str(info.value)
    assert "MNIST/raw/" in msg and "expected md5" in msg
    assert any(md5 in msg for _, md5 in mnist_mod.MNIST_FILES.values())
    # verify=False accepts them
    files = mnist_raw_files(root, cache=tmp_path / "cache", verify=False)
    assert set(files) == {"train_images", "train_labels", "test_images", "test_labels"}


def test_missing_files_no_network(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    with pytest.raises(FileNotFoundError) as info:
        mnist_raw_files(root, cache=cache)
    msg = str(info.value)
    assert str(root / "MNIST" / "raw") in msg and str(cache / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "PYG_SPHERICAL_DATA" in msg and "root=" in msg
    assert "network disabled" in msg
    assert not list(root.rglob("*.part")) and not list(cache.rglob("*.part"))
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_mnist(root, cache=cache, download=False)


def test_missing_files_env_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PYG_SPHERICAL_DATA", str(tmp_path / "envroot"))
    monkeypatch.setenv("PYG_SPHERICAL_CACHE", str(tmp_path / "envcache"))
    with pytest.raises(FileNotFoundError, match="envroot"):
        mnist_raw_files()


def test_download_into_cache_when_root_read_only(tmp_path, monkeypatch):
    src = tmp_path / "server"
    files = fake_mnist(src)
    monkeypatch.setattr(mnist_mod, "MNIST_FILES", files)
    calls = []

    def fake_download(url, dest, timeout=30.0):
        calls.append(url)
        if url.startswith("https://dead/"):
            raise urllib.error.URLError("dead mirror")
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(mnist_mod, "download_url", fake_download)
    root, cache = tmp_path / "data", tmp_path / "cache"
    (root / "MNIST" / "raw").mkdir(parents=True)
    shutil.copyfile(src / files["test_labels"][0], root / "MNIST" / "raw" / files["test_labels"][0])
    os.chmod(root / "MNIST" / "raw", 0o555)
    try:
        got = mnist_raw_files(root, cache=cache, mirrors=("https://dead/", "https://ok/"))
    finally:
        os.chmod(root / "MNIST" / "raw", 0o755)
    assert got["test_labels"] == root / "MNIST" / "raw" / files["test_labels"][0]
    for key in ("train_images", "train_labels", "test_images"):
        assert got[key] == cache / "MNIST" / "raw" / files[key][0]
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == [files["test_labels"][0]]
    # the dead mirror is tried once, then skipped
    assert sum(u.startswith("https://dead/") for u in calls) == 1
    assert sum(u.startswith("https://ok/") for u in calls) == 3

    data = load_mnist(root, cache=cache, n_val=2, download=False)
    assert data["train"].x.shape == (4, 784) and data["val"].x.shape == (2, 784)
    assert data["test"].x.shape == (4, 784)
    raw = read_idx(src / files["train_images"][0]).reshape(6, 784)
    idx = data["val"].index.numpy()
    np.testing.assert_array_equal(data["val"].x.numpy(), raw[idx].astype(np.float32) / 255)
    np.testing.assert_array_equal(
        data["val"].y.numpy(), read_idx(src / files["train_labels"][0])[idx]
    )


def test_load_mnist_fresh_copies_and_memo_invalidation(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    fake_mnist(raw)
    kw = {"cache": tmp_path / "cache", "verify": False, "download": False, "n_val": 2}
    a = load_mnist(tmp_path / "data", **kw)
    a["train"].x.zero_()
    b = load_mnist(tmp_path / "data", **kw)
    assert b["train"].x.sum() > 0  # not aliased with the first result
    labels = np.full(4, 9, dtype=np.uint8)
    name = mnist_mod.MNIST_FILES["test_labels"][0]
    write(raw / name, idx_bytes(labels), gz=True)
    os.utime(raw / name, ns=(1, 1))  # make sure (size, mtime) changes
    c = load_mnist(tmp_path / "data", **kw)
    assert c["test"].y.tolist() == [9, 9, 9, 9]


def test_download_bad_checksum_is_removed(tmp_path, monkeypatch):
    src = tmp_path / "server"
    files = fake_mnist(src)
    files["train_images"] = (files["train_images"][0], "f" * 32)
    monkeypatch.setattr(mnist_mod, "MNIST_FILES", files)

    def fake_download(url, dest, timeout=30.0):
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(mnist_mod, "download_url", fake_download)
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="f" * 32):
        mnist_raw_files(root, cache=tmp_path / "cache", mirrors=("https://ok/",))
    assert not (root / "MNIST" / "raw" / files["train_images"][0]).exists()
    assert (root / "MNIST" / "raw" / files["train_labels"][0]).exists()


def test_train_val_split():
    tr, va = train_val_split(60000, 10000, seed=0)
    assert tr.shape == (50000,) and va.shape == (10000,)
    assert tr.dtype == np.int64 and va.dtype == np.int64
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.union1d(tr, va), np.arange(60000))
    _, va2 = train_val_split(60000, 10000, seed=0)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, train_val_split(60000, 10000, seed=1)[1])
    with pytest.raises(ValueError):
        train_val_split(10, 11)


# -------------------------------------------------------------- binarisation


def test_binarize_statistics():
    levels = torch.linspace(0, 1, 784)  # every grey level 0..1, incl. 0 and 1
    k = 4000
    g = torch.Generator().manual_seed(123)
    draws = binarize(levels.expand(k, 784).contiguous(), generator=g)
    assert draws.dtype == torch.float32 and draws.shape == (k, 784)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    mean = draws.mean(0)
    se = torch.sqrt(levels * (1 - levels) / k)
    # 6 binomial standard errors per pixel plus 3/k slack for the skewed tails near
    # p = 0 or 1 (false-alarm probability < 1e-6 over all pixels); 0 and 1 are exact
    assert torch.all((mean - levels).abs() <= 6 * se + 3 / k)
    assert mean[0] == 0 and mean[-1] == 1
    # pooled z-score over all pixels
    z = (draws.sum() - k * levels.sum()) / torch.sqrt(k * (levels * (1 - levels)).sum())
    assert abs(z.item()) < 4


def test_binarize_fixed_statistics_and_reproducibility():
    torch.manual_seed(0)
    x = torch.rand(500, 784, dtype=torch.float64)
    a = binarize_fixed(x, seed=7)
    b = binarize_fixed(x, seed=7)
    torch.manual_seed(99)  # the global RNG does not matter
    c = binarize_fixed(x, seed=7)
    assert a.dtype == torch.float64 and a.shape == x.shape
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, binarize_fixed(x, seed=8))
    # unbiased: total count within 4 binomial standard errors
    z = (a.sum() - x.sum()) / torch.sqrt((x * (1 - x)).sum())
    assert abs(z.item()) < 4
    # exact for 0/1 levels
    edge = torch.tensor([[0.0, 1.0] * 392])
    assert torch.equal(binarize_fixed(edge), edge)
    with pytest.raises(TypeError):
        binarize_fixed(torch.zeros(2, 3, dtype=torch.uint8))


def _labelled_rows(n):
    """Deterministic 0/1 rows whose first 16 pixels encode the row id."""
    ids = torch.arange(n)
    bits = ((ids[:, None] >> torch.arange(16)) & 1).float()
    return torch.cat([bits, torch.full((n, 784 - 16), 0.5)], 1), ids


def _decode(xb):
    return (xb[:, :16].long() << torch.arange(16)).sum(1)


def test_loader_batches_and_alignment():
    x, y = _labelled_rows(1050)
    loader = DynamicBinarizedLoader(x, y, batch_size=100, seed=3)
    assert len(loader) == 11
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [100] * 10 + [50]
    seen = torch.cat([yb for _, yb in batches])
    assert torch.equal(seen.sort().values, torch.arange(1050))  # a permutation
    assert not torch.equal(seen, torch.arange(1050))  # shuffled
    for xb, yb in batches:
        assert torch.equal(_decode(xb), yb)  # images stay with their labels
        assert set(xb.unique().tolist()) <= {0.0, 1.0}
    dl = DynamicBinarizedLoader(x, batch_size=100, drop_last=True, shuffle=False, seed=3)
    assert len(dl) == 10 and len(list(dl)) == 10
    assert all(isinstance(b, torch.Tensor) for b in dl)


def test_loader_rebinarises_every_epoch_and_is_reproducible():
    torch.manual_seed(0)
    x = torch.rand(300, 784)
    loader = DynamicBinarizedLoader(x, batch_size=128, shuffle=False, seed=11)
    e0 = torch.cat(list(loader))
    e1 = torch.cat(list(loader))
    assert loader.epoch == 2
    assert e0.shape == x.shape
    assert not torch.equal(e0, e1)  # fresh draw per epoch
    frac_diff = (e0 != e1).float().mean().item()
    expected = (2 * x * (1 - x)).mean().item()  # P(two draws differ)
    assert abs(frac_diff - expected) < 0.01
    again = DynamicBinarizedLoader(x, batch_size=128, shuffle=False, seed=11)
    assert torch.equal(torch.cat(list(again)), e0)
    again.epoch = 1  # resume
    assert torch.equal(torch.cat(list(again)), e1)
    # many epochs average to the grey levels (small tensor: cheap single-threaded ops)
    k, xs = 400, x[:20]
    small = DynamicBinarizedLoader(xs, batch_size=8, shuffle=False, seed=12)
    mean = sum(torch.cat(list(small)) for _ in range(k)) / k
    se = torch.sqrt(xs * (1 - xs) / k)
    assert torch.all((mean - xs).abs() <= 6 * se + 3 / k)  # see test_binarize_statistics
    z = (mean - xs).sum() / torch.sqrt((xs * (1 - xs)).sum() / k)  # pooled
    assert abs(z.item()) < 4
    # binarize=False passes a fixed (pre-binarised) evaluation set through unchanged
    xf = binarize_fixed(x, seed=0)
    fixed = DynamicBinarizedLoader(xf, batch_size=128, shuffle=False, binarize=False)
    assert torch.equal(torch.cat(list(fixed)), xf) and torch.equal(torch.cat(list(fixed)), xf)


def test_loader_default_seed_follows_torch_manual_seed():
    x = torch.rand(50, 784)
    torch.manual_seed(5)
    a = torch.cat(list(DynamicBinarizedLoader(x, batch_size=20)))
    torch.manual_seed(5)
    b = torch.cat(list(DynamicBinarizedLoader(x, batch_size=20)))
    assert torch.equal(a, b)


def test_loader_validation():
    with pytest.raises(ValueError):
        DynamicBinarizedLoader(torch.rand(4, 3), torch.zeros(5), seed=0)
    with pytest.raises(ValueError):
        DynamicBinarizedLoader(torch.rand(4, 3), batch_size=0, seed=0)
    with pytest.raises(TypeError):
        DynamicBinarizedLoader(torch.zeros(4, 3, dtype=torch.uint8), seed=0)


# ------------------------------------------------------- real MNIST (integration)


@pytest.fixture(scope="module")
def real_mnist(tmp_path_factory):
    # MNIST (12 MB) is not packaged: only the data root the user set (or the default root, where
    # an earlier download went) counts, so a fresh user sees these tests skipped, with the reason.
    root = resolve_root()
    names = [name for name, _ in mnist_mod.MNIST_FILES.values()]
    if not all((root / "MNIST" / "raw" / n).is_file() for n in names):
        msg = (f"real MNIST files not found under {root / 'MNIST' / 'raw'}; set "
               "PYG_SPHERICAL_DATA to a folder holding MNIST/raw/*.gz to run this test")
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set: the data must be present)")
        pytest.skip(msg)
    cache = tmp_path_factory.mktemp("cache")
    files = mnist_raw_files(root, cache=cache, download=False)  # md5-verified
    data = load_mnist(root, cache=cache, download=False)
    return root, files, data


def test_real_mnist_second_load_is_equal(real_mnist):
    root, _, data = real_mnist
    again = load_mnist(root, download=False)
    for split in ("train", "val", "test"):
        assert torch.equal(again[split].x, data[split].x)
        assert torch.equal(again[split].y, data[split].y)
        assert again[split].x.data_ptr() != data[split].x.data_ptr()


def test_real_mnist_md5(real_mnist):
    _, files, _ = real_mnist
    for key, (name, md5) in mnist_mod.MNIST_FILES.items():
        assert files[key].name == name
        assert md5sum(files[key]) == md5


def test_real_mnist_shapes_and_ranges(real_mnist):
    _, _, data = real_mnist
    sizes = {"train": 50000, "val": 10000, "test": 10000}
    for split, n in sizes.items():
        s = data[split]
        assert s.x.shape == (n, 784) and s.x.dtype == torch.float32
        assert s.y.shape == (n,) and s.y.dtype == torch.int64
        assert s.x.min().item() == 0.0 and s.x.max().item() == 1.0
        assert s.y.min().item() == 0 and s.y.max().item() == 9
        assert torch.bincount(s.y, minlength=10).min().item() > n // 20  # all digits present
        assert 0.12 < s.x.mean().item() < 0.14  # MNIST mean grey level ~0.13
    tr, va = data["train"].index.numpy(), data["val"].index.numpy()
    assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == 60000
    np.testing.assert_array_equal(va, train_val_split(60000, 10000, 0)[1])
    np.testing.assert_array_equal(data["test"].index.numpy(), np.arange(10000))
    # the canonical first labels of the training and test files
    full = torch.empty(60000, dtype=torch.int64)
    full[data["train"].index] = data["train"].y
    full[data["val"].index] = data["val"].y
    assert full[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data["test"].y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(full).tolist()[:2] == [5923, 6742]  # canonical class counts


def test_real_mnist_fixed_eval_binarisation(real_mnist):
    _, _, data = real_mnist
    xv = data["val"].x
    a, b = binarize_fixed(xv, seed=0), binarize_fixed(xv, seed=0)
    assert torch.equal(a, b)
    z = (a.sum() - xv.sum()) / torch.sqrt((xv * (1 - xv)).sum())
    assert abs(z.item()) < 4
