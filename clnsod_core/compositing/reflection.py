"""Reflections: calm water that mirrors the old sky gets the mirrored new sky.

Found, not assumed: the waterline is the topmost row about which the photo is clearly
mirror-symmetric (luminance structure, column by column, and colour of the rows above against the
rows below), and only if there is such a row is there reflecting water at all. Below it, a pixel
reflects the sky when its mirror image above the waterline is sky and it has that sky's hue at a
plausible fraction of its brightness, about as smoothly; the water must be one calm sheet that
mirrors the sky nearly wherever its mirror image is sky (not waves or surf). Land, boats and reeds
do not reflect, and keep their pixels.

The new reflection keeps what the water did to the old one: its brightness relative to the mirrored
old sky (Fresnel reflectance, the water's darkness; so it fades towards the camera as the real one
did), its ripples (the new sky is sampled at rows displaced by the water's own fine texture, and
shaded by it) and a little desaturation. The result is an overlay (colour and alpha) that the
replacement blends over the foreground and the editors get as a ``Reflection`` layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clnsod_core.compositing.compose import SkyRegion
from clnsod_core.compositing.fields import (
    SmallCopy,
    blur,
    local_deviation,
    luma,
    max_filter,
    smoothstep,
    to_photo_size,
)
from clnsod_core.compositing.overlay import Overlay
from clnsod_core.masking.matte import readonly_view

BAND = 1 / 12  # height of the bands compared above and below a candidate waterline (share of the photo)
MIN_SYMMETRY = 0.65  # luminance correlation of the mirrored bands needed to call it reflecting water
MIN_DEEP_SYMMETRY = 0.55  # the same over bands twice as deep
MIN_MIRRORED_COLUMNS = 0.5  # and column by column: this share of columns must be mirror images
MIN_SPAN = 0.3  # the water must reach across this share of the width just below the waterline
MIN_COVERAGE = 0.5  # share of the water below the waterline that must mirror the sky (calm, not waves)
MIN_HUE_MATCH = 0.92  # mean cosine of the mirrored rows' colours (reflections keep the sky's hue)
MIN_WATER_SHARE = 0.01  # less reflecting water than this share of the frame: no reflection
RIPPLE_ROWS = 0.004  # largest ripple displacement, as a fraction of the photo height
DESATURATE = 0.15
HOLE_SIZE = 0.08  # gaps in the water sheet up to this share of the width are filled (reed beds, boats)
MISMATCH = (0.2, 0.45)  # relative difference from the expected old reflection: water below, reeds above


@dataclass(frozen=True)
class Waterline:
    row: int  # in the small copy's rows
    symmetry: float  # luminance correlation of the mirrored bands
    hue_match: float


def _connected_to_waterline(weight: torch.Tensor, row: int, level: float = 0.3) -> torch.Tensor:
    """1 where ``weight`` > ``level`` is connected to the rows just below ``row`` (where the water's
    reflection of the sky starts).

    Water is one sheet that starts at the waterline; a grey pier or a wet road further down that
    happens to look like the reflected sky is not connected to it (boats leave the sheet connected
    around them). Row by row, a run of water pixels is reached when it touches a reached pixel of
    the row before (diagonals included); a downward, an upward and another downward sweep follow the
    sheet around obstacles.
    """
    inside = (weight > level).numpy()
    h, w = inside.shape
    reached = np.zeros_like(inside)
    seed = slice(row, min(h, row + max(3, h // 40)))
    reached[seed] = inside[seed]
    for order in (range(row + 1, h), range(h - 2, row - 1, -1), range(row + 1, h)):
        step = 1 if order.step > 0 else -1
        for y in order:
            near = reached[y - step]
            near = near | np.concatenate([near[1:], [False]]) | np.concatenate([[False], near[:-1]])
            runs = np.cumsum(np.concatenate([[inside[y, 0]], inside[y, 1:] & ~inside[y, :-1]]))
            touched = np.zeros(w + 1, bool)
            touched[runs[inside[y] & near]] = True
            reached[y] |= inside[y] & touched[runs]
    return torch.from_numpy(reached.astype(np.float32))


def _colour_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine between the RGB vectors (dim 0) of two images: 1 = the same hue and saturation."""
    return (a * b).sum(0) * torch.rsqrt((a * a).sum(0) * (b * b).sum(0) + 1e-12)


