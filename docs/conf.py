"""Sphinx configuration: the API reference and the getting-started page of c3tl-sklearn."""

import os
import sys
from pathlib import Path

# document the checkout this file sits in, not some installed copy
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# the doctests fit small networks; one thread each keeps them quick on shared cores
os.environ.setdefault("OMP_NUM_THREADS", "1")

import c3tl_sklearn

project = "c3tl-sklearn"
author = "c3tl-sklearn developers"
copyright = "2026, c3tl-sklearn developers"
release = c3tl_sklearn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "numpydoc",
]

# generated/cli.rst is written below and included by cli.rst, not a page of its own
exclude_patterns = ["_build", "generated/cli.rst"]
templates_path = ["_templates"]
html_theme = "alabaster"
html_static_path: list[str] = []

autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
# numpydoc lists the methods itself; autosummary's class template would add them twice
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# links are resolved offline: without the inventories, references to other
# projects render as plain text rather than failing the -W build
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

doctest_global_setup = """
import torch
torch.set_num_threads(1)
"""
# only the ``.. doctest::`` blocks of the pages run; docstring examples are run
# by pytest --doctest-modules where the project chooses to
doctest_test_doctest_blocks = ""


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # scikit-learn generates set_{fit,predict,score,...}_request on every
    # estimator; their docstrings point into scikit-learn's own glossary
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _write_cli_reference(app):
    # the command-line reference comes from the argument parsers, so it lists every
    # subcommand and option the installed command has
    from c3tl_sklearn.cli._reference import cli_reference_rst

    target = Path(app.srcdir) / "generated" / "cli.rst"
    target.parent.mkdir(exist_ok=True)
    text = cli_reference_rst()
    if not target.exists() or target.read_text() != text:  # unchanged: no rebuild
        target.write_text(text)


def setup(app):
    app.connect("builder-inited", _write_cli_reference)
    app.connect("autodoc-skip-member", _skip_metadata_requests)
