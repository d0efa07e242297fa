r"""Planetoid citation graphs (Cora, CiteSeer, PubMed) and the VGAE link-prediction split.

Data
----
:func:`load_planetoid` reads the raw files ``ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}``
from the first of these sources that has them (:func:`planetoid_source` tells which, without
reading them):

1. ``"root"``: ``<root>/<Name>/raw``, with ``root`` the ``root=`` argument or
   ``$PYG_SPHERICAL_DATA`` (:func:`~pyg_spherical.repro.datasets.explicit_root`), or else the default
   data root if it holds them. A chosen root that does not exist, or a ``<Name>/raw`` folder
   with only some of the eight files, is an error, never a fall-through to another copy.
2. ``"packaged"``: the copy of Cora and CiteSeer shipped inside this package
   (``_data/planetoid``; MIT licence of kimiyoung/planetoid, see ``LICENSE`` and ``MD5SUMS``
   there), so that the main benchmark runs with no data set-up and no network.
3. ``"cache"`` / ``"download"``: ``<cache>/planetoid/downloads/<Name>/raw``, filled from PyG's
   Planetoid mirror when ``download=True`` (PubMed, 8 MB, is not shipped).

Every file is checked against the md5 of the canonical file (:data:`PLANETOID_MD5`); for a root
this can be turned off (``verify=False``). PyG's processed file goes to
``<cache>/planetoid/<Name>-<key>/processed``, where ``key`` is a short hash of the eight raw
files' md5 sums: a different copy of the raw files is processed anew, never served a processed
file made from other files. The data root is only read, so it may be read-only.

Node features are returned **as stored** (binary bag-of-words for Cora/CiteSeer, TF-IDF for
PubMed), without ``NormalizeFeatures``: the reference VGAE code (Kipf & Welling, 2016) does not
row-normalise them, and row normalisation costs several AUC points in link prediction.

Split
-----
:func:`link_split` is the protocol of Kipf & Welling (2016) used in section 5.4 of the paper:
the undirected edges are split 85 / 5 / 10 % into train / validation / test; validation and test
get as many negative (non-edge) pairs as positive ones, sampled uniformly among node pairs that
are not edges of the full graph; the encoder only sees the training edges. Training negatives are
*not* fixed here: the models resample one negative per positive every epoch
(:meth:`~torch_geometric.nn.GAE.recon_loss`).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import random
import shutil
import tempfile
import urllib.error
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .mnist import ChecksumError, download_url, md5sum
from .root import DataNotFoundError, PathLike, explicit_root, resolve_cache, resolve_root

__all__ = [
    "PLANETOID_MD5",
    "PLANETOID_NAMES",
    "PLANETOID_PACKAGED",
    "LinkSplit",
    "PlanetoidSource",
    "link_split",
    "load_planetoid",
    "planetoid_raw_dir",
    "planetoid_source",
]

#: canonical spelling (as in PyG and the data root) of the supported graphs
PLANETOID_NAMES = ("Cora", "CiteSeer", "PubMed")
#: graphs whose raw files ship inside the package (1.6 MB together; PubMed's 8.7 MB do not)
PLANETOID_PACKAGED = ("Cora", "CiteSeer")
_RAW_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
_PACKAGE_DIR = Path(__file__).resolve().parent / "_data" / "planetoid"
#: PyG's Planetoid mirror (the kimiyoung/planetoid repository), used for downloads
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"

#: md5 of every canonical raw file, from kimiyoung/planetoid, commit af6abf4, folder data/ (the files
#: PyG downloads). The packaged copy lists the same sums in ``_data/planetoid/MD5SUMS``.
PLANETOID_MD5: dict[str, dict[str, str]] = {
    "Cora": {
        "x": "190831eee19d8f330d89d94b40a65c5a",
        "tx": "b29c36916768e1d2f55391c1aa9317ac",
        "allx": "c9083193a57057dd1238321e140194d7",
        "y": "78344284e3ff7fd24eb9c307d51351eb",
        "ty": "48bf43f54fa5b86089a4bd0299795f10",
        "ally": "125d70817fe1fdbfdcad991995e81579",
        "graph": "b37c419cec179f45834467630c278e4c",
        "test.index": "9b822cae1d01f41e8bf8782e20367c0e",
    },
    "CiteSeer": {
        "x": "baeb0100b5a8af8d41f928113ce0a4e5",
        "tx": "c25ab826a7e95c0922ab625de705f7df",
        "allx": "28486b4b9c4ee076b4eee2febd89ba86",
        "y": "8b99f50aa950fbbf9a7a2b71ff9cac97",
        "ty": "356894a73b7a7eff43c3580f2fcf92a4",
        "ally": "f0df7e5f859245e32987bfd224d01657",
        "graph": "5f88483d5f5cc2b26b987bbbfb695005",
        "test.index": "70af39d4dff8aaa5c63f8dc526b16534",
    },
    "PubMed": {
        "x": "2e93a89281c7597939cfb24976696f54",
        "tx": "30d5abd15cf10e46ebd9514b256e0347",
        "allx": "d6ecf5ffbdc9f8b181962d6829c7a8ac",
        "y": "520bb2899bb8fb705181b8e34a973573",
        "ty": "3082e367753e3a81c457f644316ca17d",
        "ally": "ab5def164b4c5b33e215b6397a84ee4b",
        "graph": "601ee2ffa59197989ff7267383a4ea46",
        "test.index": "57cdfacfa20179b9b92e077fba394d1c",
    },
}


def _canonical(name: str) -> str:
    if isinstance(name, str):
        for known in PLANETOID_NAMES:
            if name.lower() == known.lower():
                return known
    raise ValueError(f"unknown Planetoid data set {name!r}; choose one of {list(PLANETOID_NAMES)}.")


def _raw_files(name: str) -> list[str]:
    return [f"ind.{name.lower()}.{s}" for s in _RAW_SUFFIXES]


def _download_dir(name: str, cache: PathLike | None) -> Path:
    return resolve_cache(cache) / "planetoid" / "downloads" / name / "raw"


def planetoid_raw_dir(name: str, root: PathLike | None = None) -> Path | None:
    """``<root>/<Name>/raw`` if it holds all eight raw files of ``name``, else ``None``."""
    name = _canonical(name)
    raw = resolve_root(root) / name / "raw"
    if all((raw / f).is_file() for f in _raw_files(name)):
        return raw
    return None


class PlanetoidSource(NamedTuple):
    """Where the raw files of one Planetoid graph come from (see :func:`planetoid_source`).

    ``kind`` is ``"root"`` (the data root), ``"packaged"`` (the copy inside this package),
    ``"cache"`` (an earlier download) or ``"download"`` (to be downloaded into ``raw_dir``).
    """

    name: str
    kind: str
    raw_dir: Path

    def describe(self) -> str:
        """One phrase for a log line, e.g. ``"the copy packaged with pyg_spherical (...)"``."""
        if self.kind == "root":
            return f"the data root {self.raw_dir.parent.parent}"
        if self.kind == "packaged":
            return f"the copy packaged with pyg_spherical ({self.raw_dir})"
        if self.kind == "cache":
            return f"an earlier download in {self.raw_dir}"
        return f"a download from {PLANETOID_URL} into {self.raw_dir}"


def planetoid_source(name: str, root: PathLike | None = None, *, cache: PathLike | None = None,
                     download: bool = True) -> PlanetoidSource:
    r"""Tell where :func:`load_planetoid` reads the raw files of ``name`` from, without reading them.

    The order is: the data root (``root`` or ``$PYG_SPHERICAL_DATA``, else the default root if it
    holds the files), the packaged copy (Cora, CiteSeer), an earlier download in the cache, a new
    download (if ``download``).

    Args:
        name (str): ``"Cora"``, ``"CiteSeer"`` or ``"PubMed"`` (case-insensitive).
        root (path, optional): data root holding ``<Name>/raw/ind.<name>.*``.
        cache (path, optional): writable folder for downloads and processed files.
        download (bool): whether a download may be the source.

    Returns:
        :class:`PlanetoidSource` ``(name, kind, raw_dir)``.

    Raises:
        ValueError: unknown ``name``.
        DataNotFoundError: the chosen root does not exist; its ``<Name>/raw`` holds only some of
            the eight files; or no source has the files and ``download`` is off.
    """
    name = _canonical(name)
    files = _raw_files(name)
    chosen = explicit_root(root)
    base = chosen if chosen is not None else resolve_root(None)
    if chosen is not None and not chosen.is_dir():
        # A typo in the root must not be papered over by the packaged copy or a download.
        what = "is not a folder" if chosen.exists() else "does not exist"
        raise DataNotFoundError(f"{name}: raw files not found: the data root {chosen} {what}",
                                ("root",))
    raw = base / name / "raw"
    missing = [f for f in files if not (raw / f).is_file()]
    if not missing:
        return PlanetoidSource(name, "root", raw)
    if len(missing) < len(files):
        # Some files but not all: a damaged copy the user meant to use, not an absent one.
        raise DataNotFoundError(f"{name}: {raw} lacks {', '.join(missing)}", ("root",))
    if name in PLANETOID_PACKAGED:
        return PlanetoidSource(name, "packaged", _PACKAGE_DIR / name / "raw")
    dl = _download_dir(name, cache)
    if all((dl / f).is_file() for f in files):
        return PlanetoidSource(name, "cache", dl)
    if download:
        return PlanetoidSource(name, "download", dl)
    raise DataNotFoundError(f"{name}: raw files not found in {raw} or {dl}, and downloading is off",
                            ("root", "download"))


def _download(name: str, dest: Path, timeout: float = 60.0) -> None:
    """Fetch the eight raw files into ``dest``, each md5-checked before it is moved in place."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        for f, suffix in zip(_raw_files(name), _RAW_SUFFIXES):
            url = f"{PLANETOID_URL}/{f}"
            try:
                download_url(url, Path(tmp) / f, timeout=timeout)
            except (urllib.error.URLError, OSError) as e:
                raise DataNotFoundError(
                    f"{name}: raw files not found locally and the download of {url} failed "
                    f"({type(e).__name__}: {e})", ("root",)) from e
            _check(Path(tmp) / f, PLANETOID_MD5[name][suffix], url)
        for f in _raw_files(name):  # all eight verified: only now do they count as a copy
            shutil.move(str(Path(tmp) / f), str(dest / f))


