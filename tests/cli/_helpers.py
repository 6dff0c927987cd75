"""What the command-line tests share: running ``c3tl`` in process or as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from c3tl_sklearn.cli import c3tl_main

from ..conftest import HANG_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]


def c3tl_subprocess(*args, cwd) -> subprocess.CompletedProcess:
    """``c3tl ARGS`` as a user runs it, with this checkout's package (also in CI)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "c3tl_sklearn.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=HANG_TIMEOUT_S)


def run(capsys, *args) -> tuple[int, str, str]:
    """``c3tl ARGS`` in this process: (status, stdout, stderr)."""
    status = c3tl_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def ok(capsys, *args) -> tuple[str, str]:
    """``c3tl ARGS`` in this process, which must succeed: (stdout, stderr)."""
    status, out, err = run(capsys, *args)
    assert status == 0, err
    return out, err


def error_of(capsys, *args) -> str:
    """The one line of a usage or data error (status 2, no traceback)."""
    status, out, err = run(capsys, *args)
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
