"""The API reference, generated from each module's ``__all__``.

``.. public-api:: pyg_spherical.nn.latent`` renders the module's docstring and one autodoc entry
for every name of its ``__all__`` that the module owns (defines, or, for a constant, is the
deepest public module to export). A name that a package only re-exports is listed there with a
link to its entry, so every object is described once, under the module that defines it.

Renaming, adding or removing a public name therefore needs no edit here. At the end of reading
the sources, every name of every public module's ``__all__`` must have been documented by some
``public-api`` directive (compared by object identity, so ``pyg_spherical.nn.VMFLatent`` is
covered by ``pyg_spherical.nn.latent.VMFLatent``); a missing one is a warning, which
``sphinx-build -W`` turns into a failed build. References to a re-export path
(``:class:`pyg_spherical.VonMisesFisher```) resolve to the defining entry.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

PACKAGE = "pyg_spherical"


def public_modules(package: str = PACKAGE) -> dict[str, ModuleType]:
    """Every importable module of ``package`` without a ``_``-prefixed part in its name."""
    root = importlib.import_module(package)
    mods = {package: root}
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        mods[info.name] = importlib.import_module(info.name)
    return mods


def exports(mod: ModuleType) -> list[str]:
    return list(getattr(mod, "__all__", ()))


def _defines(obj) -> bool:
    return inspect.isclass(obj) or inspect.isroutine(obj)


def home(obj, mods: dict[str, ModuleType]) -> str | None:
    """The public module whose entry documents ``obj``: for a class or function, the public
    module that lists it and is its ``__module__`` (or the deepest such ancestor of it); for
    anything else, the deepest public module that lists it."""
    listing = sorted(name for name, mod in mods.items() if name != PACKAGE
                     and any(getattr(mod, n, None) is obj for n in exports(mod)))
    if not listing:
        return None
    if _defines(obj):
        where = getattr(obj, "__module__", "") or ""
        owners = [m for m in listing if where == m or where.startswith(m + ".")]
        if owners:
            return max(owners, key=len)
    return max(listing, key=lambda m: (m.count("."), m))


def _private(cls: type) -> bool:
    return cls.__name__.startswith("_") or any(
        part.startswith("_") for part in cls.__module__.split("."))


def _inherited_from(cls: type) -> str:
    """The value of ``:inherited-members:`` for a class's entry (empty: none inherited).

    A class documents the public members it inherits from a private base of this package,
    which has no entry of its own; those from its public bases are documented there, and those
    from torch or PyG in their documentation. autodoc takes the names of the bases to leave out."""
    bases = cls.__mro__[1:]
    if not any(b.__module__.startswith(PACKAGE + ".") and _private(b) for b in bases):
        return ""
    return ", ".join(dict.fromkeys(b.__name__ for b in bases if not (
        b.__module__.startswith(PACKAGE + ".") and _private(b))))


class PublicAPI(SphinxDirective):
    """``.. public-api:: MODULE``: the module's docstring, then the names it owns."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        modname = self.arguments[0]
        mods = _modules(self.env)
        if modname not in mods:
            logger.warning("public-api: %s is not a public module of %s", modname, PACKAGE,
                           location=self.get_location())
            return []
        mod = mods[modname]
        documented = self.env.pyg_spherical_documented  # type: ignore[attr-defined]
        documented.setdefault(self.env.docname, set()).add(modname)

        lines = [f"Module ``{modname}``", "", f".. automodule:: {modname}", "   :no-members:", ""]
        owned, elsewhere = [], []
        for name in exports(mod):
            obj = getattr(mod, name)
            if inspect.ismodule(obj):
                elsewhere.append(f":mod:`{obj.__name__}`")
            elif home(obj, mods) == modname:
                owned.append((name, obj))
            else:
                elsewhere.append(f":py:obj:`{name} <{home(obj, mods)}.{name}>`")
        if elsewhere:
            lines += [f"Also importable from ``{modname}``: " + ", ".join(elsewhere) + ".", ""]
        lines += [f".. py:currentmodule:: {modname}", ""]
        for name, obj in owned:
            if inspect.isclass(obj):
                lines += [f".. autoclass:: {name}", "   :members:", "   :show-inheritance:"]
                if inherited := _inherited_from(obj):
                    lines += [f"   :inherited-members: {inherited}"]
                lines += [""]
            elif inspect.isroutine(obj):
                lines += [f".. autofunction:: {name}", ""]
            else:
                lines += [f".. autodata:: {name}", ""]

        parent = nodes.Element()
        nested_parse_with_titles(self.state, StringList(lines, source=self.get_source_info()[0]),
                                 parent)
        return parent.children


