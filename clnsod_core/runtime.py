"""Process-level set-up: allocator tuning at start-up, the one choice of compute device, and
running two steps side by side."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from clnsod_core.options import DEVICES

if TYPE_CHECKING:
    import torch

A = TypeVar("A")
B = TypeVar("B")
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def tune_allocator() -> bool:
    """Keep freed heap memory instead of returning it to the OS, in one heap (glibc only).

    glibc serves large tensors with mmap and unmaps them on free, so every
    full-resolution operation page-faults its buffers back in; on small VMs this made
    torch up to 4x slower. Helper threads (``run_beside``) would otherwise get heaps of their
    own, each keeping what it freed for itself (a photo-sized buffer kept per thread); one heap
    lets every thread reuse it. Returns True when the settings were applied.
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
    return all([mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, 2**30), mallopt(_M_ARENA_MAX, 1)])


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def run_beside(side: Callable[[], A], main: Callable[[], B]) -> tuple[A, B]:
    """(``side()``, ``main()``), ``side`` run on a helper thread while ``main`` runs on this one: for
    single-threaded steps (Pillow resizes, numpy passes; both release the GIL) that would otherwise
    leave a core idle. Returns once both have finished; an exception of either is raised here."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clnsod-beside") as pool:
        pending = pool.submit(side)
        main_result = main()  # if this raises, leaving the block still waits for ``side``
        return pending.result(), main_result


def resolve_device(name: str = "auto", index: int | None = None) -> torch.device:
    """``auto`` = cuda, then mps, then cpu; an explicit choice must be available.
    ``index`` picks the CUDA device (one per process under torchrun)."""
    import torch  # here, not at the top: the CLI's start-up, usage errors and --help need no torch

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
