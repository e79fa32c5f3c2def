"""Running the real ``clnsod`` CLI in a child process, optionally without root's file-access override."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CLI = [sys.executable, "-m", "clnsod_core.frontends.cli"]
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_override() -> None:
    """In the child before exec: remove CAP_DAC_OVERRIDE/READ_SEARCH from the bounding set, so
    that even as root (the test machines) permission bits apply, as they do for a normal user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and os.geteuid() == 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_cli(*args: str | Path | bytes, as_user: bool = True, timeout: float = 300,
            cwd: Path | None = None, env: dict[str, str] | None = None,
            launcher: Sequence[str] = (sys.executable,)) -> subprocess.CompletedProcess[str]:
    """Run ``clnsod ARGS``; ``as_user`` drops root's permission override (see above); ``env`` adds
    variables; ``launcher`` replaces the interpreter (e.g. torchrun, which starts one per process).
    No PYTHONWARNINGS filter: a stray warning on stderr is a bug these tests should see."""
    argv = [*launcher, *CLI[1:], *(os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args)]
    return subprocess.run(argv, capture_output=True, text=True, errors="backslashreplace", timeout=timeout,
                          cwd=cwd, env={**os.environ, **(env or {})},
                          preexec_fn=_drop_file_override if as_user and os.geteuid() == 0 else None)
