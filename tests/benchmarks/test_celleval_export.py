"""Smoke test of ``benchmarks/celleval_export.py`` at a tiny size (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import HANG_TIMEOUT_S

pytest.importorskip("anndata")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "celleval_export.py"


def test_celleval_export_reports_its_size():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--contexts", "2", "--perturbations", "3",
         "--cells-per-group", "10", "--genes", "20"],
        capture_output=True, text=True, timeout=HANG_TIMEOUT_S, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 2 contexts x (3 perturbations + control) x 10 cells; pred holds as many rows
    assert proc.stdout.startswith("80 cells x 20 genes, 6 pairs: export ")
    assert proc.stdout.strip().endswith("pred.h5ad 80 rows")
