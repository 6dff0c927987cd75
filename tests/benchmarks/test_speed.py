"""Smoke test of ``benchmarks/speed.py``: it runs on tiny shapes and writes its table.

No timing is asserted (DESIGN.md, section 7): the figures only have to be
positive numbers.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ..conftest import HANG_TIMEOUT_S
from ._scripts import script

SCRIPT = script("speed")
HEADER = (
    "| shape | contexts x perturbations x genes | test contexts | train pairs | test pairs "
    "| s/epoch (median) | epochs measured | first epoch s | fit s | fit outside epochs s "
    "| epochs run | predict s "
    "| peak RSS GB | RSS before fit GB | process peak RSS GB | GPU peak GB "
    "| paper GPU s/epoch | ours/paper |"
)
POSITIVE_COLUMNS = (
    "train pairs", "test pairs", "s/epoch (median)", "epochs measured", "first epoch s",
    "fit s", "epochs run", "predict s", "peak RSS GB", "RSS before fit GB",
    "process peak RSS GB",
)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[subprocess.CompletedProcess, str]:
    folder = tmp_path_factory.mktemp("speed")
    out = folder / "speed.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--epochs", "3", "--threads", "1",
         "--rounds", "2", "--out", str(folder)],
        capture_output=True, text=True, timeout=HANG_TIMEOUT_S, check=False,
    )
    text = out.read_text() if out.exists() else ""
    return proc, text


def test_runs_and_writes_markdown(report):
    proc, text = report
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert text, "no markdown file was written"
    assert "torch" in text and "CPU core(s)" in text
    assert "python benchmarks/speed.py --tiny --epochs 3" in text


def test_table_has_a_row_per_shape_with_positive_numbers(report):
    _, text = report
    lines = text.splitlines()
    assert HEADER in lines
    start = lines.index(HEADER)
    columns = _cells(HEADER)
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(columns), line
        rows[cells[0]] = dict(zip(columns, cells, strict=True))
    assert {"tahoe", "replogle", "parse"} <= set(rows)
    for name in ("tahoe", "replogle", "parse"):
        for column in POSITIVE_COLUMNS:
            value = float(rows[name][column].replace(",", ""))
            assert value > 0, (name, column, value)
        assert int(rows[name]["epochs run"]) == 3
        assert int(rows[name]["epochs measured"]) == 2  # the first epoch is dropped


def test_scaling_series_are_reported(report):
    _, text = report
    assert "### Scaling in contexts" in text
    assert "### Scaling in genes" in text
    assert text.count("| yes |") + text.count("| **no** |") == 4  # two steps per series
    header = next(line for line in text.splitlines() if line.startswith("| contexts |"))
    columns = _cells(header)
    section = text.split("### Scaling in contexts")[1].split("### Scaling in genes")[0]
    rows = [line for line in section.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3
    for line in rows:
        cells = dict(zip(columns, _cells(line), strict=True))
        runs = [float(v) for v in cells["rounds"].split(",")]
        assert len(runs) == 2  # --rounds 2
        assert float(cells["s/epoch (median)"]) == pytest.approx(np.median(runs), abs=1e-3)


def test_memory_cases_are_reported_with_the_readout_below_its_dense_size(report):
    _, text = report
    section = text.split("## Read-out memory with many contexts")[1]
    header = next(line for line in section.splitlines() if line.startswith("| case |"))
    columns = _cells(header)
    rows = {}
    for line in section.splitlines():
        if line.startswith("| atlas") or line.startswith("| wide"):
            cells = dict(zip(columns, _cells(line), strict=True))
            rows[cells["case"]] = cells
    assert set(rows) == {"atlas", "wide"}
    for cells in rows.values():
        for column in ("fit s", "epochs", "predict s (one call)", "peak RSS GB", "file MiB"):
            assert float(cells[column]) > 0, (cells["case"], column)
        # each context's factors hold at most its measured pairs' rows
        assert float(cells["read-out MiB"]) < float(cells["dense read-out MiB"])
