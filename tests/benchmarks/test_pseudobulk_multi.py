"""Smoke test of ``benchmarks/pseudobulk_multi.py`` at a tiny size (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import HANG_TIMEOUT_S
from ._scripts import script

pytest.importorskip("anndata")

SCRIPT = script("pseudobulk_multi")


def test_pseudobulk_multi_writes_its_table(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--n-files", "2", "--cells-per-file", "1500",
         "--n-genes", "30", "--density", "0.2", "--n-contexts", "2", "--n-perturbations", "3",
         "--n-jobs", "1", "2", "--repeats", "1", "--gen-jobs", "1",
         "--workdir", str(tmp_path), "--out", str(out)],
        capture_output=True, text=True, timeout=HANG_TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "pseudobulk_multi.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 1 |")
            or line.startswith("| 2 |")]
    assert len(rows) == 2
    assert "3,000 cells in 2" in table and "max abs difference 0.0e+00" in table
    for row in rows:  # wall time, per-file seconds and memory are positive numbers
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1].split()[0]) > 0 and float(cells[3]) > 0
    assert not list(tmp_path.glob("c3tl_pbm_*"))  # the generated files were deleted
