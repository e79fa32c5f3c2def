"""Camera RAW in through LibRaw (``rawpy``, the 'raw' extra).

Demosaiced at 16 bits with the camera's white balance into sRGB (sRGB tone curve, LibRaw's
automatic brightness like a camera's JPEG), turned upright from the raw's own orientation.
Raw files are recognised by their extension, before Pillow (which would read a DNG's small
preview instead of the raw data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    import rawpy
    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installation
    rawpy = None
    AVAILABLE = False

INSTALL = "pip install 'clnsod[raw]' (rawpy, LibRaw)"
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
                          ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".mos", ".rwl"})


class RawError(ValueError):
    """LibRaw cannot use the file; the message says why in a few words."""


def is_raw(path: Path) -> bool:
    return path.suffix.lower() in RAW_SUFFIXES


def raw_size(path: Path) -> tuple[int, int]:
    """(width, height) of the developed image, from the raw's header, without demosaicing."""
    with _open(path) as raw:
        sizes = raw.sizes
        width, height = sizes.width, sizes.height
        return (height, width) if sizes.flip in (5, 6) else (width, height)


def develop(path: Path) -> np.ndarray:
    """(H, W, 3) uint16 sRGB, upright."""
    with _open(path) as raw:
        try:
            return raw.postprocess(use_camera_wb=True, output_bps=16, output_color=rawpy.ColorSpace.sRGB,
                                   gamma=(2.4, 12.92))  # sRGB's curve (LibRaw's default is BT.709's)
        except rawpy.LibRawIOError:
            raise RawError("truncated or unreadable raw data (file is incomplete?)") from None
        except (rawpy.LibRawError, ValueError) as exc:
            raise RawError(f"cannot develop the raw data ({_reason(exc)})") from None


def _open(path: Path):
    try:
        return rawpy.imread(str(path))
    except rawpy.LibRawFileUnsupportedError:
        raise RawError("not a camera raw file LibRaw can read (unsupported or not raw data)") from None
    except rawpy.LibRawIOError:
        raise RawError("truncated or unreadable raw data") from None
    except (rawpy.LibRawError, ValueError) as exc:
        raise RawError(f"unreadable raw file ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    text = exc.args[0] if exc.args else ""
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return text.strip() or type(exc).__name__
