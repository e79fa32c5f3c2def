"""Writing files atomically, and clearing what a killed run left behind.

Every output of CLN-SOD (photos, masks, weights, checkpoints, plugin exchange files) is written
to a temp file in the target folder and renamed into place, so a crash never leaves a partial
file under the real name; all of them get the usual permissions (0666 minus the umask).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def usual_permissions(directory: bool = False) -> int:
    """0666 (files) or 0777 (folders) minus the umask: what the user's own tools would create."""
    return (0o777 if directory else 0o666) & ~_UMASK


_PART = re.compile(r"\.clnsod-(\d+)-[^/]*\.part$")


def write_atomic(path: Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer`` on a private (0600) temp file next to ``path``, then rename it into place.

    The temp name is unique per process and call (concurrent runs never share one), carries the
    writer's pid (so ``remove_stale_parts`` can tell an abandoned one) and stays short enough for
    a 255-byte file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name.encode('utf-8', 'surrogateescape')[:100].decode('utf-8', 'ignore')}.clnsod-{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, usual_permissions())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_parts(folder: Path, recursive: bool = False) -> int:
    """Delete temp files left by a killed run (their pid is gone); returns how many.
    Temp files of live processes, such as a concurrent run, are left alone."""
    if not folder.is_dir():
        return 0
    removed = 0
    for part in folder.rglob(".*.part") if recursive else folder.glob(".*.part"):
        match = _PART.search(part.name)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            part.unlink()
            removed += 1
        except OSError:
            pass  # another run removed it, or it is not ours to remove
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

