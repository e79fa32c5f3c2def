"""Array conversions shared by every stage (one definition of how floats become 8- or 16-bit values)."""

from __future__ import annotations

import numpy as np

_BAND_VALUES = 6_000_000  # values converted at once: a 100 MP matte needs no full-size float temporaries


def to_u8(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Floats in [0, 1] -> uint8 (x * 255, rounded half up); out-of-range values are clipped, NaN becomes 0.

    Works in bands of rows, so converting a full-resolution matte or sky costs little extra memory."""
    return _quantise(values, np.dtype(np.uint8), out)


def to_u16(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Floats in [0, 1] -> uint16 (x * 65535, rounded half up), like ``to_u8``."""
    return _quantise(values, np.dtype(np.uint16), out)


def unit_scale(dtype: np.dtype) -> float:
    """The value that means full intensity for a photo's dtype: 255, 65535, or 1 for floats."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype.kind == "f":
        return 1.0
    raise TypeError(f"photos are uint8, uint16 or float arrays, not {dtype}")


def from_unit(values: np.ndarray, dtype: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """Floats in [0, 1] -> a photo of ``dtype`` (uint8 or uint16)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise TypeError(f"photos are written as uint8 or uint16, not {dtype}")
    return _quantise(values, dtype, out)


def scale_channels(image: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``image`` (..., W, 3) float32 times per-channel ``factors`` (3,), in place. A contiguous image is
    multiplied row by row by the factors repeated along a row (R, G, B, R, ...): numpy broadcasting a
    (3,) factor runs an inner loop of length 3, ~15x slower, for the same values."""
    factors = np.asarray(factors, image.dtype)
    if not image.flags.c_contiguous or image.ndim < 2:
        return np.multiply(image, factors, out=image)
    flat = image.reshape(-1, image.shape[-2] * 3)  # a view
    flat *= np.tile(factors, image.shape[-2])
    return image


def as_u8(image: np.ndarray) -> np.ndarray:
    """An 8-bit version of a photo of any depth (the array itself when it is already uint8)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        out = np.empty(image.shape, np.uint8)
        for y0, y1 in _bands(image):
            part = image[y0:y1].astype(np.uint32)
            part += 128
            part //= 257  # x * 255 / 65535 rounded: exact in integers
            out[y0:y1] = part
        return out
    return to_u8(image)


def _bands(values: np.ndarray) -> list[tuple[int, int]]:
    if values.ndim < 2 or values.shape[0] == 0:
        return [(0, values.shape[0] if values.ndim else 0)]
    rows = max(1, _BAND_VALUES // max(1, values[0].size))
    return [(y0, min(values.shape[0], y0 + rows)) for y0 in range(0, values.shape[0], rows)]


def _quantise(values: np.ndarray, dtype: np.dtype, out: np.ndarray | None) -> np.ndarray:
    values = np.asarray(values)
    if out is None:
        out = np.empty(values.shape, dtype)
    if values.ndim < 2 or values.shape[0] == 0:
        out[...] = _convert(values, dtype)
        return out
    for y0, y1 in _bands(values):
        out[y0:y1] = _convert(values[y0:y1], dtype)
    return out


def _convert(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    top = float(np.iinfo(dtype).max)
    scaled = values * np.float32(top) if values.dtype == np.float32 else values * top
    scaled += 0.5
    np.fmax(scaled, 0, out=scaled)  # fmax also turns NaN into 0 (nan_to_num costs 4x more)
    np.minimum(scaled, top, out=scaled)
    return scaled.astype(dtype)  # truncation after +0.5: round half up
