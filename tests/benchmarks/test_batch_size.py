"""Smoke test of ``benchmarks/batch_size.py`` on a tiny shape (no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

from ..conftest import HANG_TIMEOUT_S
from ._scripts import load_script, script

SCRIPT = script("batch_size")


def test_reports_a_row_per_batch_size(tmp_path):
    out = tmp_path / "batch_size.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--shape", "12,20,16", "--max-epochs", "3",
         "--batch-sizes", "40,none", "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=HANG_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[1:]]
    assert [r["batch_size"] for r in rows] == ["40", "none"]
    assert rows[0]["steps per epoch"] == "several"
    assert rows[1]["steps per epoch"] == "1 (full batch)"
    for r in rows:
        assert 1 <= int(r["epochs"]) <= 3
        assert float(r["held-out MSE"]) > 0
        assert -1 <= float(r["held-out Pearson"]) <= 1


def test_rejects_bad_batch_sizes(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch-sizes", "0", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=HANG_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 2
    assert "--batch-sizes" in proc.stderr


def test_out_is_a_directory_and_the_default_is_not_the_committed_results(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "batch_size.md")],
        capture_output=True, text=True, timeout=HANG_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 2
    assert "--out takes a directory (the table is batch_size.md in it)" in proc.stderr
    assert not (tmp_path / "batch_size.md").exists()
    bench = load_script("batch_size")
    assert bench.parse_args([]).out == str(Path("c3tl-results") / "batch_size")
