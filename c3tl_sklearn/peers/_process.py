"""Running a command as a subprocess and measuring its wall time and peak resident memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PeerRunError", "RunStats", "run_measured"]

_LAUNCHER = Path(__file__).resolve().parent / "_scripts" / "measure.py"


class PeerRunError(RuntimeError):
    """A peer's command failed; the message holds the command and the end of its log."""


@dataclass(frozen=True)
class RunStats:
    """Wall time and peak resident set size of one finished subprocess."""

    seconds: float
    peak_rss_mib: float


def _log_tail(path: Path, n_lines: int = 25) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n_lines:])


def _peak_mib(maxrss: int) -> float:
    # ru_maxrss: kilobytes on Linux, bytes on macOS
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return maxrss * scale / 2**20


def run_measured(command: Sequence[str], *, log: str | os.PathLike,
                 env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
                 timeout: float | None = None, what: str = "command") -> RunStats:
    """Run ``command``, its output to ``log``; return its wall time and peak RSS.

    The peak is the ``ru_maxrss`` that ``wait4`` reports for the command,
    which a small launcher (``_scripts/measure.py``) runs as its child: the
    largest resident set of the command or of any descendant it waited for
    (a data-loader worker, for example), not of this process (a child forked
    directly from this process would be charged this process's pages until
    its exec). Every model of
    the head-to-head is measured this way, C3TL and the baselines through
    :mod:`c3tl_sklearn.peers._isolated`, so the figures compare.

    Parameters
    ----------
    command : sequence of str
        The program and its arguments.
    log : path
        File for the command's stdout and stderr (overwritten).
    env : mapping, optional
        Variables added to this process's environment.
    cwd : path, optional
        Working directory.
    timeout : float, optional
        Seconds after which the command is killed (then :class:`PeerRunError`).
    what : str, default="command"
        How to name the command in an error.

    Returns
    -------
    stats : RunStats

    Raises
    ------
    PeerRunError
        Non-zero exit status or timeout; the message ends with the log's last
        lines.
    """
    full_env = {**os.environ, **(env or {})}
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    stats = log.with_name(log.name + ".maxrss")
    stats.unlink(missing_ok=True)
    launcher = [sys.executable, "-I", "-S", os.fspath(_LAUNCHER), os.fspath(stats), "--"]
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        # a session of its own, so that a timeout stops the command and its children
        proc = subprocess.Popen([*launcher, *map(os.fspath, command)], stdout=out,
                                stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise PeerRunError(f"{what} ran longer than {timeout:.0f} s and was stopped "
                               f"(log: {log}).\n{_log_tail(log)}") from None
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise PeerRunError(
            f"{what} failed with exit status {proc.returncode}: {' '.join(map(str, command))}"
            f"\n(log: {log})\n{_log_tail(log)}"
        )
    try:
        kib = int(stats.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kib = -1
    finally:
        stats.unlink(missing_ok=True)
    return RunStats(seconds=seconds, peak_rss_mib=_peak_mib(kib) if kib >= 0 else float("nan"))
