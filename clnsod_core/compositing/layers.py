"""Editor layers that rebuild the composite non-destructively over the untouched original.

Stack, bottom to top: the original photo, the new sky masked by the matte, and a "foreground
lighting" layer. The lighting layer is the *least opaque* layer that turns "sky over original"
into the composite (sky over the recoloured/relit foreground), so it is fully transparent
wherever harmonisation changes nothing and the user can fade it with the layer's opacity.
Everything is computed from the 8-bit values the editor will hold, so the editor's stack
matches ``clnsod replace``'s composite to within 8-bit rounding.
"""

from __future__ import annotations

import numpy as np

from clnsod_core.arrays import to_u8

# Differences at or below this (in 0..1) are rounding noise, not harmonisation: no lighting there.
_NOISE = 1.5 / 255
_STRIP_PIXELS = 2_000_000


def sky_over_original(original: np.ndarray, sky: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """What an editor shows for the sky layer (alpha = matte) over the original: float32 in [0, 1]."""
    m = matte.astype(np.float32)[..., None] / 255
    return (sky.astype(np.float32) * m + original.astype(np.float32) * (1 - m)) / 255


def lighting_layer(original: np.ndarray, sky: np.ndarray, matte: np.ndarray, composite: np.ndarray) -> np.ndarray:
    """RGBA uint8 (straight alpha) that, normal-blended over "sky over original", gives ``composite``.

    original, sky, composite: (H, W, 3) uint8; matte: (H, W) uint8, 255 = sky.
    For each pixel the needed alpha is the smallest one that keeps the layer colour within
    [0, 1] in every channel; it is rounded up to the next 8-bit step so the colour stays in range.
    """
    h, w = matte.shape
    out = np.zeros((h, w, 4), np.uint8)
    rows = max(1, _STRIP_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):
        sl = slice(y0, min(h, y0 + rows))
        below = sky_over_original(original[sl], sky[sl], matte[sl])
        diff = composite[sl].astype(np.float32) / 255 - below
        diff[np.abs(diff) <= _NOISE] = 0.0
        darken = np.where(diff < 0, -diff / np.maximum(below, 1e-6), 0.0)
        brighten = np.where(diff > 0, diff / np.maximum(1 - below, 1e-6), 0.0)
        alpha = np.clip(np.maximum(darken, brighten).max(axis=-1), 0.0, 1.0)
        alpha_u8 = np.ceil(alpha * 255 - 1e-4).astype(np.uint8)
        a = alpha_u8.astype(np.float32)[..., None] / 255
        colour = np.where(a > 0, below + diff / np.maximum(a, 1e-6), 0.0)
        to_u8(colour, out=out[sl, :, :3])
        out[sl, :, 3] = alpha_u8
    return out


def normal_blend(below: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """8-bit "normal" blend of a straight-alpha RGBA layer over an RGB image, as editors do."""
    a = layer[..., 3:4].astype(np.float32) / 255
    mixed = layer[..., :3].astype(np.float32) * a + below.astype(np.float32) * (1 - a)
    return (mixed + 0.5).astype(np.uint8)
