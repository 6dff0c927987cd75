"""The command-line reference, generated from the parsers (``docs/conf.py`` writes it at build).

Generating it from ``build_c3tl_parser`` and ``build_parser`` keeps every
subcommand and option in the documentation exactly as the command accepts
them; a new option needs no edit of the docs.
"""

from __future__ import annotations

import argparse
import os
import re

__all__ = ["cli_reference_rst"]

_RST_SPECIAL = re.compile(r"([\\`*_|])")


def _text(value: str) -> str:
    """Help text as reStructuredText: inline markup characters escaped, whitespace folded."""
    return _RST_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _title(text: str, char: str) -> list[str]:
    return [text, char * len(text), ""]


def _option_term(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"``{action.metavar or action.dest}``"
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return f"``{names}``"
    metavar = action.metavar or (
        "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper())
    return f"``{names} {metavar}``"


def _option_help(action: argparse.Action) -> str:
    # argparse's own %-placeholders, filled as --help fills them
    raw = (action.help or "").replace("%(default)s", str(action.default)).replace("%%", "%")
    text = _text(raw)
    if action.choices and action.option_strings and "choose" not in text:
        text += ("; " if text else "") + "choices: " + ", ".join(
            f"``{c}``" for c in action.choices)
    shown_default = action.default not in (None, False, [], argparse.SUPPRESS) and \
        action.nargs != 0 and "default" not in (action.help or "")
    if shown_default:
        text += f" (default: ``{action.default}``)"
    return text.strip() or "(no description)"


def _groups(parser: argparse.ArgumentParser):
    """(title, actions) of every argument group, positional arguments first."""
    for group in parser._action_groups:  # argparse keeps no public list of its groups
        actions = [a for a in group._group_actions
                   if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
        if actions:
            yield group.title, group.description, actions


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    usage = parser.format_usage().strip()
    return ["::", "", *("   " + line for line in usage.splitlines()), ""]


def _example(epilog: str | None) -> list[str]:
    """The parser's epilog (``Example: ...``; ``Examples: a; b``) as a console block."""
    if not epilog:
        return []
    text = " ".join(epilog.split())
    text = re.sub(r"^Examples?:\s*", "", text)
    commands = [c.strip() for c in re.split(r";\s+(?=c3tl|cell-eval|then)", text)
                if c.strip()]
    return ["Example:", "", ".. code-block:: console", "",
            *(f"   $ {c}" for c in commands), ""]


def _command(parser: argparse.ArgumentParser, name: str) -> list[str]:
    lines = _title(f"``{name}``", "-")
    if parser.description:
        lines += [_text(parser.description), ""]
    lines += _usage(parser)
    for title, description, actions in _groups(parser):
        heading = title[0].upper() + title[1:] if title else "Options"
        lines += [f"**{_text(heading)}**", ""]
        if description:
            lines += [_text(description), ""]
        for action in actions:
            lines += [_option_term(action), f"   {_option_help(action)}", ""]
    lines += _example(parser.epilog)
    return lines


def cli_reference_rst() -> str:
    """Every ``c3tl`` subcommand and option, with an example, as reStructuredText.

    Returns
    -------
    text : str
        A page with one section per subcommand (``pseudobulk``, ``fit``,
        ``predict``, ``evaluate``, ``export``, ``peers`` and ``benchmark``): its
        description, usage line, options by group (with defaults and
        choices) and example.

    Examples
    --------
    >>> from c3tl_sklearn.cli._reference import cli_reference_rst
    >>> text = cli_reference_rst()
    >>> "``c3tl fit``" in text and "``--split FILE.toml``" in text
    True
    """
    from ._c3tl import build_c3tl_parser
    from ._main import build_parser

    # argparse wraps usage lines to the terminal's width; the page should not depend on it
    width, os.environ["COLUMNS"] = os.environ.get("COLUMNS"), "88"
    try:
        return _reference(build_c3tl_parser(), build_parser("c3tl benchmark"))
    finally:
        if width is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = width


def _reference(top: argparse.ArgumentParser, benchmark: argparse.ArgumentParser) -> str:
    lines = [".. This page is generated from the argument parsers by docs/conf.py; do not "
             "edit it.", ""]
    lines += _title("Command-line reference", "=")
    lines += [_text(top.description), "", *_usage(top)]
    lines += ["Every subcommand also takes ``--quiet`` (no progress, no status lines) and "
              "``--traceback`` (the full traceback of an error); an input it cannot use ends "
              "it with status 2 and one line that names the problem and the fix.", ""]
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        if name == "benchmark":  # c3tl_main hands it to c3tl-benchmark's own parser
            lines += _command(benchmark, "c3tl benchmark")
            lines += ["``c3tl-benchmark`` is the same command under its own name.", ""]
        else:
            lines += _command(parser, f"c3tl {name}")
    return "\n".join(lines).rstrip() + "\n"
