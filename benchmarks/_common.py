"""What the benchmark scripts share: keyword arguments from text, the load, the report."""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path


def parse_kwargs(text: str) -> dict:
    """``"lr=0.01, hidden_dims=(64, 32)"`` as keyword arguments; literals only, never code."""
    if not text.strip():
        return {}
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give keyword arguments, e.g. 'lr=0.01'") from None
    if not isinstance(call, ast.Call) or call.args or any(kw.arg is None for kw in call.keywords):
        raise argparse.ArgumentTypeError(f"{text!r}: give keyword arguments, e.g. 'lr=0.01'")
    try:
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the values must be literals") from None


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, for a report's header (``?`` where unknown)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on this platform
        return "?"


def emit(text: str, out: Path | None) -> None:
    """Print a report and, with ``out``, also write it there (its folder created)."""
    print("\n" + text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
