"""HDR video (PQ or HLG, BT.2020) to SDR BT.709 for processing and an 8-bit H.264 output.

The network and the compositing work on display-referred SDR pictures, and a yuv420p H.264 file is
SDR: HDR frames are turned into light (SMPTE ST 2084 or ARIB STD-B67 / BT.2100), scaled so the
BT.2408 reference white (203 nits) is SDR white, converted from BT.2020 to BT.709 primaries, kept up to
3/4 of that white and compressed above it by an extended Reinhard curve on luminance (hue kept), and encoded with BT.709's
display gamma (BT.1886, 2.4).
"""

from __future__ import annotations

import numpy as np

PQ, HLG = 16, 18  # FFmpeg's AVColorTransferCharacteristic values
HDR_TRANSFERS = (PQ, HLG)
REFERENCE_WHITE_NITS = 203.0
HLG_PEAK_NITS = 1000.0
PQ_PEAK_NITS = 1000.0  # mastering peaks above this are rare; brighter highlights compress further
KNEE = 0.75  # luminance (1 = reference white) up to which the picture is kept as it is
BT2020_TO_BT709 = np.array([[1.6605, -0.5876, -0.0728],
                            [-0.1246, 1.1329, -0.0083],
                            [-0.0182, -0.1006, 1.1187]], np.float32)
LUMA_709 = np.array([0.2126, 0.7152, 0.0722], np.float32)
LUMA_2020 = np.array([0.2627, 0.6780, 0.0593], np.float32)


def pq_to_nits(signal: np.ndarray) -> np.ndarray:
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    p = np.power(np.clip(signal, 0, 1), 1 / m2)
    return 10000.0 * np.power(np.maximum(p - c1, 0) / (c2 - c3 * p), 1 / m1)


def hlg_to_nits(signal: np.ndarray) -> np.ndarray:
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    e = np.clip(signal, 0, 1)
    scene = np.where(e <= 0.5, e * e / 3, (np.exp((e - c) / a) + b) / 12)
    luma = np.maximum(scene @ LUMA_2020, 1e-6)[..., None]
    return HLG_PEAK_NITS * scene * np.power(luma, 0.2)  # the BT.2100 OOTF with system gamma 1.2


def _reinhard(x: np.ndarray, white: float) -> np.ndarray:
    """Extended Reinhard: slope 1 at 0, ``white`` -> 1."""
    return x * (1 + x / (white * white)) / (1 + x)


def tone_map_to_sdr(rgb16: np.ndarray, transfer: int) -> np.ndarray:
    """(H, W, 3) uint16 BT.2020 RGB in the HDR signal -> uint8 SDR BT.709 RGB."""
    signal = rgb16.astype(np.float32) / 65535.0
    nits = pq_to_nits(signal) if transfer == PQ else hlg_to_nits(signal)
    linear = (nits / REFERENCE_WHITE_NITS).astype(np.float32) @ BT2020_TO_BT709.T
    np.maximum(linear, 0, out=linear)
    luma = linear @ LUMA_709
    white = (HLG_PEAK_NITS if transfer == HLG else PQ_PEAK_NITS) / REFERENCE_WHITE_NITS
    target = np.where(luma <= KNEE, luma, KNEE + (1 - KNEE) * _reinhard((luma - KNEE) / (1 - KNEE),
                                                                           (white - KNEE) / (1 - KNEE)))
    gain = (target / np.maximum(luma, 1e-6))[..., None]
    sdr = np.clip(linear * gain, 0, 1)
    return np.round(np.power(sdr, 1 / 2.4) * 255.0).astype(np.uint8)
