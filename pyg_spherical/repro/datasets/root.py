"""Where data sets live on disk.

Two folders are used:

* the **data root** holds raw files laid out as ``<root>/<Name>/raw/...``. It may be
  read-only (e.g. a shared, pre-populated folder);
* the **cache** is a writable folder for processed/derived files and downloads that
  could not be written into the data root.

Both are resolved as: explicit argument > environment variable > default under
``~/.cache/pyg_spherical``, and made absolute once, when read: a relative
``PYG_SPHERICAL_DATA=../data`` then keeps meaning the same folder after a change of
working directory (a notebook kernel, a subprocess).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "DataNotFoundError",
    "explicit_root",
    "resolve_cache",
    "resolve_root",
]

#: Environment variable naming the data root.
DATA_ENV = "PYG_SPHERICAL_DATA"
#: Environment variable naming the writable cache folder.
CACHE_ENV = "PYG_SPHERICAL_CACHE"

_DEFAULT_BASE = Path("~/.cache/pyg_spherical")

PathLike = Union[str, "os.PathLike[str]"]


class DataNotFoundError(FileNotFoundError):
    """Raw data files are not where they were looked for, and could not be fetched.

    Attributes
    ----------
    problem : str
        What is missing and where it was looked for, without advice.
    needs : tuple of str
        What would fix it: ``"root"`` (point the data root at the files) and/or
        ``"download"`` (allow the download). A command-line tool words its own advice
        (its flags) from these; ``str(error)`` words it for the Python API.
    """

    _ADVICE = {
        "root": f"pass root= or set ${DATA_ENV} to a folder holding the raw files",
        "download": "or call with download=True to fetch them",
    }

    def __init__(self, problem: str, needs: tuple[str, ...] = ()) -> None:
        self.problem = problem
        self.needs = tuple(needs)
        super().__init__("; ".join([problem, *(self._ADVICE[k] for k in self.needs)]))


def _explicit(explicit: PathLike | None, env: str) -> Path | None:
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser().resolve()
    value = os.environ.get(env, "").strip()
    if value:
        return Path(value).expanduser().resolve()
    return None


def _resolve(explicit: PathLike | None, env: str, default: Path) -> Path:
    chosen = _explicit(explicit, env)
    return chosen if chosen is not None else default.expanduser().resolve()


def explicit_root(root: PathLike | None = None) -> Path | None:
    """Return the data root the user chose, or ``None`` if they chose none.

    Parameters
    ----------
    root : str or path-like, optional
        Explicit folder.

    Returns
    -------
    pathlib.Path or None
        ``root`` if given, else ``$PYG_SPHERICAL_DATA`` if set and non-empty (absolute,
        ``~`` expanded), else ``None``: the default root of :func:`resolve_root` is then
        in use. Loaders treat a chosen root that does not exist as an error, and a
        missing default root as "no local copy".
    """
    return _explicit(root, DATA_ENV)


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
        ``~/.cache/pyg_spherical/data``; absolute, with ``~`` expanded. The folder is
        neither created nor checked for existence.
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
        ``~/.cache/pyg_spherical/cache``; absolute, with ``~`` expanded. The folder is
        not created here (writers create it on demand).
    """
    return _resolve(cache, CACHE_ENV, _DEFAULT_BASE / "cache")
