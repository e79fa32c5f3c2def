"""Colour management with LittleCMS: photos keep their own RGB space, skies are converted into it.

A photo's colour space is its embedded ICC profile (no profile = sRGB). The network sees sRGB (it
was trained on sRGB photos); a sky (presets are sRGB, a sky photo carries its own profile) is
converted into the photo's space before it is placed, so compositing and harmonisation work on
one set of numbers and the output carries the photo's own profile.

Conversions run through Pillow's ImageCms at 8 bits, or through ``imagecodecs`` (LittleCMS too,
the 'deep' extra) at 16 bits and in float, which 16-bit photos need. A profile that converts to
sRGB as the identity is treated as sRGB, so sRGB photos are never converted at all.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms

from clnsod_core.arrays import as_u8, to_u16, unit_scale

try:  # LittleCMS at 16 bits and float ('deep' extra); ImageCms covers 8 bits without it
    import imagecodecs
    FLOAT_CMS = hasattr(imagecodecs, "cms_transform")
except ImportError:  # pragma: no cover - depends on the installation
    imagecodecs = None
    FLOAT_CMS = False

SRGB_ICC: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


class ColourError(ValueError):
    """An embedded ICC profile that LittleCMS cannot use."""


@dataclass(frozen=True)
class ColourSpace:
    """A photo's RGB colour space: its ICC profile, or None for sRGB (untagged photos are sRGB)."""

    icc: bytes | None = None

    @property
    def is_srgb(self) -> bool:
        return self.icc is None or _is_srgb(self.icc)

    @property
    def name(self) -> str:
        return "sRGB" if self.icc is None else profile_description(self.icc)


SRGB = ColourSpace()


def profile_description(icc: bytes) -> str:
    try:
        return ImageCms.getProfileDescription(_profile(icc)).strip() or "unnamed profile"
    except (ImageCms.PyCMSError, OSError, ValueError):
        return "unreadable profile"


def colour_kind(icc: bytes) -> str:
    """The profile's data colour space as LittleCMS names it: 'RGB', 'GRAY', 'CMYK', ..."""
    try:
        return _profile(icc).profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        raise ColourError(f"embedded ICC profile is unreadable ({exc})") from None


def convert(pixels: np.ndarray, source: ColourSpace, target: ColourSpace) -> np.ndarray:
    """RGB ``pixels`` (uint8, uint16 or float32 in [0, 1]) from ``source`` to ``target`` colour space,
    same dtype and shape (relative colorimetric intent). Identity spaces return ``pixels`` itself."""
    if source.icc == target.icc or (source.is_srgb and target.is_srgb):
        return pixels
    src, dst = source.icc or SRGB_ICC, target.icc or SRGB_ICC
    if pixels.dtype == np.uint8:
        return _convert_u8(pixels, src, dst)
    if not FLOAT_CMS:
        # 8-bit LittleCMS through Pillow: the colours are right to 8-bit rounding.
        scale = unit_scale(pixels.dtype)
        u8 = _convert_u8(np.clip(pixels / scale * 255 + 0.5, 0, 255).astype(np.uint8), src, dst)
        return (u8.astype(np.float32) * (scale / 255)).astype(pixels.dtype)
    if pixels.dtype == np.uint16:
        return _cms(pixels, src, dst)
    # Floats go through 16 bits: 1/65535 steps, and LittleCMS's integer path is ~7x faster than float.
    return (_cms(to_u16(pixels), src, dst).astype(np.float32) / 65535).astype(pixels.dtype)


def to_srgb_u8(pixels: np.ndarray, space: ColourSpace) -> np.ndarray:
    """An 8-bit sRGB version of small RGB ``pixels`` (the network's input) of any depth."""
    return convert(as_u8(pixels), space, SRGB)


def gray_or_cmyk_to_srgb(pixels: np.ndarray, icc: bytes, kind: str) -> np.ndarray:
    """A gray ((H, W) uint8/uint16) or CMYK ((H, W, 4) uint8) photo converted to sRGB RGB through its
    own embedded profile; ``kind`` is the profile's 'GRAY' or 'CMYK'."""
    if pixels.dtype == np.uint16 and FLOAT_CMS:
        return _cms(pixels, icc, SRGB_ICC, colorspace=kind.lower())
    mode = {"GRAY": "L", "CMYK": "CMYK"}[kind]
    image = ImageCms.applyTransform(Image.fromarray(as_u8(pixels), mode), _transform(icc, SRGB_ICC, mode, "RGB"))
    return np.asarray(image)


def _cms(pixels: np.ndarray, src: bytes, dst: bytes, colorspace: str = "rgb") -> np.ndarray:
    """LittleCMS through imagecodecs (16 bits): ``colorspace`` pixels (rgb, gray, cmyk) to RGB."""
    try:
        return imagecodecs.cms_transform(np.ascontiguousarray(pixels), src, dst, colorspace=colorspace,
                                         outcolorspace="rgb")
    except Exception as exc:  # imagecodecs raises its own CmsError and ValueErrors
        raise ColourError(f"colour conversion failed ({exc})") from None


def _convert_u8(pixels: np.ndarray, src: bytes, dst: bytes) -> np.ndarray:
    transform = _transform(src, dst, "RGB", "RGB")
    out = np.empty_like(pixels)
    rows = max(1, 4_000_000 // max(1, pixels.shape[1]))
    for y0 in range(0, pixels.shape[0], rows):  # in strips: no full-size PIL copies of a large photo
        part = Image.fromarray(np.ascontiguousarray(pixels[y0 : y0 + rows]), "RGB")
        out[y0 : y0 + rows] = np.asarray(ImageCms.applyTransform(part, transform))
    return out


@lru_cache(maxsize=16)
def _profile(icc: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(icc))


@lru_cache(maxsize=32)
def _transform(src: bytes, dst: bytes, in_mode: str, out_mode: str) -> ImageCms.ImageCmsTransform:
    try:
        return ImageCms.buildTransform(_profile(src), _profile(dst), in_mode, out_mode,
                                       renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        raise ColourError(f"embedded ICC profile cannot be used ({exc})") from None


@lru_cache(maxsize=16)
def _is_srgb(icc: bytes) -> bool:
    """True when the profile maps a grid of colours to sRGB within one 8-bit step."""
    try:
        if colour_kind(icc) != "RGB":
            return False
        levels = np.linspace(0, 255, 16).round().astype(np.uint8)
        grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(64, 64, 3)
        transform = _transform(icc, SRGB_ICC, "RGB", "RGB")
        mapped = np.asarray(ImageCms.applyTransform(Image.fromarray(grid, "RGB"), transform))
        return int(np.abs(mapped.astype(np.int16) - grid).max()) <= 1
    except ColourError:
        return False
