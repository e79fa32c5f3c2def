"""Array conversions shared by every stage (one definition of how floats become 8-bit values)."""

from __future__ import annotations

import numpy as np

_BAND_VALUES = 6_000_000  # values converted at once: a 100 MP matte needs no full-size float temporaries


def to_u8(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Floats in [0, 1] -> uint8 (x * 255, rounded half up); out-of-range values are clipped, NaN becomes 0.

    Works in bands of rows, so converting a full-resolution matte or sky costs little extra memory."""
    values = np.asarray(values)
    if out is None:
        out = np.empty(values.shape, np.uint8)
    if values.ndim < 2 or values.shape[0] == 0:
        out[...] = _convert(values)
        return out
    rows = max(1, _BAND_VALUES // max(1, values[0].size))
    for y0 in range(0, values.shape[0], rows):
        out[y0 : y0 + rows] = _convert(values[y0 : y0 + rows])
    return out


def _convert(values: np.ndarray) -> np.ndarray:
    scaled = values * 255
    scaled += 0.5
    np.fmax(scaled, 0, out=scaled)  # fmax also turns NaN into 0 (nan_to_num costs 4x more)
    np.minimum(scaled, 255, out=scaled)
    return scaled.astype(np.uint8)  # truncation after +0.5: round half up
