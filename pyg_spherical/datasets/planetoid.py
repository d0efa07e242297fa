r"""Planetoid citation graphs (Cora, CiteSeer, PubMed) and the VGAE link-prediction split.

Data
----
:func:`load_planetoid` wraps :class:`torch_geometric.datasets.Planetoid`. The raw files
``ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}`` are looked up in
``<root>/<Name>/raw`` (``root`` from :func:`~pyg_spherical.datasets.resolve_root`, i.e. the
``root=`` argument or ``$PYG_SPHERICAL_DATA``). The data root may be read-only: the raw files are
linked into ``<cache>/planetoid/<Name>/raw`` and PyG's processed files are written next to them,
under the writable cache (:func:`~pyg_spherical.datasets.resolve_cache`). When the raw files are
missing and ``download=True``, PyG's own download path fetches them into the cache.

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
import io
import os
import random
import shutil
import urllib.error
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .root import PathLike, resolve_cache, resolve_root

__all__ = ["PLANETOID_NAMES", "LinkSplit", "link_split", "load_planetoid", "planetoid_raw_dir"]

#: canonical spelling (as in PyG and the data root) of the supported graphs
PLANETOID_NAMES = ("Cora", "CiteSeer", "PubMed")
_RAW_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def _canonical(name: str) -> str:
    if isinstance(name, str):
        for known in PLANETOID_NAMES:
            if name.lower() == known.lower():
                return known
    raise ValueError(f"unknown Planetoid data set {name!r}; choose one of {list(PLANETOID_NAMES)}.")


def _raw_files(name: str) -> list[str]:
    return [f"ind.{name.lower()}.{s}" for s in _RAW_SUFFIXES]


def planetoid_raw_dir(name: str, root: PathLike | None = None) -> Path | None:
    """``<root>/<Name>/raw`` if it holds all eight raw files of ``name``, else ``None``."""
    name = _canonical(name)
    raw = resolve_root(root) / name / "raw"
    if all((raw / f).is_file() for f in _raw_files(name)):
        return raw
    return None


def _link_raw(src: Path, dst: Path, files: list[str]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = dst / f
        if target.is_symlink() or target.exists():
            if target.resolve() == (src / f).resolve():
                continue
            target.unlink()
        try:
            os.symlink(src / f, target)
        except OSError:  # no symlinks (e.g. some Windows setups): copy
            shutil.copyfile(src / f, target)


def load_planetoid(name: str, root: PathLike | None = None, *, cache: PathLike | None = None,
                   download: bool = True):
    r"""Load one Planetoid graph as a :class:`torch_geometric.data.Data`.

    Args:
        name (str): ``"Cora"``, ``"CiteSeer"`` or ``"PubMed"`` (case-insensitive).
        root (path, optional): data root holding ``<Name>/raw/ind.<name>.*`` (may be read-only).
        cache (path, optional): writable folder for PyG's processed files and downloads.
        download (bool): fetch the raw files with PyG when they are not in ``root``.

    Returns:
        ``Data(x (N, F) float32, edge_index (2, E) int64 with both directions, y (N,) int64)``;
        features unnormalised. Sizes: Cora 2708 nodes / 5278 undirected edges / 1433 features,
        CiteSeer 3327 / 4552 / 3703, PubMed 19717 / 44324 / 500.

    Raises:
        ValueError: unknown ``name``.
        FileNotFoundError: raw files missing and ``download=False`` or the download failed.
    """
    from torch_geometric.datasets import Planetoid

    name = _canonical(name)
    base = resolve_cache(cache) / "planetoid"
    raw = planetoid_raw_dir(name, root)
    if raw is not None:
        _link_raw(raw, base / name / "raw", _raw_files(name))
    elif not all((base / name / "raw" / f).is_file() for f in _raw_files(name)):
        where = resolve_root(root) / name / "raw"
        if not download:
            raise FileNotFoundError(
                f"{name}: raw files not found in {where} (expected {', '.join(_raw_files(name))}); "
                "set PYG_SPHERICAL_DATA / root, or allow download=True.")
    try:
        # PyG logs "Processing..." to stderr on first use; the library stays silent.
        with contextlib.redirect_stderr(io.StringIO()):
            ds = Planetoid(str(base), name)
    except (urllib.error.URLError, OSError) as e:
        raise FileNotFoundError(
            f"{name}: raw files not found in {resolve_root(root) / name / 'raw'} and the download "
            f"into {base / name / 'raw'} failed ({type(e).__name__}: {e}).") from e
    data = ds[0]
    return data


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
    """
    from torch_geometric.data import Data
    from torch_geometric.transforms import RandomLinkSplit

    if not (0 < val_ratio < 1 and 0 < test_ratio < 1 and val_ratio + test_ratio < 1):
        raise ValueError("link_split: need 0 < val_ratio, test_ratio and val_ratio + test_ratio < 1.")
    g = Data(edge_index=data.edge_index, num_nodes=data.num_nodes)
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
