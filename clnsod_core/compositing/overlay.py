"""Overlays (reflection, horizon haze): straight-alpha layers over the composite, as editors stack them.

An overlay is turned into an RGBA layer at the photo's depth first, and the composite is that
layer normal-blended over the composite below it, so a stack of editor layers equals the composite
to rounding at that depth, as the sky and lighting layers do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clnsod_core.arrays import from_unit, unit_scale

_STRIP_PIXELS = 2_000_000


@dataclass(frozen=True)
class Overlay:
    """A layer over the composite: straight-alpha colour, both float32 in [0, 1], full size."""

    colour: np.ndarray  # (H, W, 3), possibly a read-only broadcast view (haze: one colour per column)
    alpha: np.ndarray  # (H, W)

    def layer(self, dtype: np.dtype) -> np.ndarray:
        """(H, W, 4) straight-alpha RGBA of ``dtype`` (uint8 or uint16); colour is 0 where alpha is."""
        h, w = self.alpha.shape
        out = np.empty((h, w, 4), dtype)
        rows = max(1, _STRIP_PIXELS // max(w, 1))
        for y0 in range(0, h, rows):
            sl = slice(y0, min(h, y0 + rows))
            alpha = self.alpha[sl, :, None]
            from_unit(np.where(alpha > 0, self.colour[sl], 0.0), dtype, out=out[sl, :, :3])
            from_unit(alpha, dtype, out=out[sl, :, 3:])
        return out


def blend_layers(below: np.ndarray, layers: list[np.ndarray]) -> np.ndarray:
    """``layers`` (straight-alpha RGBA, the dtype of ``below``) normal-blended in order over ``below``
    (H, W, 3); computed in float32 and rounded once."""
    if not layers:
        return below
    top = np.float32(unit_scale(below.dtype))
    h, w = below.shape[:2]
    out = np.empty_like(below)
    rows = max(1, _STRIP_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):
        sl = slice(y0, min(h, y0 + rows))
        mixed = below[sl].astype(np.float32) / top
        for layer in layers:
            alpha = layer[sl, :, 3:].astype(np.float32) / top
            mixed += (layer[sl, :, :3].astype(np.float32) / top - mixed) * alpha
        from_unit(mixed, below.dtype, out=out[sl])
    return out
