"""Where a peer's Python environment lives, how it is created, and the error when it is missing.

The peers carry non-commercial licences (State: CC BY-NC-SA 4.0; CellFlow:
PolyForm Noncommercial), so they are never dependencies of this package: each
lives in its own virtual environment that the user creates (``c3tl peers
install NAME``) or points to, and runs as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PEERS", "PeerEnvironmentError", "PeerSpec", "find_peer_python", "install_peer",
           "peer_home"]


class PeerEnvironmentError(RuntimeError):
    """A peer's environment is missing or broken; the message says how to create it."""


@dataclass(frozen=True)
class PeerSpec:
    """One peer: its pinned packages, licence and how to recognise its environment."""

    name: str
    label: str
    packages: tuple[str, ...]
    module: str  # imported to check the environment
    licence: str
    url: str


#: The peers the benchmark can run, with the versions ``c3tl peers install`` pins.
PEERS: dict[str, PeerSpec] = {
    "state": PeerSpec(
        name="state", label="State (Arc Institute)",
        # torch pinned in the same command: otherwise pip resolves a CUDA build (GBs)
        packages=("torch==2.13.0", "arc-state==0.11.1"), module="state",
        licence="CC BY-NC-SA 4.0", url="https://github.com/ArcInstitute/state",
    ),
    "cellflow": PeerSpec(
        name="cellflow", label="CellFlow (Theis lab)",
        # requests: imported by cellflow but not declared by cellflow-tools 0.0.9
        packages=("cellflow-tools==0.0.9", "requests"), module="cellflow",
        licence="PolyForm Noncommercial 1.0.0", url="https://github.com/theislab/cellflow",
    ),
}


def _spec(name: str) -> PeerSpec:
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"Unknown peer {name!r}; choose from {sorted(PEERS)}.") from None


def peer_home(name: str, root: str | os.PathLike | None = None) -> Path:
    """The default folder of a peer's environment.

    Parameters
    ----------
    name : {"state", "cellflow"}
        The peer.
    root : path, optional
        Folder holding the peers' environments; ``None`` reads the
        environment variable ``C3TL_PEERS_DIR``, else ``~/.cache/c3tl/peers``.

    Returns
    -------
    path : pathlib.Path
        ``root / name``.

    Examples
    --------
    >>> from c3tl_sklearn.peers import peer_home
    >>> peer_home("state", "/opt/peers").as_posix()
    '/opt/peers/state'
    """
    _spec(name)
    if root is None:
        root = os.environ.get("C3TL_PEERS_DIR") or Path.home() / ".cache" / "c3tl" / "peers"
    return Path(root) / name


def _env_python(prefix: Path) -> Path:
    return prefix / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_peer_python(name: str, python: str | os.PathLike | None = None) -> Path:
    """The Python executable of a peer's environment, or an error that says how to make one.

    Looked for in this order: ``python`` (an interpreter, or the folder of a
    virtual environment), the environment variable ``C3TL_<NAME>_PYTHON``
    (same forms), then :func:`peer_home`.

    Parameters
    ----------
    name : {"state", "cellflow"}
        The peer.
    python : path, optional
        Interpreter or environment folder to use.

    Returns
    -------
    python : pathlib.Path

    Raises
    ------
    PeerEnvironmentError
        When no interpreter is found; the message names the ``c3tl peers
        install`` command and the options that point to an existing one.
    """
    spec = _spec(name)
    variable = f"C3TL_{name.upper()}_PYTHON"
    given = python if python is not None else os.environ.get(variable)
    candidates = [(Path(given), "given")] if given else [(peer_home(name), "default")]
    for path, _ in candidates:
        exe = _env_python(path) if path.is_dir() else path
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    where = candidates[0][0]
    raise PeerEnvironmentError(
        f"No Python environment for {spec.label} at {str(where)!r}. Create one with "
        f"`c3tl peers install {name}` (pip installs {' '.join(spec.packages)} into "
        f"{peer_home(name)}; --prefix DIR puts it elsewhere), or point to an existing one "
        f"with --{name}-python PATH or the environment variable {variable}. {spec.label} is "
        f"licensed {spec.licence}, so it is never installed with c3tl-sklearn."
    )


def check_peer_python(name: str, python: Path) -> str:
    """The peer's version in that environment, or an error naming the fix.

    Parameters
    ----------
    name : {"state", "cellflow"}
        The peer.
    python : path
        Its interpreter.

    Returns
    -------
    version : str
        The installed version of the peer's distribution.
    """
    spec = _spec(name)
    dist = spec.packages[-1 if name == "state" else 0].split("==")[0]
    code = ("import importlib.metadata as m, importlib.util as u, sys; "
            f"sys.exit(3) if u.find_spec({spec.module!r}) is None else "
            f"print(m.version({dist!r}))")
    try:
        out = subprocess.run([os.fspath(python), "-c", code], capture_output=True, text=True,
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerEnvironmentError(f"Cannot run {python} for {spec.label}: {exc}") from exc
    if out.returncode != 0:
        raise PeerEnvironmentError(
            f"{python} does not have {spec.label} ({dist}) installed. Run `c3tl peers install "
            f"{name} --prefix {Path(python).parent.parent}` to install it there, or point "
            f"--{name}-python to another environment."
        )
    return out.stdout.strip()


def install_peer(name: str, prefix: str | os.PathLike | None = None, *,
                 base_python: str | os.PathLike | None = None, extra_pip_args=(),
                 quiet: bool = False) -> Path:
    """Create a virtual environment for a peer and pip-install its pinned packages.

    Parameters
    ----------
    name : {"state", "cellflow"}
        The peer (see :data:`PEERS` for the packages).
    prefix : path, optional
        The environment's folder; ``None`` uses :func:`peer_home`.
    base_python : path, optional
        Interpreter that creates the environment (default: this one).
    extra_pip_args : sequence of str, default=()
        Extra arguments for ``pip install`` (an index URL, ``--no-cache-dir``).
    quiet : bool, default=False
        Pass ``--quiet`` to pip.

    Returns
    -------
    python : pathlib.Path
        The environment's interpreter.

    Notes
    -----
    Installing State takes minutes and about 2.5 GB (torch), CellFlow about
    1 GB (JAX). Both are non-commercial licences: installing them is the
    user's decision, which is why nothing else installs them.
    """
    spec = _spec(name)
    prefix = Path(prefix) if prefix is not None else peer_home(name)
    exe = _env_python(prefix)
    if not exe.is_file():
        prefix.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([os.fspath(base_python or sys.executable), "-m", "venv",
                        os.fspath(prefix)], check=True)
    pip = [os.fspath(exe), "-m", "pip", "install", *(["--quiet"] if quiet else []),
           *extra_pip_args]
    subprocess.run([*pip, *spec.packages], check=True)
    check_peer_python(name, exe)
    return exe
