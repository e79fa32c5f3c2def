"""Pixel bytes and document checks: pure Python, testable outside Krita."""

from __future__ import annotations

import array
import sys

# Krita's pixel layout per RGBA channel depth -> the exchange's pixel format (PROTOCOL.md): integer
# depths are stored B, G, R, A; float depths R, G, B, A; all little-endian on the machines Krita runs on.
PIXEL_FORMATS = {"U8": "BGRA8", "U16": "BGRA16", "F16": "RGBAF16", "F32": "RGBAF32"}
SKY_LAYER = "New sky"
MASK_NAME = "Sky mask"
LIGHTING_LAYER = "Foreground lighting"
GROUP_LAYER = "Sky replacement"  # pass-through group holding the two result layers
CONVERT_HINT = "Image > Convert Image Color Space... (RGB/Alpha)"


def color_space_problem(model: str, depth: str) -> str | None:
    """Why this colour space cannot be sent to the core, or None: RGB at 8/16-bit integer or 16/32-bit float."""
    if model == "RGBA" and depth in PIXEL_FORMATS and sys.byteorder == "little":
        return None
    return (f"Replace Sky works on RGB images (8 or 16-bit integer, 16 or 32-bit float); this one is "
            f"{model or '?'} / {depth or '?'}. Convert it first with {CONVERT_HINT}.")


def gray_layer_bytes(matte: bytes, depth: str = "U8") -> bytes:
    """A 1-byte-per-pixel matte as an opaque grayscale layer (white = sky) in Krita's layout for ``depth``."""
    count = len(matte)
    if depth == "U8":
        out = bytearray(4 * count)
        out[0::4] = matte
        out[1::4] = matte
        out[2::4] = matte
        out[3::4] = b"\xff" * count
        return bytes(out)
    if depth == "U16":
        values = array.array("H", bytes(8 * count))
        scale, opaque = 257, 65535
    else:  # float depths: F32 directly, F16 through struct's half-float format
        values = array.array("f", bytes(16 * count))
        scale, opaque = 1 / 255, 1.0
    levels = [v * scale for v in range(256)]
    gray = [levels[v] for v in matte]
    values[0::4] = array.array(values.typecode, gray)
    values[1::4] = values[0::4]
    values[2::4] = values[0::4]
    values[3::4] = array.array(values.typecode, [opaque]) * count
    if depth == "F16":
        import struct

        return struct.pack(f"<{len(values)}e", *values)
    return values.tobytes()


def matte_coverage(matte: bytes) -> float:
    """Share of the image that is sky (0..1), for the summary message."""
    if not matte:
        return 0.0
    return sum(matte) / (255.0 * len(matte))
