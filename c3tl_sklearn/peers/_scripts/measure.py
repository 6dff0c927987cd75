"""Run a command as this process's child and write its peak resident memory (``wait4``).

Usage: ``python -I -S measure.py STATS_FILE -- COMMAND ...``; exits with the
command's status. Started from a large process (a benchmark with its data
in memory), a directly forked child is charged that process's resident pages
until it calls exec (Linux keeps the pre-exec high-water mark in ``ru_maxrss``),
so the peak of a command would include its parent. This launcher is a small
interpreter (no site packages); the command forked from it carries only a few
MiB of it, and its ``ru_maxrss`` is then the command's own (and that of any
process it waited for, such as a data-loader worker).
"""

import os
import sys


def main(argv: list[str]) -> int:
    """Run ``argv[2:]``, write its ``ru_maxrss`` to ``argv[0]``, return its status."""
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: measure.py STATS_FILE -- COMMAND ...")
    stats, command = argv[0], argv[2:]
    if not command:
        sys.exit("usage: measure.py STATS_FILE -- COMMAND ...")
    pid = os.fork()
    if pid == 0:  # the child becomes the command
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"cannot run {command[0]}: {exc}\n")
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    with open(stats, "w", encoding="utf-8") as fh:
        fh.write(str(usage.ru_maxrss))
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
