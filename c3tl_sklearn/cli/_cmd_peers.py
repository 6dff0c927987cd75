"""``c3tl peers``: create or show the environments of the paper's peers (State, CellFlow)."""

from __future__ import annotations

import argparse
import subprocess

from ._errors import CommandError


def run(args: argparse.Namespace) -> int:
    """Install the named peers, or print where each environment is."""
    from ..peers import PEERS, PeerEnvironmentError, find_peer_python, install_peer, peer_home
    from ..peers._env import check_peer_python

    names = args.peer or ([] if args.action == "install" else list(PEERS))
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise CommandError(f"unknown peer(s) {unknown}; choose from {', '.join(PEERS)}.")
    if args.action == "install":
        if not names:
            raise CommandError("name the peer(s) to install: c3tl peers install state cellflow")
        if args.prefix and len(names) > 1:
            raise CommandError("--prefix names one environment; install one peer at a time.")
        for name in names:
            prefix = args.prefix or peer_home(name)
            if not args.quiet:
                print(f"installing {PEERS[name].label} ({' '.join(PEERS[name].packages)}; "
                      f"licence {PEERS[name].licence}) into {prefix}")
            try:
                exe = install_peer(name, prefix, extra_pip_args=args.pip_arg, quiet=args.quiet)
            except subprocess.CalledProcessError as exc:
                raise CommandError(
                    f"installing {name} failed ({exc}); see pip's output above.") from exc
            print(f"{name}: {exe}")
        return 0
    if args.prefix or args.pip_arg:
        raise CommandError("--prefix and --pip-arg go with `c3tl peers install`; `list` reads "
                           "$C3TL_STATE_PYTHON / $C3TL_CELLFLOW_PYTHON or $C3TL_PEERS_DIR.")
    for name in names:
        try:
            exe = find_peer_python(name)
            version = check_peer_python(name, exe)
            print(f"{name}: {PEERS[name].label} {version} at {exe} (licence "
                  f"{PEERS[name].licence})")
        except PeerEnvironmentError as exc:
            print(f"{name}: not installed ({exc})")
    return 0
