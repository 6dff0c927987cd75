"""The command-line reference (docs/cli.rst) is generated from the parsers: all of them."""

import argparse

import pytest

from c3tl_sklearn.cli import build_c3tl_parser, build_parser
from c3tl_sklearn.cli._reference import cli_reference_rst


def subparsers():
    top = build_c3tl_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        yield name, build_parser("c3tl benchmark") if name == "benchmark" else parser


@pytest.fixture(scope="module")
def text():
    return cli_reference_rst()


def section(text, name):
    title = f"``c3tl {name}``"
    start = text.index(title + "\n")
    end = text.find("\n``c3tl ", start + len(title))
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("name", [n for n, _ in subparsers()])
def test_every_subcommand_and_option_is_documented_with_an_example(text, name):
    parser = dict(subparsers())[name]
    part = section(text, name)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for option in action.option_strings:
            assert option in part, f"{option} of c3tl {name} is missing"
    assert "Example:" in part and "$ c3tl" in part
    assert f"usage: c3tl {name}" in part


def test_the_page_is_valid_restructuredtext(text):
    docutils = pytest.importorskip("docutils.core")
    # warnings (level 2) become errors, as `make docs` treats them
    docutils.publish_doctree(text, settings_overrides={"halt_level": 2, "report_level": 2})


def test_the_page_does_not_depend_on_the_terminal_width(text, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert cli_reference_rst() == text
