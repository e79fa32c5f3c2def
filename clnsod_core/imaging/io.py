"""Reading photos and writing images safely.

Any photo PIL can decode becomes an (H, W, 3) RGB array with its EXIF orientation applied:
uint8, or uint16 for 16-bit PNG/TIFF and camera RAW files (``deep.py``, ``raw.py``). Gray and
CMYK photos with a profile are converted to sRGB through it; RGB photos keep their own colour
space (``PhotoMeta.icc_profile``, see ``colour.py``). Every failure becomes a ``PhotoError``
whose message names the file and the reason. Outputs are written to a temp file in the target
folder and renamed into place, so a crash never leaves a partial file behind.
"""

from __future__ import annotations

import shutil
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from clnsod_core.arrays import as_u8, to_u8
from clnsod_core.files import write_atomic
from clnsod_core.imaging import deep, raw
from clnsod_core.imaging.colour import ColourError, colour_kind, gray_or_cmyk_to_srgb
from clnsod_core.imaging.formats import (
    OPTIONAL_FORMATS,
    can_write,
    missing_support,
    sniff,
)
from clnsod_core.options import option

# Photos above this many pixels are refused before decoding (a 100 MP panorama is fine).
# Pillow's own decompression-bomb guard (2 x Image.MAX_IMAGE_PIXELS, ~179 MP) still applies above it.
DEFAULT_MAX_PIXELS = round(option("max_megapixels").default * 1_000_000)
# File name extensions treated as photos when a folder is searched (batch jobs, training data, eval).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jfif",
                            *(suffix for fmt in OPTIONAL_FORMATS for suffix in fmt.suffixes), *raw.RAW_SUFFIXES})


class PhotoWarning(UserWarning):
    """Something about a photo the user should know, though it can be used (e.g. bits lost)."""


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


def _profiled_to_rgb(pixels: np.ndarray, icc: bytes | None) -> tuple[np.ndarray, bytes | None] | None:
    """Gray or CMYK ``pixels`` with a matching gray/CMYK profile -> (sRGB RGB, no profile); None otherwise."""
    if icc is None:
        return None
    try:
        kind = colour_kind(icc)
    except ColourError:
        return None
    gray = pixels.ndim == 2
    if (kind == "GRAY" and gray) or (kind == "CMYK" and pixels.ndim == 3 and pixels.shape[2] == 4):
        return gray_or_cmyk_to_srgb(pixels, icc, kind), None
    return None


def _rgb_and_profile(im: Image.Image, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    """Pillow's decoded photo -> RGB uint8 and the profile the RGB values are in (None = sRGB)."""
    if im.mode in ("L", "CMYK") and icc is not None:
        converted = _profiled_to_rgb(np.asarray(im), icc)
        if converted is not None:
            return converted
    rgb = _to_rgb(im)
    return rgb, (icc if icc is not None and _rgb_profile(icc) else None)


def _rgb_profile(icc: bytes) -> bool:
    """Only an RGB profile describes RGB values; another kind on an RGB photo is ignored (= sRGB)."""
    try:
        return colour_kind(icc) == "RGB"
    except ColourError:
        return False


# EXIF orientation -> numpy: upright = f(stored); the same transposes as Pillow's exif_transpose.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    turn = _ORIENT.get(orientation)
    return pixels if turn is None else np.ascontiguousarray(turn(pixels))


def _deep_rgb(pixels: np.ndarray, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    """uint16 gray or RGB samples -> RGB and the profile its values are in (None = sRGB), as
    ``_rgb_and_profile`` does for Pillow's 8-bit images."""
    converted = _profiled_to_rgb(pixels, icc)
    if converted is not None:
        return converted
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2), None
    return pixels, (icc if icc is not None and _rgb_profile(icc) else None)


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse a photo above ``max_pixels`` from its header, before any decoding."""
    if width * height > max_pixels:
        raise PhotoError(path, f"image too large ({width}x{height} = {width * height / 1e6:.0f} MP; "
                               f"limit {max_pixels / 1e6:.0f} MP)")


def _load_deep(path: Path, im: Image.Image) -> tuple[np.ndarray, PhotoMeta]:
    """A 16-bit PNG/TIFF (Pillow has read only its header) -> (H, W, 3) uint16 and its meta."""
    icc = im.info.get("icc_profile")
    orientation = im.getexif().get(0x0112, 1)
    meta = _meta(im, icc, im.format)
    pixels, icc = _deep_rgb(_upright(deep.read_deep(path, im.format), orientation), icc)
    return pixels, PhotoMeta(meta.exif, icc, meta.source_format)


def _load_raw(path: Path, max_pixels: int) -> tuple[np.ndarray, PhotoMeta]:
    if not raw.AVAILABLE:
        raise PhotoError(path, f"reading camera RAW ({path.suffix.lower()}) needs {raw.INSTALL}")
    try:
        _check_size(path, *raw.raw_size(path), max_pixels)
        return raw.develop(path), PhotoMeta(None, None, "RAW")
    except raw.RawError as exc:
        raise PhotoError(path, str(exc)) from None
    except MemoryError:
        raise PhotoError(path, "not enough memory to develop this raw file") from None


@dataclass(frozen=True)
class PhotoMeta:
    """What is carried from an input photo to its outputs."""

    exif: bytes | None = None  # orientation already normalised to 1 (pixels are upright)
    icc_profile: bytes | None = None
    source_format: str | None = None  # Pillow's name of the file's format ("JPEG", "PNG", ...) or "RAW"


def load_photo(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a photo to upright RGB (H, W, 3), uint8 or uint16 (16-bit files, RAW); raises PhotoError
    with a clear reason."""
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
    if raw.is_raw(path):
        return _load_raw(path, max_pixels)
    lost_bits = False
    try:
        with warnings.catch_warnings():
            # Our own limit replaces the bomb warning; others ("Corrupt EXIF data") are about data we
            # either decode anyway or reject with a clear error: neither needs a Python warning.
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                _check_size(path, im.width, im.height, max_pixels)
                if deep.is_deep(im):
                    if deep.AVAILABLE:
                        return _load_deep(path, im)
                    lost_bits = True
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)  # animated / multi-page: use the first frame
                im.load()
                source_format = im.format
                ImageOps.exif_transpose(im, in_place=True)  # in place: no second full-size copy
                pixels, icc = _rgb_and_profile(im, im.info.get("icc_profile"))
                return pixels, _meta(im, icc, source_format)
    except PhotoError:
        raise
    except (deep.DeepError, ColourError) as exc:
        raise PhotoError(path, str(exc).removeprefix(f"{path}: ")) from None
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise PhotoError(path, f"image too large (over Pillow's decompression-bomb limit of {limit:.0f} MP)") from None
    except UnidentifiedImageError:
        if deep.is_tiff(path):  # float or 32-bit TIFFs Pillow does not open
            if not deep.AVAILABLE:
                raise PhotoError(path, f"reading this TIFF (float or 32-bit samples) needs {deep.INSTALL}") from None
            try:
                pixels, icc, orientation = deep.read_tiff_without_pillow(
                    path, lambda width, height: _check_size(path, width, height, max_pixels))
            except PhotoError:
                raise
            except deep.DeepError as exc:
                raise PhotoError(path, str(exc).removeprefix(f"{path}: ")) from None
            except Exception as exc:  # tifffile's own errors: the file is not a usable TIFF
                raise PhotoError(path, f"corrupt or unsupported TIFF ({str(exc) or type(exc).__name__})") from None
            pixels, icc = _deep_rgb(_upright(pixels, orientation), icc)
            return pixels, PhotoMeta(None, icc, "TIFF")
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
    finally:
        if lost_bits:
            warnings.warn(f"{path}: 16-bit image read at 8 bits; {deep.INSTALL} keeps all 16", PhotoWarning,
                          stacklevel=2)


