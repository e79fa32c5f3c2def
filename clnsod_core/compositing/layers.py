"""Editor layers that rebuild the composite non-destructively over the untouched original.

Stack, bottom to top: the original photo, the new sky masked by the matte, and a "foreground
lighting" layer. The lighting layer is the *least opaque* layer that turns "sky over original"
into the composite (sky over the recoloured/relit foreground), so it is fully transparent
wherever harmonisation changes nothing and the user can fade it with the layer's opacity.
Everything is computed from the values the editor will hold (8 or 16 bits per channel, the
photo's depth; the matte is 8-bit, as editors' masks are), so the editor's stack matches
``clnsod replace``'s composite to within rounding at that depth.
"""

from __future__ import annotations

import numpy as np

from clnsod_core.arrays import from_unit, unit_scale

# Differences at or below this many steps of the layer's depth are rounding noise, not harmonisation.
_NOISE_STEPS = 1.5
_STRIP_PIXELS = 2_000_000


def sky_over_original(original: np.ndarray, sky: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """What an editor shows for the sky layer (alpha = 8-bit matte) over the original: float32 in [0, 1]."""
    m = matte.astype(np.float32)[..., None] / 255
    return (sky.astype(np.float32) * m + original.astype(np.float32) * (1 - m)) / np.float32(unit_scale(original.dtype))


def lighting_layer(original: np.ndarray, sky: np.ndarray, matte: np.ndarray, composite: np.ndarray) -> np.ndarray:
    """RGBA (straight alpha) that, normal-blended over "sky over original", gives ``composite``.

    original, sky, composite: (H, W, 3), all uint8 or all uint16 (the result has that dtype);
    matte: (H, W) uint8, 255 = sky. For each pixel the needed alpha is the smallest one that keeps
    the layer colour within [0, 1] in every channel; it is rounded up to the next step of the
    layer's depth so the colour stays in range.
    """
    h, w = matte.shape
    top = unit_scale(original.dtype)
    noise = _NOISE_STEPS / top
    out = np.zeros((h, w, 4), original.dtype)
    rows = max(1, _STRIP_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):
        sl = slice(y0, min(h, y0 + rows))
        below = sky_over_original(original[sl], sky[sl], matte[sl])
        diff = composite[sl].astype(np.float32) / np.float32(top) - below
        diff[np.abs(diff) <= noise] = 0.0
        darken = np.where(diff < 0, -diff / np.maximum(below, 1e-6), 0.0)
        brighten = np.where(diff > 0, diff / np.maximum(1 - below, 1e-6), 0.0)
        alpha = np.clip(np.maximum(darken, brighten).max(axis=-1), 0.0, 1.0)
        alpha_q = np.ceil(alpha * top - 1e-4).astype(original.dtype)
        a = alpha_q.astype(np.float32)[..., None] / np.float32(top)
        colour = np.where(a > 0, below + diff / np.maximum(a, 1e-6), 0.0)
        from_unit(colour, original.dtype, out=out[sl, :, :3])
        out[sl, :, 3] = alpha_q
    return out


def normal_blend(below: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """8-bit "normal" blend of a straight-alpha RGBA layer over an RGB image, as editors do."""
    a = layer[..., 3:4].astype(np.float32) / 255
    mixed = layer[..., :3].astype(np.float32) * a + below.astype(np.float32) * (1 - a)
    return (mixed + 0.5).astype(np.uint8)
