"""Sphinx configuration: ``sphinx-build -W --keep-going -b html docs docs/_build/html``."""
from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# the checkout being documented, ahead of any installed copy
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

import pyg_spherical

project = "pyg_spherical"
author = "pyg_spherical contributors"
copyright = "the pyg_spherical contributors"
release = version = pyg_spherical.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",  # MathJax ships with the site: math renders offline too
    "sphinx_copybutton",
    "myst_nb",  # Markdown pages (MyST) and the notebooks
    "public_api",  # docs/_ext/public_api.py: the API reference from each module's __all__
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "notebooks/README*"]
suppress_warnings = ["myst.header"]  # RESULTS.md starts its sections at level 2 below its title

# --- autodoc / napoleon -------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = True  # a few repro docstrings are NumPy-style
napoleon_use_rtype = False
add_module_names = False
toc_object_entries_show_parents = "hide"

# Every reference to this package must resolve; the ones into torch, PyG, NumPy, SciPy,
# scikit-learn and matplotlib are plain text (their inventories would need the network).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|torch_geometric|numpy|np|scipy|sklearn|matplotlib|urllib|nn)\..*"),
    (r"py:.*", r"(collections|numbers|os|pathlib|typing)\..*"),  # the standard library
    (r"py:.*", r"(Tensor|Module|Distribution|Data|Generator|Axes|Figure|ndarray|Path|PathLike)"),
    (r"py:.*", r"(ArrayLike|Colormap|Linear|Distribution\..*|(.*\.)?arg_constraints)"),
    (r"py:.*", r"(.*\.)?_[A-Za-z].*"),  # private names are not in the reference
    # the words of Google-style types: ``x (int, optional)``, ``f (callable)``
    (r"py:class", r"(optional|callable|sequence|path|default.*)"),
    # and the free-text types of the NumPy-style docstrings: ``x : Tensor (N, 784) float32``
    (r"py:class", r"(N|D|\d+|int64|float32|floating( in)?|values in|path-like)"),
    # the return type of GCNLatentEncoder.sparse_structure, which the package does not export
    (r"py:class", r"pyg_spherical\.nn\.graph_encoders\.SparseStructure"),
]

# --- MyST / notebooks ---------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4  # GitHub-style anchors, so README / RESULTS links to #sections work
nb_execution_mode = "off"  # the notebooks render from their saved outputs
nb_merge_streams = True

# --- HTML ---------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"pyg_spherical {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_exclude = ".linenos, .gp, .go"

# Links between repository files in the included README / RESULTS / CHANGELOG point at the
# pages that render those files on the site ("/" is the site's root).
_SITE_PAGES = [
    (r"README\.md", "/index.md"),
    (r"RESULTS\.md", "/results.md"),
    (r"CHANGELOG\.md", "/changelog.md"),
]
# docs/notebooks links to ../notebooks; a Markdown link would resolve through the link and miss
# the page, so notebook links become document references
_NOTEBOOK_LINK = re.compile(r"\[`?(?P<text>[^]`]*)`?\]\(notebooks/(?P<name>[\w.-]+)\.ipynb\)")


def _rewrite_repo_links(app, relative_path, parent_docname, content) -> None:
    text = content[0]
    for repo_file, page in _SITE_PAGES:
        text = re.sub(rf"\]\({repo_file}(?P<anchor>#[^)]*)?\)", rf"]({page}\g<anchor>)", text)
    content[0] = _NOTEBOOK_LINK.sub(r"{doc}`\g<text> </notebooks/\g<name>>`", text)


def setup(app):
    app.connect("include-read", _rewrite_repo_links)
