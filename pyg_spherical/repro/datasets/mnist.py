"""Dynamically binarised MNIST (the image benchmark of Davidson et al., 2018).

Data
----
The four canonical gzip IDX files are read from ``<root>/MNIST/raw/`` (see
:func:`~pyg_spherical.repro.datasets.root.resolve_root`), verified by md5, and downloaded
(into ``<root>/MNIST/raw`` if writable, else ``<cache>/MNIST/raw``) when missing.

Splits (:func:`load_mnist`)
---------------------------
* ``"train"``: 50,000 images and ``"val"``: 10,000 images of the 60,000 training
  images. The validation rows are the first ``n_val`` entries of
  ``numpy.random.default_rng(split_seed).permutation(60000)`` (default
  ``split_seed=0``), the training rows the rest; both sorted ascending.
* ``"test"``: the 10,000 official test images, in file order.

Binarisation (Salakhutdinov & Murray, 2008)
-------------------------------------------
Grey levels ``x in [0, 1]`` are Bernoulli probabilities. Training uses a fresh draw
every epoch (:class:`DynamicBinarizedLoader`, or :func:`binarize`); validation and
test use one fixed, seeded draw (:func:`binarize_fixed`) so that every evaluation
sees the same binary images.

Example
-------
>>> data = load_mnist()                                   # doctest: +SKIP
>>> train = DynamicBinarizedLoader(data["train"].x, data["train"].y,
...                                batch_size=100, seed=0)  # doctest: +SKIP
>>> x_val = binarize_fixed(data["val"].x, seed=0)         # doctest: +SKIP
>>> for epoch in range(10):                                # doctest: +SKIP
...     for xb, yb in train:                               # fresh binarisation
...         ...
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..training import SeededEpochs
from .root import CACHE_ENV, DATA_ENV, PathLike, resolve_cache, resolve_root

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "ChecksumError",
    "DynamicBinarizedLoader",
    "MNISTSplit",
    "binarize",
    "binarize_fixed",
    "check_md5",
    "download_url",
    "load_mnist",
    "load_mnist_arrays",
    "md5sum",
    "mnist_raw_files",
    "read_idx",
    "train_val_split",
]

#: key -> (file name, md5 of the gz file)
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}

#: Download mirrors, tried in order (file name is appended).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

NUM_TRAIN = 60_000
NUM_TEST = 10_000
NUM_PIXELS = 28 * 28

# IDX type code -> numpy dtype (multi-byte types are big-endian on disk).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class ChecksumError(ValueError):
    """A file's md5 differs from the expected one."""


