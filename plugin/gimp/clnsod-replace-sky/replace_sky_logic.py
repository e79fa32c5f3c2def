"""Pure logic of the GIMP "Replace Sky" plug-in: no ``gi`` import, so it is unit-testable outside GIMP.

The plug-in's arguments are generated from ``bridge_client``'s option table (shared with the Krita
plugin), so both editors offer the same settings with the same ranges and defaults.
"""

from __future__ import annotations

from collections.abc import Mapping

import bridge_client as bridge

# GIMP argument names use dashes; the exchange protocol uses underscores.
SKY_PRESET_ARG = "sky"
SKY_FILE_ARG = "sky-file"
SKY_FLIP_ARG = "sky-flip"
DEVICE_ARG = "device"
MASK_ONLY_ARG = "mask-only"


def arg_name(key: str) -> str:
    """GIMP argument name for a protocol option key (``sky_shift_x`` -> ``sky-shift-x``)."""
    return key.replace("_", "-")


def preset_label(name: str) -> str:
    """Readable label for a preset name shown in the dialog's combo box."""
    return name.replace("-", " ").capitalize()


def mnemonic(label: str) -> str:
    """The label with a keyboard mnemonic on its first letter (GIMP's dialogs expect one)."""
    return label if "_" in label else "_" + label


def request_options(values: Mapping[str, object], sky_file: str | None) -> dict[str, object]:
    """Protocol options from the procedure's argument values (keyed by GIMP argument name).

    A sky image file, when given, takes precedence over the preset (one procedure signature
    serves both sources, as in the Krita dialog). Validation is left to ``bridge_client``.
    """
    options: dict[str, object] = {
        "mode": "mask" if values[MASK_ONLY_ARG] else "replace",
        "sky": sky_file if sky_file else str(values[SKY_PRESET_ARG]),
        "sky_flip": bool(values[SKY_FLIP_ARG]),
        "device": str(values[DEVICE_ARG]),
    }
    for option in bridge.NUMBER_OPTIONS:
        options[option.key] = float(values[arg_name(option.key)])  # type: ignore[arg-type]
    return options


def visible_part(offset_x: int, offset_y: int, width: int, height: int,
                 canvas_width: int, canvas_height: int) -> tuple[int, int, int, int] | None:
    """The part of a layer (given by its offsets and size) that lies on the canvas.

    Returns ``(x, y, w, h)`` in layer coordinates, or None when the layer is entirely off-canvas.
    Why: the "Sky mask" channel is canvas-sized, while the layer may be offset or larger.
    """
    x0, y0 = max(0, -offset_x), max(0, -offset_y)
    x1, y1 = min(width, canvas_width - offset_x), min(height, canvas_height - offset_y)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def crop_plane(data: bytes, width: int, bytes_per_pixel: int, x: int, y: int, w: int, h: int) -> bytes:
    """Rows ``y..y+h`` and columns ``x..x+w`` of a packed ``width``-wide image."""
    row = width * bytes_per_pixel
    if x == 0 and w == width:
        return data[y * row:(y + h) * row]
    start, length = x * bytes_per_pixel, w * bytes_per_pixel
    return b"".join(data[r * row + start:r * row + start + length] for r in range(y, y + h))
