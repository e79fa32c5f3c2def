"""Pixel bytes and document checks: pure Python, testable outside Krita."""

from __future__ import annotations

PIXEL_FORMAT = "BGRA8"  # Krita's byte order for RGBA/U8 documents
SKY_LAYER = "New sky"
MASK_NAME = "Sky mask"
LIGHTING_LAYER = "Foreground lighting"
GROUP_LAYER = "Sky replacement"  # pass-through group holding the two result layers
CONVERT_HINT = "Image > Convert Image Color Space... (RGB/Alpha, 8-bit integer/channel)"


def color_space_problem(model: str, depth: str) -> str | None:
    """Why this colour space cannot be sent to the core, or None: the exchange is 8-bit RGBA only."""
    if model == "RGBA" and depth == "U8":
        return None
    return (f"Replace Sky works on 8-bit RGB images; this one is {model or '?'} / {depth or '?'}. "
            f"Convert it first with {CONVERT_HINT}.")


def gray_layer_bytes(matte: bytes) -> bytes:
    """A 1-byte-per-pixel matte as an opaque grayscale BGRA layer (white = sky)."""
    count = len(matte)
    out = bytearray(4 * count)
    out[0::4] = matte
    out[1::4] = matte
    out[2::4] = matte
    out[3::4] = b"\xff" * count
    return bytes(out)


def matte_coverage(matte: bytes) -> float:
    """Share of the image that is sky (0..1), for the summary message."""
    if not matte:
        return 0.0
    return sum(matte) / (255.0 * len(matte))
