"""The documentation site: every public name is in the API reference, the guide's code runs.

The reference pages under ``docs/api/`` document modules with ``.. public-api:: MODULE``
directives (one entry per name of the module's ``__all__``) or single objects with autodoc
directives. The check here reads those sources, so it needs no Sphinx; when a build newer than
the sources exists (CI builds the site before the tests), it also checks the names that the
build actually wrote to ``objects.inv``.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
import types
import zlib
from pathlib import Path

import pytest
import torch

import pyg_spherical

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INVENTORY = DOCS / "_build" / "html" / "objects.inv"
DIRECTIVE = re.compile(
    r"^\s*\.\. (public-api|automodule|autoclass|autofunction|autodata)::\s*(\S+)", re.MULTILINE)


def public_modules() -> dict[str, object]:
    """Every module of the package without a ``_``-prefixed part in its dotted name."""
    mods = {"pyg_spherical": pyg_spherical}
    for info in pkgutil.walk_packages(pyg_spherical.__path__, "pyg_spherical."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            mods[info.name] = importlib.import_module(info.name)
    return mods


def resolve(dotted: str):
    """The object a dotted name refers to: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def reference_directives(pages: list[Path]) -> list[tuple[str, str]]:
    """``(directive, target)`` of every API directive in the given reference sources;
    ``autoclass`` and friends take their module from a preceding ``currentmodule``."""
    found = []
    for page in pages:
        module = None
        for line in page.read_text().splitlines():
            if m := re.match(r"^\s*\.\. (?:py:)?currentmodule::\s*(\S+)", line):
                module = m.group(1)
            elif m := DIRECTIVE.match(line):
                kind, target = m.groups()
                if kind in ("autoclass", "autofunction", "autodata") and "." not in target:
                    target = f"{module}.{target}"
                found.append((kind, target))
    return found


def missing_from(directives: list[tuple[str, str]], mods: dict[str, object]) -> list[str]:
    """``module.name`` for every name of a public ``__all__`` that the directives leave out.

    A module directive covers every name of its module's ``__all__`` (and the module); names
    are compared by the object they refer to, so ``pyg_spherical.VonMisesFisher`` is covered by
    the entry of ``pyg_spherical.distributions.VonMisesFisher``."""
    covered = set()
    for kind, target in directives:
        obj = resolve(target)
        covered.add(id(obj))
        if kind in ("public-api", "automodule"):
            covered.update(id(getattr(obj, n)) for n in getattr(obj, "__all__", ()))
    return [f"{m}.{n}" for m, mod in mods.items() for n in getattr(mod, "__all__", ())
            if id(getattr(mod, n)) not in covered]


def api_pages() -> list[Path]:
    return sorted((DOCS / "api").glob("*.rst")) + sorted((DOCS / "api").glob("*.md"))


def test_every_public_name_is_in_the_api_reference_sources():
    mods = public_modules()
    # the package's own surface: the names users import
    assert {"VonMisesFisher", "SphericalVGAE", "make_latent"} <= set(pyg_spherical.__all__)
    assert missing_from(reference_directives(api_pages()), mods) == []


def test_the_reference_check_notices_a_missing_module(tmp_path):
    """Without the page of ``pyg_spherical.special`` its three functions are reported."""
    mods = public_modules()
    pages = []
    for page in api_pages():
        copy = tmp_path / page.name
        copy.write_text(page.read_text().replace(".. public-api:: pyg_spherical.special\n", ""))
        pages.append(copy)
    missing = missing_from(reference_directives(pages), mods)
    assert sorted(missing) == [f"pyg_spherical.special.{n}" for n in sorted(
        pyg_spherical.special.__all__)]


def test_the_reference_check_notices_a_module_without_a_page():
    """A new public module whose names no page reaches is reported, name by name."""
    mods = public_modules()
    extra = types.ModuleType("pyg_spherical.extra")

    def helper():
        """Not in the reference."""

    extra.helper, extra.__all__ = helper, ["helper"]
    mods["pyg_spherical.extra"] = extra
    assert missing_from(reference_directives(api_pages()), mods) == ["pyg_spherical.extra.helper"]


def read_inventory(path: Path) -> dict[str, str]:
    """``{name: role}`` of a Sphinx ``objects.inv`` (version 2: four header lines, then zlib)."""
    *header, body = path.read_bytes().split(b"\n", 4)
    assert header[0].startswith(b"# Sphinx inventory version 2")
    entries = {}
    for line in zlib.decompress(body).decode().splitlines():
        m = re.match(r"(?x)(.+?)\s+(\S+?:\S+)\s+(-?\d+)\s+(\S*)\s+(.*)", line)
        if m:
            entries[m.group(1)] = m.group(2)
    return entries


def _sources_mtime() -> float:
    files = [*(ROOT / "pyg_spherical").rglob("*.py"), *DOCS.rglob("*.rst"), *DOCS.rglob("*.md"),
             *(DOCS / "_ext").glob("*.py"), DOCS / "conf.py"]
    return max(f.stat().st_mtime for f in files if "_build" not in f.parts)


def test_every_public_name_is_in_the_built_reference():
    if not INVENTORY.exists():
        pytest.skip("no built site: sphinx-build -W --keep-going -b html docs docs/_build/html")
    if INVENTORY.stat().st_mtime < _sources_mtime():
        pytest.skip("the built site is older than its sources; rebuild it to check it")
    entries = read_inventory(INVENTORY)
    documented = set()
    for name, role in entries.items():
        # (instance attributes, documented from __init__, are not attributes of their class)
        if role in ("py:module", "py:class", "py:function", "py:data", "py:method"):
            documented.add(id(resolve(name)))
    missing = [f"{m}.{n}" for m, mod in public_modules().items()
               for n in getattr(mod, "__all__", ()) if id(getattr(mod, n)) not in documented]
    assert missing == []
    # entries are named where their objects are defined
    for cls in (pyg_spherical.VonMisesFisher, pyg_spherical.SphericalVGAE):
        assert entries[f"{cls.__module__}.{cls.__qualname__}"] == "py:class"


GUIDE = sorted((DOCS / "guide").glob("*.md"))
SNIPPETS = [(page.name, i, code) for page in GUIDE
            for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(),
                                                flags=re.DOTALL))]


@pytest.mark.parametrize("page,index,code", SNIPPETS, ids=[f"{p}-{i}" for p, i, _ in SNIPPETS])
def test_guide_snippet_runs(page, index, code):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, f"docs/guide/{page} snippet {index}", "exec"),  # noqa: S102
             {"__name__": "guide"})
    finally:
        torch.set_num_threads(threads)
