"""16-bit PNG and TIFF in and out (the 'deep' extra: ``imagecodecs`` and ``tifffile``).

Pillow decodes 16-bit RGB PNG/TIFF to 8 bits and cannot write them, so photos with more than 8
bits per channel are read and written here, keeping every bit: a 16-bit photo gives a 16-bit
result. 32-bit float TIFFs are read (clipped to [0, 1]) and give 16-bit results. Without the
extra such photos are read at 8 bits, with a warning that says what to install.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from clnsod_core.arrays import to_u16

try:
    import imagecodecs
    import tifffile
    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installation
    imagecodecs = tifffile = None
    AVAILABLE = False

INSTALL = "pip install 'clnsod[deep]' (imagecodecs, tifffile)"
DEEP_FORMATS = ("PNG", "TIFF")  # output formats that hold 16 bits per channel


class DeepError(ValueError):
    """A 16-bit file whose layout cannot be used (the message says what is wrong)."""


def is_deep(im: Image.Image) -> bool:
    """True when Pillow's view of the file would lose bits: 16-bit PNG, 16/32-bit or float TIFF."""
    if im.format == "PNG":
        args = im.tile[0].args if im.tile else None
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
        return im.mode.startswith("I;16") or ";16" in str(rawmode)
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8 and im.mode not in ("1", "L", "P")
    return False


def read_deep(path: Path, fmt: str) -> np.ndarray:
    """(H, W, 3) uint16 RGB, or (H, W) uint16 gray, from a 16-bit PNG or a 16/32-bit TIFF (first page)."""
    if fmt == "PNG":
        pixels = imagecodecs.png_decode(path.read_bytes())
    else:
        with tifffile.TiffFile(path) as tif:
            pixels = _page_pixels(tif.pages[0])
    return _as_u16(pixels, path)


def _page_pixels(page: tifffile.TiffPage) -> np.ndarray:
    """A TIFF page's samples, last axis = channels (separate planes are moved there)."""
    pixels = page.asarray()
    return np.moveaxis(pixels, 0, -1) if pixels.ndim == 3 and page.planarconfig == 2 else pixels


def is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    except OSError:
        return False


def read_tiff_without_pillow(path: Path, check_size: Callable[[int, int], None]) -> tuple[np.ndarray, bytes | None, int]:
    """A TIFF Pillow cannot open (float or 32-bit samples): (uint16 pixels, ICC profile, orientation);
    ``check_size(width, height)`` runs on the header, before the samples are decoded."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        check_size(page.imagewidth, page.imagelength)
        icc = page.tags.get(34675)
        orientation = page.tags.get(274)
        return (_as_u16(_page_pixels(page), path), bytes(icc.value) if icc is not None else None,
                int(orientation.value) if orientation is not None else 1)


def _as_u16(pixels: np.ndarray, path: Path) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):  # drop alpha: the photo's colours are what count
        pixels = pixels[:, :, : pixels.shape[2] - 1]
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise DeepError(f"{path}: unsupported layout {pixels.shape} (expected gray or RGB)")
    if pixels.dtype == np.uint16:
        return np.ascontiguousarray(pixels)
    if pixels.dtype.kind == "f":
        return to_u16(np.nan_to_num(pixels.astype(np.float32), nan=0.0))
    if pixels.dtype in (np.uint32, np.int32, np.int16):
        top = float(np.iinfo(pixels.dtype).max)
        return to_u16(pixels.astype(np.float64) / top)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * 257
    raise DeepError(f"{path}: unsupported sample type {pixels.dtype}")


def encode_png(image: np.ndarray, icc_profile: bytes | None, exif: bytes | None, xmp: bytes | None = None) -> bytes:
    """16-bit PNG bytes with the ICC profile (iCCP), EXIF (eXIf) and XMP (iTXt) chunks after the header."""
    data = imagecodecs.png_encode(np.ascontiguousarray(image), level=3)
    chunks = b""
    if icc_profile:
        chunks += _chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        chunks += _chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    if xmp:  # the keyword Adobe's XMP specification gives, uncompressed, no language
        chunks += _chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)
    header_end = 8 + 8 + 13 + 4  # signature + IHDR (length, type, 13 data bytes, CRC)
    return data[:header_end] + chunks + data[header_end:]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# EXIF tags of the main IFD that a TIFF can carry directly (tifffile writes no EXIF sub-IFD).
_TIFF_TEXT_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 305: "Software", 306: "DateTime",
                   315: "Artist", 33432: "Copyright"}


def write_tiff(handle: IO[bytes], image: np.ndarray, icc_profile: bytes | None, exif: bytes | None,
               xmp: bytes | None = None) -> None:
    """16-bit deflate-compressed TIFF with the ICC profile, the EXIF main IFD's text tags and XMP (tag 700)."""
    extratags = [(700, "B", len(xmp), xmp, True)] if xmp else []
    if exif:
        parsed = Image.Exif()
        parsed.load(exif)
        for tag, _name in _TIFF_TEXT_TAGS.items():
            value = parsed.get(tag)
            if isinstance(value, str) and value:
                extratags.append((tag, "s", 0, value, True))
    buffer = io.BytesIO()  # tifffile needs a named file or a seekable buffer, not a bare descriptor
    tifffile.imwrite(buffer, np.ascontiguousarray(image), photometric="rgb" if image.ndim == 3 else "minisblack",
                     compression="zlib", iccprofile=icc_profile, extratags=extratags, metadata=None,
                     software="CLN-SOD")
    handle.write(buffer.getbuffer())
