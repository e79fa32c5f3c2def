"""Sky placement, foreground harmonisation and compositing (all at full resolution).

composite = matte * new_sky + (1 - matte) * harmonised_foreground (+ optional halo at the
sky line). Every stage works in float32 on arrays the size of the photo and never produces
NaN or inf: all divisions are guarded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clnsod_core.arrays import from_unit, scale_channels, unit_scale
from clnsod_core.masking.matte import readonly_view, resize_in_bands
from clnsod_core.options import check_part, defaults
from clnsod_core.runtime import run_beside

_EPS = 1e-4
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


_PLACEMENT = defaults("placement")
_HARMONISATION = defaults("harmonisation")


@dataclass(frozen=True)
class SkyPlacement:
    """Where and how the new sky goes; defaults and ranges of the user-facing fields are in options.py."""

    scale: float = _PLACEMENT["scale"]  # >= 1: zoom into the sky beyond "just covers the sky region"
    shift_x: float = _PLACEMENT["shift_x"]  # fraction of the photo width (positive = sky moves right)
    shift_y: float = _PLACEMENT["shift_y"]  # fraction of the photo height (positive = sky moves down)
    flip: bool = _PLACEMENT["flip"]
    brightness: float = _PLACEMENT["brightness"]  # exposure in stops
    temperature: float = _PLACEMENT["temperature"]  # cool (-) .. warm (+)

    def validate(self) -> None:
        check_part("placement", self.__dict__)


@dataclass(frozen=True)
class Harmonisation:
    """How the foreground is matched to the new sky; user-facing fields are declared in options.py."""

    recolour: float = _HARMONISATION["recolour"]  # pull the foreground's colour cast toward the new sky's
    relight: float = _HARMONISATION["relight"]  # match the foreground's brightness to the new sky's
    halo: float = _HARMONISATION["halo"]  # soft glow of sky colour over the foreground at the sky line
    reflection: float = _HARMONISATION["reflection"]  # the new sky mirrored in water that reflected the old
    haze: float = _HARMONISATION["haze"]  # distant land near the horizon toward the new sky's horizon colour
    halo_width: float = 0.02  # fraction of the photo's long side (not offered to users)

    def validate(self) -> None:
        check_part("harmonisation", self.__dict__)
        if not 0.001 <= self.halo_width <= 0.2:
            raise ValueError(f"halo width must be between 0.001 and 0.2, got {self.halo_width}")


def lowest_sky_line(matte: np.ndarray, threshold: float = 0.5) -> int:
    """Row index just below the lowest sky pixel (robust to a few stray pixels); 0 if no sky."""
    h, w = matte.shape
    step = max(1, h // 512)
    rows = (matte[::step] >= threshold).mean(axis=1)
    sky_rows = np.nonzero(rows > 0.002)[0]
    if sky_rows.size == 0:
        return 0
    return min(h, (int(sky_rows[-1]) + 1) * step)


def sky_region_height(height: int, sky_bottom: int) -> int:
    """Rows the new sky must cover: down to the lowest sky pixel, and at least a quarter of the photo."""
    return max(sky_bottom, height // 4, 1)


@dataclass(frozen=True)
class SkyRegion:
    """The placed new sky of a ``height``-row photo, held as the rows of its sky region: below them the
    region's last row repeats (it lies under the foreground, hidden by the matte). A full array would
    spend about half its memory on those repeats (70 MB of float32 for a 12 MP photo)."""

    rows: np.ndarray  # (r, W, 3) float32 in [0, 1], 1 <= r <= height
    height: int

    @classmethod
    def of(cls, sky: np.ndarray | SkyRegion) -> SkyRegion:
        """A full (H, W, 3) placed sky as a region of all its rows (or the region itself)."""
        return sky if isinstance(sky, SkyRegion) else cls(sky, sky.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, *self.rows.shape[1:])

    def band(self, rows: slice) -> np.ndarray:
        """Rows ``rows`` (step 1) of the full sky: a view when they lie in the region."""
        start, stop, _ = rows.indices(self.height)
        have = self.rows.shape[0]
        if stop <= have:
            return self.rows[start:stop]
        below = np.broadcast_to(self.rows[have - 1], (stop - max(start, have), *self.rows.shape[1:]))
        return below if start >= have else np.concatenate([self.rows[start:], below])

    def every(self, step: int) -> np.ndarray:
        """``full()[::step, ::step]``, without the full array."""
        return self.rows[np.minimum(np.arange(0, self.height, step), self.rows.shape[0] - 1), ::step]

    def full(self, convert: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """The (height, W, 3) array; ``convert`` (elementwise, e.g. to the photo's depth) is applied to
        the region's rows before they are repeated."""
        rows = self.rows if convert is None else convert(self.rows)
        out = np.empty((self.height, *rows.shape[1:]), rows.dtype)
        out[: len(rows)] = rows
        return _repeat_last_row(out, len(rows))


def place_sky(sky: np.ndarray, height: int, width: int, sky_bottom: int, placement: SkyPlacement) -> np.ndarray:
    """The sky image (uint8, uint16 or float32 in [0, 1]) scaled to cover the region above ``sky_bottom``
    (and the full width),
    its bottom edge anchored at ``sky_bottom``; returns (height, width, 3) float32 in [0, 1]."""
    return place_sky_region(sky, height, width, sky_bottom, placement).full()


def place_sky_region(sky: np.ndarray, height: int, width: int, sky_bottom: int, placement: SkyPlacement) -> SkyRegion:
    """``place_sky``, held as the rows the sky image covers."""
    placement.validate()
    sh, sw = sky.shape[:2]
    scale = np.float32(unit_scale(sky.dtype))
    region_h = sky_region_height(height, sky_bottom)
    cover = max(width / sw, region_h / sh) * placement.scale
    out_w, out_h = sw * cover, sh * cover
    # Output pixel (x, y) samples sky pixel ((x - left) / cover, (y - top) / cover).
    left = (width - out_w) / 2 + placement.shift_x * width
    top = region_h - out_h + placement.shift_y * height
    left = float(np.clip(left, width - out_w, 0.0))  # keep the photo covered horizontally
    top = float(min(top, 0.0))  # never leave a gap at the top
    src = readonly_view(np.ascontiguousarray(sky)).permute(2, 0, 1)  # (3, sh, sw) view, no copy
    # Resize only the part of the sky that lands on the photo (to within one sky pixel).
    x0, y0 = -left / cover, -top / cover  # sky coordinates of the photo's top-left corner
    sky_rows = max(1, min(height, round((sh - y0) * cover)))  # photo rows covered by the sky image
    cx0 = int(x0)
    cx1 = min(sw, max(cx0 + 1, int(np.ceil(x0 + width / cover))))  # columns in the (possibly mirrored) sky
    rows = slice(int(y0), max(int(y0) + 1, int(np.ceil(y0 + sky_rows / cover))))
    crop = src[:, rows, sw - cx1 : sw - cx0].flip(-1) if placement.flip else src[:, rows, cx0:cx1]
    # Filled a band of rows at a time: a 100 MP photo never holds more than the float32 result.
    out = np.empty((sky_rows, width, 3), np.float32)
    if tuple(crop.shape[1:]) == (sky_rows, width):  # already the photo's size (a preset rendered for it)
        bands: Iterable[tuple[int, int, torch.Tensor]] = [(0, sky_rows, crop)]  # (what resampling would give)
    else:
        bands = resize_in_bands(crop, sky_rows, width, antialias=cover < 1)
    for r0, r1, band in bands:
        part = out[r0:r1]
        part[...] = band.permute(1, 2, 0).numpy()
        if scale != 1:
            part /= scale
        _adjust_sky(part, placement)
    return SkyRegion(out, height)


def lands_pixel_for_pixel(placement: SkyPlacement) -> bool:
    """True when ``place_sky`` puts a sky the size of the photo's sky region (a preset rendered for
    it) on the photo pixel for pixel: default zoom, not mirrored, not moved up."""
    return placement.scale == 1 and placement.shift_y >= 0 and not placement.flip


def place_rendered_sky(render: Callable[[Callable[[], np.ndarray]], None], height: int, width: int,
                       sky_bottom: int, placement: SkyPlacement) -> SkyRegion:
    """What ``place_sky_region`` gives for a sky that ``lands_pixel_for_pixel``, made by ``render``
    straight into the rows it covers: ``render`` gets a function that allocates those rows ((rows,
    width, 3) float32) and returns them, to call when it first writes (after its own temporaries are
    made, so that they and the placed sky are not all held at once)."""
    placement.validate()
    rows = sky_region_height(height, sky_bottom)
    placed: list[np.ndarray] = []

    def allocate() -> np.ndarray:
        placed.append(np.empty((rows, width, 3), np.float32))
        return placed[0]

    render(allocate)
    _adjust_sky(placed[0], placement)
    return SkyRegion(placed[0], height)


def _repeat_last_row(sky: np.ndarray, rows: int) -> np.ndarray:
    """Below the sky image's bottom edge (row ``rows``), its last row repeated (hidden by the matte)."""
    if rows < sky.shape[0]:
        sky[rows:] = sky[rows - 1]
    return sky


def _adjust_sky(sky: np.ndarray, placement: SkyPlacement) -> np.ndarray:
    t = placement.temperature
    if placement.brightness == 0 and t == 0:  # the default: a resized [0, 1] sky needs no pass at all
        return sky
    gain = np.float32(2.0**placement.brightness)
    tint = np.array([1 + 0.15 * t, 1.0, 1 - 0.15 * t], np.float32)
    scale_channels(sky, gain * tint)
    return np.clip(sky, 0.0, 1.0, out=sky)


def _weighted_mean(image: np.ndarray | SkyRegion, weight: np.ndarray) -> np.ndarray:
    """Mean colour of (subsampled) ``image`` weighted by ``weight``; mid-grey if no weight."""
    step = max(1, int(np.sqrt(weight.size / 250_000)))
    sample = image.every(step) if isinstance(image, SkyRegion) else image[::step, ::step]
    img, wt = sample.reshape(-1, 3).astype(np.float32), weight[::step, ::step].reshape(-1)
    total = float(wt.sum())
    if total < _EPS:
        return np.full(3, 0.5, np.float32)
    mean = (img * wt[:, None]).sum(axis=0) / total
    return mean / np.float32(unit_scale(sample.dtype))


def foreground_gain(photo: np.ndarray, matte: np.ndarray, new_sky: np.ndarray | SkyRegion,
                    options: Harmonisation) -> np.ndarray:
    """Per-channel gain (3,) that recolours/relights the foreground toward the new sky."""
    options.validate()
    old = _weighted_mean(photo, matte)
    new = _weighted_mean(new_sky, matte if matte.sum() > _EPS else np.ones_like(matte))
    old_l, new_l = max(float(old @ LUMA), 0.02), max(float(new @ LUMA), 0.02)
    chroma = (new / new_l + _EPS) / (old / old_l + _EPS)
    chroma = np.clip(chroma, 0.6, 1.6)
    colour_gain = 1 + options.recolour * (chroma - 1)
    light = float(np.clip(np.sqrt(new_l / old_l), 0.5, 1.6))
    light_gain = 1 + options.relight * (light - 1)
    return (colour_gain * light_gain).astype(np.float32)


def _halo_bands(matte: np.ndarray, width_px: float, rows: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Soft band on the foreground side of the sky line (peak 1, ``width_px`` wide), ``rows`` rows at a
    time (the grown matte is upsampled per band)."""
    small_side = 512
    h, w = matte.shape
    scale = min(1.0, small_side / max(h, w))
    m = readonly_view(matte)[None, None]
    small = F.interpolate(m, scale_factor=scale, mode="area") if scale < 1 else m
    r = max(1, int(round(width_px * scale)))
    grown = F.avg_pool2d(F.pad(small, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)[0]
    for y0, y1, band in resize_in_bands(grown, h, w, band_pixels=rows * w):
        yield slice(y0, y1), np.clip(band[0].numpy() * 2, 0, 1) * (1 - matte[y0:y1])


def composite(photo: np.ndarray, matte: np.ndarray, new_sky: np.ndarray | SkyRegion, options: Harmonisation,
              gain: np.ndarray | None = None, foreground: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(composite, harmonised foreground), both of the photo's dtype (uint8 or uint16), for photo (H,W,3),
    matte (H,W) and sky (H,W,3) float32 (or its ``SkyRegion``); computed in float32, rounded once at the
    end. ``gain``: the foreground's per-channel gain, when not measured on this photo
    (``foreground_gain``); ``foreground=False`` skips the harmonised foreground (None then)."""
    new_sky = SkyRegion.of(new_sky)
    gain = foreground_gain(photo, matte, new_sky, options) if gain is None else np.asarray(gain, np.float32)
    h, w = matte.shape
    out = np.empty((h, w, 3), photo.dtype)
    lit = np.empty((h, w, 3), photo.dtype) if foreground else None
    scale = (gain / np.float32(unit_scale(photo.dtype))).astype(np.float32)
    rows = max(1, min(STRIP_ROWS, 1_000_000 // max(w, 1)))  # strips keep the float temporaries small (and in cache)
    strips = [slice(y0, min(h, y0 + rows)) for y0 in range(0, h, rows)]
    if options.halo > 0:  # the halo is made band by band, in order: one thread
        sky_mean = _weighted_mean(new_sky, matte)
        for sl, (_, band) in zip(strips, _halo_bands(matte, options.halo_width * max(h, w), rows), strict=True):
            _mix_strip(sl, photo, matte, new_sky, scale, out, lit, halo=(band[:, :, None] * options.halo, sky_mean))
        return out, lit
    # Without a halo, a strip that is all foreground is only recoloured (by a table, for 8-bit photos)
    # and one that is all sky is only the new sky: most strips skip the float mix. The strips are
    # independent and numpy and Pillow use one core each: every other strip goes to a helper thread.
    table = _recolour_table(scale) if photo.dtype == np.uint8 else None

    def mix(part: list[slice]) -> None:
        for sl in part:
            _mix_strip(sl, photo, matte, new_sky, scale, out, lit, table=table)

    run_beside(lambda: mix(strips[1::2]), lambda: mix(strips[0::2]))
    return out, lit


def _mix_strip(sl: slice, photo: np.ndarray, matte: np.ndarray, new_sky: SkyRegion, scale: np.ndarray,
               out: np.ndarray, lit: np.ndarray | None, table: list[int] | None = None,
               halo: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Rows ``sl`` of the composite (and of the harmonised foreground ``lit``, when asked for).
    ``halo``: (band strength (rows, W, 1), sky colour) for a strip with a halo."""
    low, high = (float(matte[sl].min()), float(matte[sl].max())) if halo is None else (0.0, 1.0)
    if low == 1.0 and lit is None:
        from_unit(new_sky.band(sl), photo.dtype, out=out[sl])
        return
    if high == 0.0 and table is not None:
        out[sl] = np.asarray(Image.fromarray(photo[sl]).point(table))
        if lit is not None:
            lit[sl] = out[sl]
        return
    fg = scale_channels(photo[sl].astype(np.float32), scale)
    if halo is not None:
        b, sky_mean = halo
        fg = fg * (1 - b) + (1 - (1 - fg) * (1 - sky_mean)) * b  # screen toward the sky colour
    np.clip(fg, 0, 1, out=fg)
    if lit is not None:
        from_unit(fg, photo.dtype, out=lit[sl])
    if high == 0.0:
        from_unit(fg, photo.dtype, out=out[sl])
        return
    mixed = np.subtract(new_sky.band(sl), fg)  # fg + (sky - fg) * m: one temporary instead of three
    for c in range(3):  # a channel at a time: faster than broadcasting the matte over (..., 3)
        mixed[..., c] *= matte[sl]
    mixed += fg
    from_unit(mixed, photo.dtype, out=out[sl])


STRIP_ROWS = 64  # rows of a compositing strip: small enough that most are all sky or all foreground


def _recolour_table(scale: np.ndarray) -> list[int]:
    """The foreground's recolour of 8-bit values as a Pillow point table (R, G, B: 256 entries each),
    computed by the same float32 steps as a mixed strip, so both give identical foreground pixels."""
    values = np.arange(256, dtype=np.float32)[:, None] * scale[None, :]
    np.clip(values, 0, 1, out=values)
    return from_unit(values, np.dtype(np.uint8)).T.ravel().tolist()
