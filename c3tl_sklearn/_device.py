"""Check a torch ``device`` parameter against what this package and this machine can use."""

from __future__ import annotations

import torch

__all__ = ["check_device"]


def _has_mps_build() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_built())


def _mps_available() -> bool:
    return _has_mps_build() and bool(torch.backends.mps.is_available())


def describe_machine() -> str:
    """What torch sees on this machine, in words: ``"torch sees no CUDA device"``."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        text = "torch sees no CUDA device"
    elif n == 1:
        text = "torch sees 1 CUDA device (cuda:0)"
    else:
        text = f"torch sees {n} CUDA devices (cuda:0 to cuda:{n - 1})"
    if _has_mps_build():
        text += "; MPS is " + ("available" if _mps_available() else "not available")
    return text


def check_device(device, name: str = "device") -> torch.device:
    """The ``torch.device`` of a ``device`` parameter, or a ``ValueError`` naming the fix.

    Accepted: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (``N`` the index of a CUDA
    device), ``"mps"`` where torch is built with it, or a ``torch.device`` of
    these types. Anything else (``"gpu"``, ``"tpu"``, a typo) is refused here
    rather than deep inside torch with its list of twenty device types, and a
    device this machine does not have is refused with what it does have.

    Examples
    --------
    >>> from c3tl_sklearn._device import check_device
    >>> check_device("cpu")
    device(type='cpu')
    """
    choices = "'cpu', 'cuda', 'cuda:N' (N the index of a CUDA device)"
    if _has_mps_build():
        choices += ", 'mps'"
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps") or (
        dev.type == "mps" and not _has_mps_build()
    ):
        raise ValueError(
            f"{name}={device!r} is not a device this estimator can use; valid choices: "
            f"{choices}. This machine: {describe_machine()}."
        )
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(
                f"{name}={device!r} was requested but torch sees no CUDA device; "
                f"use {name}='cpu'."
            )
        if dev.index is not None and dev.index >= n:
            raise ValueError(
                f"{name}={device!r} was requested but {describe_machine()}; "
                f"use one of those or {name}='cpu'."
            )
    if dev.type == "mps" and not _mps_available():
        raise ValueError(
            f"{name}={device!r} was requested but MPS is not available on this machine; "
            f"use {name}='cpu'."
        )
    return dev
