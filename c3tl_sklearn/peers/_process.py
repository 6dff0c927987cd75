"""Running a command as a subprocess and measuring its wall time and peak resident memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PeerRunError", "RunStats", "run_measured"]


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


def _peak_mib(rusage) -> float:
    # ru_maxrss: kilobytes on Linux, bytes on macOS
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return rusage.ru_maxrss * scale / 2**20


def run_measured(command: Sequence[str], *, log: str | os.PathLike,
                 env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
                 timeout: float | None = None, what: str = "command") -> RunStats:
    """Run ``command``, its output to ``log``; return its wall time and peak RSS.

    The peak is the ``ru_maxrss`` that ``wait4`` reports for this one child:
    the largest resident set of the child or of any descendant it waited for
    (a data-loader worker, for example), not of this process. Every model of
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
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(list(map(os.fspath, command)), stdout=out,
                                stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
        deadline = None if timeout is None else t0 + timeout
        while True:
            # wait4 (not Popen.wait) so the rusage of this child comes back
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise PeerRunError(f"{what} ran longer than {timeout:.0f} s and was stopped "
                                   f"(log: {log}).\n{_log_tail(log)}")
            time.sleep(0.05)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise PeerRunError(
            f"{what} failed with exit status {proc.returncode}: {' '.join(map(str, command))}"
            f"\n(log: {log})\n{_log_tail(log)}"
        )
    return RunStats(seconds=seconds, peak_rss_mib=_peak_mib(rusage))
