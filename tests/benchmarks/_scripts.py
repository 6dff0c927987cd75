"""The benchmark scripts as files and as modules (they are scripts, not an importable package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def script(name: str) -> Path:
    """The path of ``benchmarks/<name>.py``."""
    return BENCHMARKS / f"{name}.py"


def load_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as the module ``benchmark_<name>``."""
    # as when run: the scripts import their helpers (``_common``, ``speed``) from beside them
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", script(name))
    module = importlib.util.module_from_spec(spec)
    # registered first: a dataclass of the script looks its module up while it is built
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
