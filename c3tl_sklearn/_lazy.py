"""Names of a package that load their module on first use (PEP 562), for quick imports."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str],
                 namespace: dict) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for ``exports`` (name -> submodule).

    A name is imported from its submodule the first time it is asked for and
    then kept in ``namespace`` (the package's ``globals()``), so later lookups
    are plain attribute reads.
    """

    def __getattr__(name: str):
        if name in exports:
            value = getattr(import_module(f".{exports[name]}", package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        public = (k for k in namespace if not k.startswith("_"))
        return sorted({*namespace.get("__all__", ()), *exports, *public})

    return __getattr__, __dir__