_MODULES: dict[str, ModuleType] = {}


def _modules(env) -> dict[str, ModuleType]:
    # kept outside the environment, which is pickled between builds
    if not _MODULES:
        _MODULES.update(public_modules())
    return _MODULES


def _init_env(app, env, docnames) -> None:
    if not hasattr(env, "pyg_spherical_documented"):
        env.pyg_spherical_documented = {}
    for docname in docnames:
        env.pyg_spherical_documented.pop(docname, None)


def _purge(app, env, docname) -> None:
    getattr(env, "pyg_spherical_documented", {}).pop(docname, None)


def _merge(app, env, docnames, other) -> None:
    env.pyg_spherical_documented.update(
        {d: other.pyg_spherical_documented[d] for d in docnames
         if d in other.pyg_spherical_documented})


def missing_names(documented_modules: set[str], mods: dict[str, ModuleType]) -> list[str]:
    """``module.name`` for every exported name that no documented module's entries cover."""
    covered = {id(getattr(mods[m], n)) for m in documented_modules for n in exports(mods[m])}
    covered |= {id(mods[m]) for m in documented_modules}
    return [f"{m}.{n}" for m, mod in mods.items() for n in exports(mod)
            if id(getattr(mod, n)) not in covered]


def _check_complete(app, env) -> None:
    documented = set().union(*getattr(env, "pyg_spherical_documented", {}).values())
    for name in missing_names(documented, _modules(env)):
        logger.warning("public name %s is not in the API reference (add a `public-api` "
                       "directive for its module under docs/api/)", name)


def _targets(target: str, refmodule: str | None, mods: dict[str, ModuleType]):
    """Entries that ``target`` may mean, as written in a docstring of ``refmodule``: a
    re-export path (``pyg_spherical.nn.VMFLatent``), a name importable from the current module or
    one of its packages (``VonMisesFisher`` in ``pyg_spherical.distributions.product``), or a
    relative module (``..special``)."""
    if target.startswith("."):
        tail = "." + target.lstrip(".")
        yield from (m for m in mods if m.endswith(tail))
        return
    parts = target.split(".")
    scopes = []
    for i in range(len(parts) - 1, 0, -1):  # absolute: the longest module prefix
        if ".".join(parts[:i]) in mods:
            scopes.append((".".join(parts[:i]), parts[i:]))
            break
    while refmodule:  # relative: the current module, then its packages
        if refmodule in mods:
            scopes.append((refmodule, parts))
        refmodule = refmodule.rpartition(".")[0]
    for modname, rest in scopes:
        obj = getattr(mods[modname], rest[0], None)
        if obj is None:
            continue
        if inspect.ismodule(obj):
            yield ".".join([obj.__name__, *rest[1:]])
        elif (where := home(obj, mods)) is not None:
            yield ".".join([where, *rest])


def _resolve_reexport(app, env, node, contnode):
    """Resolves what the Python domain could not: see :func:`_targets`."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    domain = env.get_domain("py")
    for candidate in _targets(target, node.get("py:module"), _modules(env)):
        if candidate == target:
            continue
        found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                    candidate, node, contnode)
        if found is not None:
            return found
    return None


def _skip_members(app, what, name, obj, skip, options):
    """Members that would repeat or add noise: a NamedTuple's fields (its ``Attributes:``
    section describes them) and ``extra_repr``, torch's hook for a module's printed form."""
    doc = getattr(obj, "__doc__", None) or ""
    if doc.startswith("Alias for field number") or name == "extra_repr":
        return True
    return None


def setup(app):
    app.add_directive("public-api", PublicAPI)
    app.connect("env-before-read-docs", _init_env)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-check-consistency", _check_complete)
    app.connect("missing-reference", _resolve_reexport)
    app.connect("autodoc-skip-member", _skip_members)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
