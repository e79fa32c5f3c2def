"""Camera-raw test files made from real photos: Bayer-mosaiced linear sensor data in a DNG.

The photo's sRGB values are linearised, given a camera-like white balance (the green channel
is the most sensitive, as on real sensors), sampled through an RGGB colour filter array at 12
bits with a black level, and stored with the DNG tags LibRaw needs (CFA layout, colour matrix,
as-shot neutral, black/white level, orientation). LibRaw then develops it like a camera file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

# XYZ (D65) -> linear sRGB: the DNG ColorMatrix1 of a "camera" whose raw RGB is linear sRGB.
_XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                         [-0.9692660, 1.8760108, 0.0415560],
                         [0.0556434, -0.2040259, 1.0572252]])
SENSOR_GAIN = np.array([0.48, 1.0, 0.66])  # raw response to a white patch (as-shot neutral)
BLACK, WHITE = 256, 4095


def _rational(values: np.ndarray) -> list[int]:
    """Numerator, denominator pairs (4 decimals), the layout of TIFF (S)RATIONAL values."""
    out: list[int] = []
    for v in values.ravel():
        out += [int(round(float(v) * 10000)), 10000]
    return out


def write_dng(path: Path, rgb: np.ndarray, orientation: int = 1) -> Path:
    """A 12-bit RGGB DNG of the (H, W, 3) uint8 sRGB ``rgb`` (H and W even); ``orientation`` is the
    TIFF orientation tag the raw carries (6 = the camera was turned: develop must rotate)."""
    c = rgb.astype(np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) * SENSOR_GAIN * 0.9
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    mosaic = np.empty((h, w), np.float64)
    mosaic[0::2, 0::2] = linear[0:h:2, 0:w:2, 0]  # R
    mosaic[0::2, 1::2] = linear[0:h:2, 1:w:2, 1]  # G
    mosaic[1::2, 0::2] = linear[1:h:2, 0:w:2, 1]  # G
    mosaic[1::2, 1::2] = linear[1:h:2, 1:w:2, 2]  # B
    noise = np.random.default_rng(0).normal(0, 1.5, mosaic.shape)  # a little read noise, like a sensor
    raw = np.clip(BLACK + mosaic * (WHITE - BLACK) + noise, 0, WHITE).astype(np.uint16)
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "CLN-SOD test camera", True),  # UniqueCameraModel
        (271, "s", 0, "CLN-SOD", True),  # Make
        (272, "s", 0, "test camera", True),  # Model
        (274, "H", 1, orientation, True),  # Orientation
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50714, "H", 1, BLACK, True),  # BlackLevel
        (50717, "H", 1, WHITE, True),  # WhiteLevel
        (50721, "2i", 9, _rational(_XYZ_TO_SRGB), True),  # ColorMatrix1 (SRATIONAL)
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, _rational(SENSOR_GAIN), True),  # AsShotNeutral (RATIONAL)
    ]
    tifffile.imwrite(path, raw, photometric=32803, compression=None, subfiletype=0, extratags=tags,
                     metadata=None, software="CLN-SOD tests")
    return path