# --------------------------------------------------------------------------- IDX


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # gzip magic, regardless of file name
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from e
    return data


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    Format: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions ``d``,
    ``d`` big-endian uint32 sizes, then the big-endian row-major data.

    Parameters
    ----------
    path : str or path-like
        File to read. Gzip is detected from the content, not the file name.

    Returns
    -------
    numpy.ndarray
        Writable array of shape ``(n_1, ..., n_d)`` in native byte order.

    Raises
    ------
    ValueError
        Bad magic number, unknown type code, truncated header/data, trailing bytes or
        a corrupt gzip stream. The message names the file.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file (truncated header: {len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        magic = int.from_bytes(data[:4], "big")
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x} (first two bytes must be zero)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX file declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: truncated IDX header ({len(data)} bytes, need {header} for {ndim} dims)"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)
    need, have = count * dtype.itemsize, len(data) - header
    if have < need:
        raise ValueError(
            f"{path}: truncated IDX data: shape {dims} needs {need} bytes, found {have}"
        )
    if have > need:
        raise ValueError(
            f"{path}: {have - need} unexpected trailing bytes after IDX data of shape {dims}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


# ------------------------------------------------------------------- checksums


def md5sum(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 digest of a file's bytes."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def check_md5(path: PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``md5sum(path) == expected``."""
    actual = md5sum(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"Checksum mismatch for {path}: expected md5 {expected}, got {actual}. "
            "The file is corrupt or not the canonical MNIST file; replace it "
            "(or delete it so that it is downloaded again)."
        )


# -------------------------------------------------------------------- download


def download_url(url: str, dest: PathLike, timeout: float = 30.0) -> None:
    """Download ``url`` to ``dest`` atomically (temporary file + rename).

    Raises whatever :func:`urllib.request.urlopen` raises (``URLError``,
    ``OSError``, timeouts); no partial file is left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            shutil.copyfileobj(r, f)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _writable_dir(d: Path) -> bool:
    """Whether ``d`` (or, if absent, its nearest existing ancestor) may be written.

    A folder without any write permission bit counts as read-only even for root, so
    a shared read-only data root is never written to.
    """
    p = d
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return p.is_dir() and bool(mode & 0o222) and os.access(p, os.W_OK | os.X_OK)


def _download_missing(keys: Sequence[str], target: Path, mirrors: Sequence[str],
                      timeout: float, errors: list[str]) -> dict[str, Path]:
    """Download the MNIST files ``keys`` into ``target``, each from the first mirror that serves
    it with the right md5 (a mirror that fails at the network level is not asked again); what
    goes wrong is appended to ``errors``."""
    got: dict[str, Path] = {}
    dead: set = set()
    for key in keys:
        name, md5 = MNIST_FILES[key]
        dest = target / name
        for mirror in mirrors:
            if mirror in dead:
                continue
            url = mirror + name
            try:
                download_url(url, dest, timeout=timeout)
            except Exception as e:  # noqa: BLE001 - reported by the caller
                dead.add(mirror)
                errors.append(f"{url}: {type(e).__name__}: {e}")
                continue
            actual = md5sum(dest)
            if actual != md5:
                with contextlib.suppress(OSError):
                    dest.unlink()
                errors.append(f"{url}: md5 {actual}, expected {md5}")
                continue
            got[key] = dest
            break
    return got


def mnist_raw_files(
    root: PathLike | None = None,
    *,
    download: bool = True,
    cache: PathLike | None = None,
    verify: bool = True,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30.0,
) -> dict[str, Path]:
    """Locate (and if needed download) the four MNIST gz files.

    Each file is looked for in ``<root>/MNIST/raw`` then ``<cache>/MNIST/raw``.
    Missing files are downloaded into ``<root>/MNIST/raw`` if that folder is
    writable, else into ``<cache>/MNIST/raw``.

    Parameters
    ----------
    root, cache : path-like, optional
        See :func:`resolve_root` / :func:`resolve_cache`.
    download : bool
        Try the mirrors for missing files.
    verify : bool
        Check the md5 of every file.
    mirrors : sequence of str
        Base URLs, tried in order.
    timeout : float
        Per-request timeout in seconds.

    Returns
    -------
    dict
        ``{"train_images", "train_labels", "test_images", "test_labels"} -> Path``.

    Raises
    ------
    FileNotFoundError
        Files missing and not downloadable; the message lists where they were
        looked for and how to point ``root=`` / ``$PYG_SPHERICAL_DATA`` at them.
    ChecksumError
        A file exists but has the wrong md5.
    """
    root_dir = resolve_root(root) / "MNIST" / "raw"
    cache_dir = resolve_cache(cache) / "MNIST" / "raw"
    search = [root_dir] if cache_dir == root_dir else [root_dir, cache_dir]

    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, (name, _) in MNIST_FILES.items():
        hit = next((d / name for d in search if (d / name).is_file()), None)
        if hit is None:
            missing.append(key)
        else:
            found[key] = hit

    errors: list[str] = []
    if missing and download:
        target = next((d for d in search if _writable_dir(d)), None)
        if target is None:
            errors.append(f"no writable folder to download into ({', '.join(map(str, search))})")
        else:
            found.update(_download_missing(missing, target, mirrors, timeout, errors))
            missing = [k for k in missing if k not in found]

    if missing:
        names = [MNIST_FILES[k][0] for k in missing]
        how = "download failed: " + "; ".join(errors) if download else "download=False"
        all_names = ", ".join(n for n, _ in MNIST_FILES.values())
        raise FileNotFoundError(
            f"MNIST raw files not found: {', '.join(names)}. "
            f"Looked in: {', '.join(map(str, search))} ({how}). "
            f"Put the four canonical files ({all_names}) into <ROOT>/MNIST/raw/ and pass "
            f"root=<ROOT> or set the environment variable {DATA_ENV}=<ROOT> "
            f"(downloads go to ${CACHE_ENV} or cache= when the data root is read-only)."
        )

    if verify:
        for key, path in found.items():
            check_md5(path, MNIST_FILES[key][1])
    return found


def load_mnist_arrays(
    root: PathLike | None = None,
    *,
    download: bool = True,
    cache: PathLike | None = None,
    verify: bool = True,
) -> dict[str, np.ndarray]:
    """Decode the raw MNIST files.

    Returns
    -------
    dict
        ``train_images`` (60000, 28, 28) uint8, ``train_labels`` (60000,) uint8,
        ``test_images`` (10000, 28, 28) uint8, ``test_labels`` (10000,) uint8.
        (Sizes are those of the canonical files; with ``verify=False`` any consistent
        image/label counts are accepted.)
    """
    files = mnist_raw_files(root, download=download, cache=cache, verify=verify)
    return _decode(files)


# The last decoded file set, keyed by (path, size, mtime) of the four files, so that
# repeated load_mnist() calls in one process skip the ~1 s gzip decode.
_MEMO: dict = {}


def _decode_memo(files: dict[str, Path]) -> dict[str, np.ndarray]:
    key = []
    for k in sorted(files):
        st = files[k].stat()
        key.append((k, str(files[k].resolve()), st.st_size, st.st_mtime_ns))
    key = tuple(key)
    if _MEMO.get("key") != key:
        _MEMO.clear()
        arrays = _decode(files)
        for a in arrays.values():
            a.flags.writeable = False  # shared between calls
        _MEMO.update(key=key, arrays=arrays)
    return _MEMO["arrays"]


def _decode(files: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        img, lab = out[f"{split}_images"], out[f"{split}_labels"]
        if img.ndim != 3 or img.shape[1:] != (28, 28) or img.dtype != np.uint8:
            raise ValueError(
                f"{files[split + '_images']}: expected (N, 28, 28) uint8 images, "
                f"got {img.dtype} {img.shape}"
            )
        if lab.shape != (img.shape[0],) or lab.dtype != np.uint8:
            raise ValueError(
                f"{files[split + '_labels']}: expected ({img.shape[0]},) uint8 labels, "
                f"got {lab.dtype} {lab.shape}"
            )
        if lab.size and lab.max() > 9:
            raise ValueError(f"{files[split + '_labels']}: label {lab.max()} out of range 0..9")
    return out


# ---------------------------------------------------------------------- splits


def train_val_split(
    n: int = NUM_TRAIN, n_val: int = 10_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation split of ``range(n)``.

    The validation indices are the first ``n_val`` entries of
    ``numpy.random.default_rng(seed).permutation(n)``, the training indices the
    remaining ones; both are sorted ascending.

    Returns
    -------
    (train_idx, val_idx) : int64 arrays of shapes (n - n_val,), (n_val,)
    """
    if not 0 <= n_val <= n:
        raise ValueError(f"n_val must be in [0, {n}], got {n_val}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class MNISTSplit(NamedTuple):
    """One split of MNIST.

    Attributes
    ----------
    x : Tensor (N, 784) float32
        Grey levels in [0, 1] (pixel / 255), row-major 28x28.
    y : Tensor (N,) int64
        Digit labels 0..9.
    index : Tensor (N,) int64
        Row of each image in its source file (60k training file for train/val,
        10k test file for test).
    """

    x: Tensor
    y: Tensor
    index: Tensor


def load_mnist(
    root: PathLike | None = None,
    *,
    download: bool = True,
    cache: PathLike | None = None,
    verify: bool = True,
    n_val: int = 10_000,
    split_seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, MNISTSplit]:
    """Load MNIST grey levels with a deterministic train/val split.

    Parameters
    ----------
    root, cache, download, verify
        See :func:`mnist_raw_files`.
    n_val : int
        Validation size taken from the 60k training file (default 10000, giving
        50000/10000/10000).
    split_seed : int
        Seed of :func:`train_val_split`.
    device : str or torch.device, optional
        Where to put the tensors (default CPU).

    Notes
    -----
    The decoded uint8 arrays of the last file set are kept in memory (~55 MB) so
    that repeated calls skip the gzip decode; the returned tensors are always
    fresh copies.

    Returns
    -------
    dict
        ``{"train", "val", "test"} -> MNISTSplit(x (N, 784) float32 in [0, 1],
        y (N,) int64, index (N,) int64)``.
    """
    files = mnist_raw_files(root, download=download, cache=cache, verify=verify)
    arrays = _decode_memo(files)
    n_train, n_test = len(arrays["train_labels"]), len(arrays["test_labels"])
    train_idx, val_idx = train_val_split(n_train, n_val, split_seed)

    def make(images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> MNISTSplit:
        x = torch.from_numpy(images.reshape(-1, NUM_PIXELS)[idx].astype(np.float32))
        x.div_(255.0)
        y = torch.from_numpy(labels[idx].astype(np.int64))
        i = torch.from_numpy(idx)
        return MNISTSplit(x.to(device), y.to(device), i.to(device))

    return {
        "train": make(arrays["train_images"], arrays["train_labels"], train_idx),
        "val": make(arrays["train_images"], arrays["train_labels"], val_idx),
        "test": make(
            arrays["test_images"], arrays["test_labels"], np.arange(n_test, dtype=np.int64)
        ),
    }


# ---------------------------------------------------------------- binarisation


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One Bernoulli draw per pixel: ``out ~ Bernoulli(x)``.

    Parameters
    ----------
    x : Tensor (..., D) floating, values in [0, 1]
        Probabilities (grey levels).
    generator : torch.Generator, optional
        Must live on ``x.device``; default is the global RNG.

    Returns
    -------
    Tensor
        Same shape, dtype and device as ``x``, entries in {0, 1}.
    """
    if not x.is_floating_point():
        raise TypeError(f"binarize expects a floating tensor in [0, 1], got {x.dtype}")
    return torch.bernoulli(x, generator=generator)


def binarize_fixed(x: Tensor, seed: int = 0) -> Tensor:
    """Reproducible binarisation for evaluation sets.

    The uniforms ``u`` are drawn from a CPU generator seeded with ``seed`` and the
    result is ``(u < x)``, so the draw is identical across calls and devices for
    a given ``(seed, x.shape)``. Binarise the whole split at once (the draw of a
    row depends on the tensor's shape).

    Parameters
    ----------
    x : Tensor (N, D) floating, values in [0, 1]
    seed : int

    Returns
    -------
    Tensor
        Same shape, dtype and device as ``x``, entries in {0, 1}.
    """
    if not x.is_floating_point():
        raise TypeError(f"binarize_fixed expects a floating tensor in [0, 1], got {x.dtype}")
    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand(x.shape, generator=g, dtype=torch.float32)
    return (u.to(x.device) < x).to(x.dtype)


class DynamicBinarizedLoader(SeededEpochs):
    """Mini-batch iterator that re-binarises the images every epoch.

    Each ``iter(loader)`` is one epoch: rows are (optionally) shuffled and every
    batch is binarised with one vectorised :func:`torch.bernoulli` call. The
    randomness of epoch ``e`` comes from a generator seeded with ``(seed, e)``, so
    a run is reproducible and can be resumed by setting ``epoch``.

    Parameters
    ----------
    x : Tensor (N, D) floating in [0, 1]
        Grey levels (use the pre-binarised tensor with ``binarize=False`` for a
        fixed evaluation set).
    y : Tensor (N,), optional
        Labels; if given, batches are ``(xb, yb)``, else just ``xb``.
    batch_size : int
    shuffle : bool
        Shuffle rows each epoch.
    drop_last : bool
        Drop the last incomplete batch.
    binarize : bool
        Draw ``Bernoulli(xb)`` per batch (default); ``False`` yields ``xb`` as is.
    seed : int, optional
        Base seed; default draws one from torch's global RNG (so
        ``torch.manual_seed`` makes it reproducible).
    device : str or torch.device, optional
        Device to hold the data and produce batches on (default: ``x.device``).

    Attributes
    ----------
    epoch : int
        Index of the next epoch; incremented each time iteration starts.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor | None = None,
        *,
        batch_size: int = 100,
        shuffle: bool = True,
        drop_last: bool = False,
        binarize: bool = True,
        seed: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if y is not None and y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        if binarize and not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor in [0, 1], got {x.dtype}")
        self.device = torch.device(device) if device is not None else x.device
        self.x = x.to(self.device)
        self.y = y.to(self.device) if y is not None else None
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.binarize = binarize
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _batches(self, g: torch.Generator) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        n = self.x.shape[0]
        order = (
            torch.randperm(n, generator=g, device=self.device)
            if self.shuffle
            else torch.arange(n, device=self.device)
        )
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            xb = self.x.index_select(0, idx)  # much cheaper than x[idx] on CPU
            if self.binarize:
                xb = torch.bernoulli(xb, generator=g)
            yield xb if self.y is None else (xb, self.y.index_select(0, idx))