def _check(path: Path, expected: str, what: str | None = None) -> str:
    actual = md5sum(path)
    if actual != expected:
        raise ChecksumError(
            f"{what or path}: md5 {actual}, expected {expected}; the file is truncated, corrupt "
            "or not the canonical Planetoid file, replace it")
    return actual


def _first_unreadable(raw: Path, name: str) -> tuple[Path, Exception] | None:
    """The first raw file PyG cannot parse on its own, with the error (to name it)."""
    from torch_geometric.io.planetoid import read_file

    for f, suffix in zip(_raw_files(name), _RAW_SUFFIXES):
        try:
            read_file(str(raw), name, suffix)
        except Exception as e:  # noqa: BLE001 - any parse failure points at this file
            return raw / f, e
    return None


def load_planetoid(name: str, root: PathLike | None = None, *, cache: PathLike | None = None,
                   download: bool = True, verify: bool = True):
    r"""Load one Planetoid graph as a :class:`torch_geometric.data.Data`.

    The raw files come from the data root, the packaged copy (Cora, CiteSeer) or a download, in
    that order (:func:`planetoid_source`; the module docstring has the details).

    Args:
        name (str): ``"Cora"``, ``"CiteSeer"`` or ``"PubMed"`` (case-insensitive).
        root (path, optional): data root holding ``<Name>/raw/ind.<name>.*`` (may be read-only).
        cache (path, optional): writable folder for PyG's processed files and downloads.
        download (bool): download the raw files (from PyG's mirror, md5-checked) when no local
            copy has them.
        verify (bool): check files from a data root against :data:`PLANETOID_MD5` (the packaged
            copy and downloads are always checked).

    Returns:
        ``Data(x (N, F) float32, edge_index (2, E) int64 with both directions, y (N,) int64)``;
        features unnormalised. Sizes: Cora 2708 nodes / 5278 undirected edges / 1433 features,
        CiteSeer 3327 / 4552 / 3703, PubMed 19717 / 44324 / 500.

    An unreadable processed file in the cache (truncated, corrupt) is rebuilt from the raw files,
    with a warning.

    Raises:
        ValueError: unknown ``name``; a raw file PyG cannot parse (the message names it).
        ChecksumError: a raw file differs from the canonical one (the message names it).
        DataNotFoundError: see :func:`planetoid_source`, or the download failed.
    """
    from torch_geometric.datasets import Planetoid

    src = planetoid_source(name, root, cache=cache, download=download)
    name, raw = src.name, src.raw_dir
    if src.kind == "download":
        _download(name, raw)
    sums = []
    for f, suffix in zip(_raw_files(name), _RAW_SUFFIXES):
        if verify or src.kind != "root":
            sums.append(_check(raw / f, PLANETOID_MD5[name][suffix]))
        else:
            sums.append(md5sum(raw / f))
    # The processed file is keyed by the raw files' content: another copy is processed anew.
    key = hashlib.sha256(" ".join(sums).encode()).hexdigest()[:12]
    processed = resolve_cache(cache) / "planetoid" / f"{name}-{key}" / "processed"

    class _Planetoid(Planetoid):
        # PyG derives both folders from one root; here the raw files stay where they are found
        # (read-only root or package) and only the processed file is written, into the cache.
        @property
        def raw_dir(self) -> str:
            return str(raw)

        @property
        def processed_dir(self) -> str:
            return str(processed)

    def build():
        # PyG logs "Processing..." to stderr on first use; the library stays silent.
        with contextlib.redirect_stderr(io.StringIO()):
            return _Planetoid(str(processed.parent), name)

    try:
        ds = build()
    except Exception as e:
        bad = _first_unreadable(raw, name)
        if bad is None and processed.is_dir():
            # the raw files are fine, so the processed file (derived from them, in a folder
            # keyed by their sums) is what is damaged: rebuild it
            shutil.rmtree(processed)
            warnings.warn(f"{name}: the processed cache {processed} was unreadable "
                          f"({type(e).__name__}); rebuilt it from the raw files.", stacklevel=2)
            return build()[0]
        if bad is None:
            raise
        path, err = bad
        detail = " ".join(str(err).split())  # one line, whatever the parser said
        raise ValueError(f"{name}: cannot read {path}: the file is truncated or corrupt "
                         f"({type(err).__name__}: {detail})") from e
    return ds[0]