def _symmetry(luma: torch.Tensor, row: int, band: int) -> float:
    """Correlation of the ``band`` rows above ``row`` (mirrored) with the ``band`` rows below it."""
    above, below = luma[row - band : row].flip(0), luma[row : row + band]
    a, b = above - above.mean(), below - below.mean()
    return float((a * b).sum() / ((a.pow(2).sum() * b.pow(2).sum()).sqrt() + 1e-6))


def _mirrored_columns(luma: torch.Tensor, row: int, band: int) -> float:
    """Share of columns whose ``band`` pixels above ``row`` (mirrored) correlate (> 0.5) with those below."""
    above, below = luma[row - band : row].flip(0), luma[row : row + band]
    a, b = above - above.mean(dim=0), below - below.mean(dim=0)
    correlation = (a * b).sum(dim=0) / ((a.pow(2).sum(dim=0) * b.pow(2).sum(dim=0)).sqrt() + 1e-6)
    return float((correlation > 0.5).float().mean())


def find_waterline(img: torch.Tensor, matte: torch.Tensor) -> Waterline | None:
    """The waterline of ``img`` (3, h, w) below its sky, if it has one: the topmost row about which the
    photo is clearly mirror-symmetric over a band of BAND of the height, over one twice as deep (a real
    reflection continues; a chance likeness of two strips of facade or rock does not), column by column,
    and in colour."""
    h = img.shape[1]
    brightness = luma(img)
    sky_rows = (matte > 0.5).float().mean(dim=1)
    below_sky = int(torch.nonzero(sky_rows > 0.5).max()) + 1 if bool((sky_rows > 0.5).any()) else 0
    band = max(6, round(h * BAND))
    first = max(below_sky, band)
    if first >= h - band:
        return None
    # Every candidate row at once: windows of ``band`` rows starting at each row.
    windows = brightness.unfold(0, band, 1)  # (h - band + 1, w, band): rows r .. r + band - 1
    below = windows[first : h - band + 1]
    above = windows[first - band : h - 2 * band + 1].flip(-1)  # rows r - 1 down to r - band
    a = above - above.mean(dim=(1, 2), keepdim=True)
    b = below - below.mean(dim=(1, 2), keepdim=True)
    symmetry = (a * b).sum(dim=(1, 2)) / ((a.pow(2).sum(dim=(1, 2)) * b.pow(2).sum(dim=(1, 2))).sqrt() + 1e-6)
    # The waterline is the topmost row that passes every test: the structures mirrored inside the
    # reflection (a reflected snow line, say) can be as symmetric as the waterline itself.
    peaks = (symmetry >= MIN_SYMMETRY) & (symmetry == F.max_pool1d(symmetry[None], band | 1, 1, band // 2)[0])
    for index in torch.nonzero(peaks)[:, 0].tolist():
        row = first + index
        ca, cb = img[:, row - band : row].flip(1), img[:, row : row + band]
        cosine = float(_colour_cosine(ca, cb).mean())
        deep = min(2 * band, row, h - row)
        if (cosine >= MIN_HUE_MATCH and deep > band and _symmetry(brightness, row, deep) >= MIN_DEEP_SYMMETRY
                # column by column too: a likeness of row averages (facades, fog, a snowy slope) is no mirror
                and _mirrored_columns(brightness, row, deep) >= MIN_MIRRORED_COLUMNS):
            return Waterline(row, float(symmetry[index]), cosine)
    return None


def water_sheet(img: torch.Tensor, matte: torch.Tensor, row: int) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """(sheet, gain, start, coverage) for the sky mirrored about ``row``: how surely each pixel belongs
    to the sheet of water that reflects the sky (holes such as a reed bed filled in:
    ``reflection_overlay`` tells reeds from water per pixel), the water's brightness relative to the
    mirrored sky, (h, w) each, the first row where the water shows the sky's reflection, and the share
    of the rows below the waterline whose mirror image is sky that do reflect it."""
    _, h, w = img.shape
    smooth = blur(img, 1)
    rows = torch.arange(h)
    source = (2 * row - rows).clamp(0, h - 1)
    valid = ((rows >= row) & (2 * row - rows >= 0)).float()[:, None]
    mirrored, sky_above = smooth[:, source], matte[source] * valid
    cosine = _colour_cosine(smooth, mirrored)
    here, there = luma(smooth), luma(mirrored)
    ratio = here / (there + 1e-3)
    # Water mirroring a smooth sky is about as smooth as that sky; planks, rocks and grass are not
    # (in a black-and-white photo, texture is all that tells a grey pier from grey water).
    texture = torch.maximum(*(local_deviation(here, r) - ratio.clamp(0, 1.2) * local_deviation(there, r)
                              for r in (1, max(2, w // 160))))  # fine and coarse (wide planks up close)
    weight = (sky_above * smoothstep(0.9, 0.985, cosine) * smoothstep(0.04, 0.12, ratio)
              * (1 - smoothstep(1.15, 1.5, ratio)) * (1 - smoothstep(0.012, 0.035, texture)))
    # The sheet is seeded where the mirror first shows sky: right below the waterline the water shows
    # the far shore, and the sky's reflection starts as far below it as the shore is high.
    shows_sky = torch.nonzero((sky_above > 0.5).float().mean(dim=1) > 0.3)
    start = int(shows_sky.min()) if shows_sky.numel() else row
    weight = weight * _connected_to_waterline(weight, start)
    # Calm water mirrors the sky nearly everywhere its mirror image is sky; waves, surf and glitter
    # only in scattered patches.
    coverage = float((weight > 0.3).float().sum() / ((sky_above > 0.5).float().sum() + 1))
    gain = _filled_ratio(here * weight, there * weight, weight, w)
    # Close the sheet (fill holes up to HOLE_SIZE across) on blocks of a quarter of the closing radius
    # (a wide max filter at full size is slow; the sheet's edge is refined per pixel later), keep it
    # below the waterline, soften it.
    radius = max(2, round(w * HOLE_SIZE / 2))
    block = max(1, radius // 4)
    water = (weight > 0.3).float()[None, None]
    coarse = F.max_pool2d(water, block, ceil_mode=True)
    closed = -max_filter(-max_filter(coarse, radius // block), radius // block)
    sheet = torch.maximum(water, F.interpolate(closed, scale_factor=block, mode="nearest")[..., :h, :w])
    sheet = blur(sheet[0], max(1, w // 200))[0] * valid * (matte[source] > 0.25).float()
    return sheet, gain, start, coverage


def _filled_ratio(num: torch.Tensor, den: torch.Tensor, support: torch.Tensor, w: int) -> torch.Tensor:
    """Local ratio of two weighted sums, from a wider neighbourhood where the local one has no support."""
    near, far = max(1, w // 100), max(2, w // 12)
    local = (blur(num[None], near)[0] + 1e-4) / (blur(den[None], near)[0] + 1e-3)
    wide = (blur(num[None], far)[0] + 1e-4) / (blur(den[None], far)[0] + 1e-3)
    return torch.where(blur(support[None], near)[0] > 0.2, local, wide).clamp(0.02, 1.1)


def reflection_overlay(photo: np.ndarray, small: SmallCopy, matte: np.ndarray, sky: SkyRegion,
                       strength: float) -> Overlay | None:
    """The mirrored new sky over the water of ``photo`` (uint8 sRGB guide, (H, W, 3)), found on its
    ``fields.small_copy`` ``small``; ``matte`` (H, W) float sky matte, ``sky`` the placed new sky.
    None when no reflecting water is found."""
    if strength <= 0:
        return None
    img, small_matte, scale = small
    line = find_waterline(img, small_matte)
    if line is None:
        return None
    sheet, gain, start, coverage = water_sheet(img, small_matte, line.row)
    first_rows = sheet[start : start + max(3, img.shape[1] // 20)]
    if (float(sheet.mean()) < MIN_WATER_SHARE or coverage < MIN_COVERAGE
            or float((first_rows > 0.5).any(dim=0).float().mean()) < MIN_SPAN):
        return None  # a lake or the sea spreads along the waterline; a window or a patch of rock does not
    h, w = matte.shape
    row = min(h - 1, round(line.row / scale))
    rows_with_water = torch.nonzero(sheet.amax(dim=1) > 0.01)
    top = max(row, int(rows_with_water.min() / scale) - 2)
    bottom = min(h, int((rows_with_water.max() + 1) / scale) + 2)
    band = slice(top, bottom)
    # The smooth fields (sheet, gain, the old sky seen in the mirror) come from the small copy.
    small_rows = torch.arange(img.shape[1])
    mirrored_old = img[:, (2 * line.row - small_rows).clamp(0, img.shape[1] - 1)]
    fields = torch.cat([sheet[None], gain[None], mirrored_old])[None]
    fields = to_photo_size(fields, scale, h, w)[0, :, band]
    sheet_full, gain_full, old_full = fields[0], fields[1], fields[2:]
    guide = readonly_view(photo[band]).permute(2, 0, 1).float() / 255
    brightness = luma(guide)
    # Per pixel, water looks like the old sky it mirrors at the water's brightness; reeds, posts and
    # boats in the water do not, and keep their pixels.
    expected = gain_full * luma(old_full)
    cosine = _colour_cosine(guide, old_full)
    mismatch = (brightness - expected).abs() / (expected + 0.03) + 2 * (1 - cosine)
    alpha = sheet_full * (1 - smoothstep(*MISMATCH, mismatch)) * (1 - readonly_view(matte[band]))
    if float(alpha.sum()) < MIN_WATER_SHARE * h * w:
        return None
    alpha = alpha * strength
    # The water's own fine texture: its ripples displace and shade the reflection.
    local = blur(brightness[None], max(2, w // 400))[0]
    detail = brightness - local
    water = alpha > 0.5
    spread = float(detail[water].std()) if int(water.sum()) > 1 else 0.0
    ripple = (detail / (spread + 1e-4)).clamp(-2.5, 2.5) * (RIPPLE_ROWS * h / 2.5)
    shading = (brightness / (local + 1e-3)).clamp(0.75, 1.25)
    mirror_rows = (2 * row - torch.arange(top, bottom, dtype=torch.float32))[:, None] + ripple
    # The rows the mirror reaches (a bilinear sample reads the row below its position too).
    reach = min(h, max(1, math.ceil(float(mirror_rows.max())) + 2))
    grid_y = (mirror_rows + 0.5) / reach * 2 - 1
    grid_x = ((torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1)[None].expand(bottom - top, w)
    source = readonly_view(np.ascontiguousarray(sky.band(slice(0, reach)))).permute(2, 0, 1)[None]
    reflected = F.grid_sample(source, torch.stack([grid_x, grid_y], dim=-1)[None], mode="bilinear",
                              padding_mode="border", align_corners=False)[0]
    colour = reflected * (gain_full * shading)[None]
    grey = luma(colour)[None]
    colour = (colour * (1 - DESATURATE) + grey * DESATURATE).clamp(0, 1)
    full_colour = np.zeros((h, w, 3), np.float32)
    full_alpha = np.zeros((h, w), np.float32)
    full_colour[band] = colour.permute(1, 2, 0).numpy()
    full_alpha[band] = alpha.clamp(0, 1).numpy()
    return Overlay(full_colour, full_alpha)
