"""Reading photos and writing images safely.

Any photo PIL can decode becomes an (H, W, 3) uint8 RGB array with its EXIF orientation
applied; every failure becomes a ``PhotoError`` whose message names the file and the reason.
Outputs are written to a temp file in the target folder and renamed into place, so a crash
never leaves a partial file behind.
"""

from __future__ import annotations

import shutil
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clnsod_core.arrays import to_u8
from clnsod_core.files import write_atomic
from clnsod_core.imaging.formats import OPTIONAL_FORMATS, can_write, missing_support, sniff
from clnsod_core.options import option

# Photos above this many pixels are refused before decoding (a 100 MP panorama is fine).
# Pillow's own decompression-bomb guard (2 x Image.MAX_IMAGE_PIXELS, ~179 MP) still applies above it.
DEFAULT_MAX_PIXELS = round(option("max_megapixels").default * 1_000_000)
# File name extensions treated as photos when a folder is searched (batch jobs, training data, eval).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jfif",
                            *(suffix for fmt in OPTIONAL_FORMATS for suffix in fmt.suffixes)})


class PhotoError(Exception):
    """A photo cannot be used; ``str()`` is one line: '<path>: <reason>'."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = to_u8(arr / top)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = to_u8(np.asarray(im))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, LA, RGBA, CMYK, YCbCr, 1 ...
    return np.asarray(im)


@dataclass(frozen=True)
class PhotoMeta:
    """What is carried from an input photo to its outputs."""

    exif: bytes | None = None  # orientation already normalised to 1 (pixels are upright)
    icc_profile: bytes | None = None
    source_format: str | None = None  # Pillow's name of the file's format ("JPEG", "PNG", ...)


def load_photo(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a photo to upright RGB uint8 (H, W, 3); raises PhotoError with a clear reason."""
    return load_photo_with_meta(path, max_pixels)[0]


def _meta(upright: Image.Image, icc_profile: bytes | None, source_format: str | None) -> PhotoMeta:
    """EXIF of the already-rotated image (exif_transpose removed its orientation tag)."""
    exif_bytes = None
    try:
        exif = upright.getexif()
        if len(exif):
            exif[0x0112] = 1  # a copy owned by ``upright``; pixels are upright now
            exif_bytes = exif.tobytes()
    except Exception:  # corrupt EXIF must never stop the photo from being used
        exif_bytes = None
    return PhotoMeta(exif_bytes, icc_profile, source_format)


def load_photo_with_meta(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, PhotoMeta]:
    """Like ``load_photo``, also returning the EXIF (orientation normalised) and ICC profile."""
    path = Path(path)
    if path.is_dir():
        raise PhotoError(path, "is a directory, not an image file")
    try:
        info = path.stat()
    except FileNotFoundError:
        raise PhotoError(path, "file not found") from None
    except OSError as exc:
        raise PhotoError(path, f"cannot access file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device could block or never end
        raise PhotoError(path, "not a regular file (a pipe, socket or device)")
    if info.st_size == 0:
        raise PhotoError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit replaces the bomb warning; others ("Corrupt EXIF data") are about data we
            # either decode anyway or reject with a clear error: neither needs a Python warning.
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                pixels = im.width * im.height
                if pixels > max_pixels:
                    raise PhotoError(
                        path, f"image too large ({im.width}x{im.height} = {pixels / 1e6:.0f} MP; limit {max_pixels / 1e6:.0f} MP)"
                    )
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)  # animated / multi-page: use the first frame
                im.load()
                source_format = im.format
                ImageOps.exif_transpose(im, in_place=True)  # in place: no second full-size copy
                return _to_rgb(im), _meta(im, im.info.get("icc_profile"), source_format)
    except PhotoError:
        raise
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise PhotoError(path, f"image too large (over Pillow's decompression-bomb limit of {limit:.0f} MP)") from None
    except UnidentifiedImageError:
        optional = sniff(path)
        if optional is not None:
            raise PhotoError(path, missing_support(optional, "reading")) from None
        raise PhotoError(path, "not an image file (format not recognised)") from None
    except PermissionError:
        raise PhotoError(path, "permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text:
            raise PhotoError(path, "truncated image data (file is incomplete)") from None
        raise PhotoError(path, f"corrupt or unsupported image data ({text})") from None
    except MemoryError:
        raise PhotoError(path, "not enough memory to decode this image") from None


def header_pixels(path: Path | str) -> int:
    """Width x height from the file header without decoding (0 if unreadable: decoding reports why)."""
    try:
        if not Path(path).is_file():  # never open a FIFO or device: it could block
            return 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return im.width * im.height
    except Exception:  # any failure is reported properly when the photo is decoded
        return 0


def save_mask_png(prob: np.ndarray, path: Path) -> None:
    """Write an 8-bit grayscale PNG atomically."""
    image = Image.fromarray(to_u8(prob))
    write_atomic(path, lambda handle: image.save(handle, format="PNG", compress_level=3))


OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
                  ".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF"}


def output_format(path: Path) -> str:
    """Pillow format name for an output path, from its extension."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported output extension {path.suffix!r}; use one of {', '.join(sorted(OUTPUT_FORMATS))}")
    optional = next((f for f in OPTIONAL_FORMATS if f.name == fmt), None)
    if optional is not None and not can_write(optional):
        raise ValueError(f"{path}: {missing_support(optional, 'writing')}")
    return fmt


def save_unchanged(photo: np.ndarray, source: Path, meta: PhotoMeta, path: Path, quality: int = 92) -> None:
    """Write a photo that needed no change: the source file's own bytes when ``path`` asks for the
    same format (nothing re-encoded, every byte of metadata kept), else its pixels re-encoded."""
    if meta.source_format is not None and meta.source_format == output_format(path):
        with open(source, "rb") as original:
            write_atomic(path, lambda handle: shutil.copyfileobj(original, handle, 1 << 20))
        return
    save_image(photo, path, meta, quality)


def save_image(image: np.ndarray, path: Path, meta: PhotoMeta | None = None, quality: int = 92) -> None:
    """Write RGB/RGBA/L uint8 ``image`` atomically in the format given by the extension,
    carrying EXIF and the ICC profile over where the format supports them."""
    fmt = output_format(path)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    pil = Image.fromarray(image)
    if fmt == "JPEG" and pil.mode == "RGBA":
        pil = pil.convert("RGB")
    options: dict[str, object] = {}
    if meta is not None and meta.exif:
        options["exif"] = meta.exif
    if meta is not None and meta.icc_profile and pil.mode != "L":
        options["icc_profile"] = meta.icc_profile
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=False)
    elif fmt == "WEBP":
        options.update(quality=quality, method=4)
    elif fmt in ("HEIF", "AVIF"):
        options.update(quality=quality)
    elif fmt == "PNG":
        options.update(compress_level=3)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    write_atomic(path, lambda handle: pil.save(handle, format=fmt, **options))