class LinkSplit(NamedTuple):
    """Edges of a link-prediction split; every ``*_edge_index`` has shape ``(2, E_*)``.

    ``train_pos_edge_index`` holds both directions of every training edge (it is the graph the
    encoder sees and the positives of the reconstruction loss); validation / test pairs appear
    once each, with as many negatives as positives.
    """

    train_pos_edge_index: Tensor
    val_pos_edge_index: Tensor
    val_neg_edge_index: Tensor
    test_pos_edge_index: Tensor
    test_neg_edge_index: Tensor


def link_split(data, val_ratio: float = 0.05, test_ratio: float = 0.10,
               seed: int | None = None) -> LinkSplit:
    r"""The 85 / 5 / 10 % undirected edge split of Kipf & Welling (2016) (paper section 5.4).

    Uses :class:`torch_geometric.transforms.RandomLinkSplit` (``is_undirected=True``): each
    undirected edge lands in exactly one of train / val / test; val and test negatives are drawn
    among non-edges of the *full* graph, one per positive. With ``seed`` the split is
    reproducible and the global RNG state is left untouched.

    Returns:
        :class:`LinkSplit` (tensors on ``data.edge_index.device``).

    Raises:
        ValueError: invalid ratios, or a graph with too few edges for every part of the split
            to get one (20 undirected edges at the default ratios).
    """
    from torch_geometric.data import Data
    from torch_geometric.transforms import RandomLinkSplit

    if not (0 < val_ratio < 1 and 0 < test_ratio < 1 and val_ratio + test_ratio < 1):
        raise ValueError("link_split: need 0 < val_ratio, test_ratio and val_ratio + test_ratio < 1.")
    # RandomLinkSplit counts the undirected edges as the pairs with row <= col and takes
    # int(ratio * count) of them for val and test: each needs at least one edge, train too.
    ei = data.edge_index
    count = int((ei[0] <= ei[1]).sum()) if ei.numel() else 0

    def sizes(c: int) -> tuple[int, int, int]:
        nv, nt = int(val_ratio * c), int(test_ratio * c)
        return c - nv - nt, nv, nt

    if min(sizes(count)) < 1:
        need = next(c for c in range(1, 10**7) if min(sizes(c)) >= 1)
        parts = f"{100 * (1 - val_ratio - test_ratio):g} / {100 * val_ratio:g} / {100 * test_ratio:g}"
        raise ValueError(
            f"link_split: the graph has {count} undirected edge(s), too few for the {parts} % "
            f"train / val / test edge split: every part needs at least one edge, which takes at "
            f"least {need} edges.")
    g = Data(edge_index=ei, num_nodes=data.num_nodes)
    tf = RandomLinkSplit(num_val=val_ratio, num_test=test_ratio, is_undirected=True,
                         add_negative_train_samples=False, split_labels=True)
    # PyG draws from torch's CPU generator and from Python's `random` (negative sampling).
    py_state = random.getstate()
    with torch.random.fork_rng(devices=[], enabled=seed is not None):  # CPU generator only
        if seed is not None:
            torch.manual_seed(seed)
            random.seed(seed)
        try:
            train, val, test = tf(g)
        finally:
            if seed is not None:
                random.setstate(py_state)
    return LinkSplit(
        train_pos_edge_index=train.edge_index,
        val_pos_edge_index=val.pos_edge_label_index,
        val_neg_edge_index=val.neg_edge_label_index,
        test_pos_edge_index=test.pos_edge_label_index,
        test_neg_edge_index=test.neg_edge_label_index,
    )
