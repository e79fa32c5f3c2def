"""Horizon haze: distant land near the horizon takes on the new sky's atmosphere.

Atmospheric perspective: the farther a hill, the more air lies between it and the camera, and the
more it takes the colour of the sky near the horizon. In a photo, distance grows towards the sky
line; so the haze is strongest just below each column's sky line and fades downwards, and it is
weaker where the land has strong local contrast (near, detailed things are not hazy). Its colour is
the new sky's own colour just above the sky line, column by column. The result is an overlay the
replacement blends over the foreground and the editors get as a ``Horizon haze`` layer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from clnsod_core.compositing.compose import SkyRegion
from clnsod_core.compositing.fields import (
    SmallCopy,
    blur,
    local_deviation,
    luma,
    smoothstep,
    to_photo_size,
)
from clnsod_core.compositing.overlay import Overlay
from clnsod_core.masking.matte import readonly_view

MAX_OPACITY = 0.75  # at --haze 1, right at the sky line
DEPTH = 0.12  # the haze falls to 1/e this far below the sky line (share of the photo height)
COLOUR_BAND = 0.04  # the haze colour is the new sky's mean over this band above the sky line


def sky_line_per_column(matte: torch.Tensor) -> torch.Tensor | None:
    """Row just below the lowest sky pixel of each column, (w,) float, filled in across columns
    without sky and smoothed; None without sky."""
    h, w = matte.shape
    sky = matte >= 0.5
    has_sky = sky.any(dim=0)
    if not bool(has_sky.any()):
        return None
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    lowest = torch.where(sky, rows + 1, torch.zeros_like(rows)).amax(dim=0)
    columns = torch.arange(w, dtype=torch.float32)
    known = torch.nonzero(has_sky)[:, 0]
    filled = torch.from_numpy(np.interp(columns.numpy(), known.float().numpy(), lowest[known].numpy()).astype(np.float32))
    return blur(filled[None, None], max(1, w // 100))[0, 0]


def haze_overlay(small: SmallCopy, matte: np.ndarray, sky: SkyRegion, amount: float) -> Overlay | None:
    """The new sky's horizon colour over the distant land of the photo whose ``fields.small_copy`` is
    ``small``; ``matte`` (H, W) float, ``sky`` the placed new sky. None at ``amount`` 0 or without sky."""
    if amount <= 0:
        return None
    img, small_matte, scale = small
    line = sky_line_per_column(small_matte)
    if line is None:
        return None
    _, hs, ws = img.shape
    rows = torch.arange(hs, dtype=torch.float32)[:, None]
    below = (rows - line[None]).clamp(min=0) / (DEPTH * hs)
    brightness = luma(img)
    contrast = local_deviation(brightness, max(1, ws // 100)) / (blur(brightness[None], max(1, ws // 100))[0] + 0.05)
    alpha_small = torch.exp(-below) * (1 - 0.8 * smoothstep(0.05, 0.3, contrast)) * (rows >= line[None] - 1)
    h, w = matte.shape
    alpha = to_photo_size(alpha_small[None, None], scale, h, w)[0, 0]
    alpha = (alpha * (amount * MAX_OPACITY) * (1 - readonly_view(matte))).clamp(0, 1)
    # The haze colour: the new sky just above each column's sky line (full-resolution columns).
    wk = round(ws / scale)  # the columns the small copy covers; the few dropped ones repeat the last
    line_full = F.interpolate(line[None, None], size=wk, mode="linear", align_corners=False)
    line_full = F.pad(line_full, (0, w - wk), mode="replicate")[0, 0] / scale
    band = max(1, round(COLOUR_BAND * h))
    top = (line_full - band).clamp(0, h - 1).long()
    bottom = line_full.clamp(1, h).long()
    first, last = int(top.min()), int(bottom.max())  # only the rows some column's band covers
    rows = readonly_view(np.ascontiguousarray(sky.band(slice(first, last))))
    cumulative = torch.cat([torch.zeros(1, w, 3), rows.cumsum(dim=0)])
    columns = torch.arange(w)
    colour = (cumulative[bottom - first, columns] - cumulative[top - first, columns]) / (bottom - top).clamp(min=1)[:, None]
    colour = blur(colour.T[:, None], max(1, w // 100))[:, 0].T.clamp(0, 1)  # (w, 3), smooth along the horizon
    return Overlay(np.broadcast_to(colour.numpy()[None], (h, w, 3)), alpha.numpy())  # one colour per column
