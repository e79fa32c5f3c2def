"""Process-level set-up: allocator tuning at start-up, and the one choice of compute device."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

from clnsod_core.options import DEVICES

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_allocator() -> bool:
    """Keep freed heap memory instead of returning it to the OS (glibc only).

    glibc serves large tensors with mmap and unmaps them on free, so every
    full-resolution operation page-faults its buffers back in; on small VMs this made
    torch up to 4x slower. Returns True when the setting was applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def resolve_device(name: str = "auto", index: int | None = None) -> torch.device:
    """``auto`` = cuda, then mps, then cpu; an explicit choice must be available.
    ``index`` picks the CUDA device (one per process under torchrun)."""
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda:
        raise ValueError("device 'cuda' requested but no CUDA GPU is available to PyTorch")
    if name == "mps" and not mps:
        raise ValueError("device 'mps' requested but Apple MPS is not available")
    return torch.device(name, index) if name == "cuda" and index is not None else torch.device(name)
