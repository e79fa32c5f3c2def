"""Process-level tuning applied once at start-up by the CLI and the benchmarks."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

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
