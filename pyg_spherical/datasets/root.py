"""Where data sets live on disk.

Two folders are used:

* the **data root** holds raw files laid out as ``<root>/<Name>/raw/...``. It may be
  read-only (e.g. a shared, pre-populated folder);
* the **cache** is a writable folder for processed/derived files and downloads that
  could not be written into the data root.

Both are resolved as: explicit argument > environment variable > default under
``~/.cache/pyg_spherical``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

__all__ = ["CACHE_ENV", "DATA_ENV", "resolve_cache", "resolve_root"]

#: Environment variable naming the data root.
DATA_ENV = "PYG_SPHERICAL_DATA"
#: Environment variable naming the writable cache folder.
CACHE_ENV = "PYG_SPHERICAL_CACHE"

_DEFAULT_BASE = Path("~/.cache/pyg_spherical")

PathLike = Union[str, "os.PathLike[str]"]


def _resolve(explicit: PathLike | None, env: str, default: Path) -> Path:
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    value = os.environ.get(env, "").strip()
    if value:
        return Path(value).expanduser()
    return default.expanduser()


def resolve_root(root: PathLike | None = None) -> Path:
    """Return the data root folder.

    Parameters
    ----------
    root : str or path-like, optional
        Explicit folder. Takes precedence over everything else.

    Returns
    -------
    pathlib.Path
        ``root`` if given, else ``$PYG_SPHERICAL_DATA`` if set and non-empty, else
        ``~/.cache/pyg_spherical/data``. ``~`` is expanded; the folder is neither
        created nor checked for existence.
    """
    return _resolve(root, DATA_ENV, _DEFAULT_BASE / "data")


def resolve_cache(cache: PathLike | None = None) -> Path:
    """Return the writable cache folder for processed files.

    Parameters
    ----------
    cache : str or path-like, optional
        Explicit folder. Takes precedence over everything else.

    Returns
    -------
    pathlib.Path
        ``cache`` if given, else ``$PYG_SPHERICAL_CACHE`` if set and non-empty, else
        ``~/.cache/pyg_spherical/cache``. ``~`` is expanded; the folder is not
        created here (writers create it on demand).
    """
    return _resolve(cache, CACHE_ENV, _DEFAULT_BASE / "cache")