def header_pixels(path: Path | str) -> int:
    """Width x height from the file header without decoding (0 if unreadable: decoding reports why)."""
    try:
        if not Path(path).is_file():  # never open a FIFO or device: it could block
            return 0
        if raw.is_raw(Path(path)):
            width, height = raw.raw_size(Path(path)) if raw.AVAILABLE else (0, 0)
            return width * height
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


def save_image(image: np.ndarray, path: Path, meta: PhotoMeta | None = None, quality: int = 92,
               xmp: bytes | None = None) -> None:
    """Write RGB/RGBA/L ``image`` atomically in the format given by the extension, carrying EXIF and
    the ICC profile over where the format supports them, and ``xmp`` (an XMP packet) in every output
    format. uint16 images stay 16-bit in PNG and TIFF (with the 'deep' extra) and become 8-bit in the
    other formats."""
    fmt = output_format(path)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    if image.dtype == np.uint16:
        if fmt in deep.DEEP_FORMATS and deep.AVAILABLE:
            _save_deep(image, path, fmt, meta, xmp)
            return
        if fmt in deep.DEEP_FORMATS:
            warnings.warn(f"{path}: written at 8 bits; {deep.INSTALL} writes 16-bit {fmt}", PhotoWarning, stacklevel=2)
        image = as_u8(image)
    pil = Image.fromarray(image)
    if fmt == "JPEG" and pil.mode == "RGBA":
        pil = pil.convert("RGB")
    options: dict[str, object] = {}
    if meta is not None and meta.exif:
        options["exif"] = meta.exif
    if meta is not None and meta.icc_profile and pil.mode != "L":
        options["icc_profile"] = meta.icc_profile
    if xmp:
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
            options["pnginfo"] = info
        elif fmt == "TIFF":  # Pillow writes either ``exif`` or ``tiffinfo``: carry both in the latter
            tags = Image.Exif()
            if "exif" in options:
                tags.load(options.pop("exif"))
            tags[700] = xmp
            options["tiffinfo"] = tags
        else:  # JPEG (APP1), WebP, AVIF and HEIF take it as is
            options["xmp"] = xmp
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


def _save_deep(image: np.ndarray, path: Path, fmt: str, meta: PhotoMeta | None, xmp: bytes | None) -> None:
    icc = meta.icc_profile if meta is not None and image.ndim == 3 else None
    exif = meta.exif if meta is not None else None
    if fmt == "PNG":
        data = deep.encode_png(image, icc, exif, xmp)
        write_atomic(path, lambda handle: handle.write(data))
    else:
        write_atomic(path, lambda handle: deep.write_tiff(handle, image, icc, exif, xmp))
