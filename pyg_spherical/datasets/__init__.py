"""Data sets: data-root resolution and dynamically binarised MNIST."""

from .mnist import (
    MNIST_FILES,
    MNIST_MIRRORS,
    ChecksumError,
    DynamicBinarizedLoader,
    MNISTSplit,
    binarize,
    binarize_fixed,
    check_md5,
    load_mnist,
    load_mnist_arrays,
    md5sum,
    mnist_raw_files,
    read_idx,
    train_val_split,
)
from .planetoid import PLANETOID_NAMES, LinkSplit, link_split, load_planetoid  # noqa: F401
from .root import resolve_cache, resolve_root

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "ChecksumError",
    "DynamicBinarizedLoader",
    "MNISTSplit",
    "binarize",
    "binarize_fixed",
    "check_md5",
    "load_mnist",
    "load_mnist_arrays",
    "md5sum",
    "mnist_raw_files",
    "read_idx",
    "resolve_cache",
    "resolve_root",
    "train_val_split",
]
