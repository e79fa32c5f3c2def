"""Full-resolution sky matte from the working-size prediction.

A confidence-weighted fast guided filter: in every window, a linear model q = A.I + b from
the photo's colours to the sky probability is fitted on a subsampled guide, weighting each
pixel by how sure the network is there ((2p - 1)^2), so the colours of confident sky and
confident foreground decide the uncertain pixels between them (the idea of the weighted
guided upsampling in "Sky Optimization", and of He & Sun's fast guided filter). A and b are
then upsampled and applied to the full-resolution photo, so the matte follows colour edges
the network cannot resolve at its 320-384 px working size (branches, reeds, wires) without upsampling halos.
Before the filter, the probability it follows is corrected at the guide's size by the photo's colour
model (``colour_refine``) and, when ``learned_refiner`` is set, where that still leaves the answer open,
by the small learned refiner (``refiner.py``) that reads the guide's pixels.
Edge shift grows/shrinks the sky; edge fade feathers it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clnsod_core.arrays import as_u8
from clnsod_core.masking.refiner import embedded_refiner, refine_probability
from clnsod_core.options import check_part, defaults

# A photo whose network sky (probability >= 0.5 at the working size) covers less than this share
# of the frame has no sky: its matte is all zero, ``replace`` leaves the photo unchanged. 0.2 % is a
# 17 x 17 px patch at 384 x 384 (14 x 14 at 320 x 320), far less than sky seen through any real window, and more than the
# specks a bright lamp or a white ceiling corner can still get.
NO_SKY_AREA = 0.002


def has_sky(prob: torch.Tensor | np.ndarray) -> bool:
    """True when the working-size sky probability shows sky over at least ``NO_SKY_AREA``."""
    p = torch.as_tensor(prob)
    return bool((p >= 0.5).float().mean() >= NO_SKY_AREA)


_USER_DEFAULTS = defaults("matte")


@dataclass(frozen=True)
class MatteOptions:
    edge_shift: float = _USER_DEFAULTS["edge_shift"]  # px at full resolution; > 0 grows the sky, < 0 shrinks it
    edge_fade: float = _USER_DEFAULTS["edge_fade"]  # px of feather at full resolution
    guide_side: int = 1024  # long side of the subsampled guide
    # radius and eps were chosen on a sample of the skyseg *train* split (lowest boundary-band error).
    radius: float = 0.01  # window radius as a fraction of the guide's long side
    eps: float = 1e-4  # regularisation: larger = smoother, less edge-following
    confidence_floor: float = 1e-3  # weight of a pixel where the network says 0.5
    # Colour model (see colour_refine): how far from the network's sky line (fraction of the guide's
    # long side) the photo's own colours may open sky holes or cut out wires; 0 turns it off.
    colour_zone: float = 0.05
    # The learned refiner (refiner.py) corrects the colour model's answer where it is still open. Off by
    # default: it gains on fine structure but calls a little more foreground sky (MODEL_CARD.md).
    learned_refiner: bool = False

    def validate(self) -> None:
        check_part("matte", self.__dict__)  # the user-facing fields, against options.py
        if self.guide_side < 64 or not 0 < self.radius <= 0.5 or self.eps <= 0 or self.confidence_floor <= 0:
            raise ValueError("guide_side >= 64, 0 < radius <= 0.5, eps > 0 and confidence_floor > 0 are required")


def readonly_view(array: np.ndarray) -> torch.Tensor:
    """Tensor sharing memory with a (possibly read-only) array that is never written to."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def box_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window with edge-normalised borders; x: (B, C, H, W)."""
    if r <= 0:
        return x
    if x.shape[0] * x.shape[1] > 1:  # a plane at a time: it stays in cache through its passes (2-3x faster)
        out = torch.empty_like(x)
        for b in range(x.shape[0]):
            for c in range(x.shape[1]):
                out[b, c] = box_filter(x[b : b + 1, c : c + 1], r)[0, 0]
        return out
    h, w = x.shape[2:]
    summed = _box_sum(F.pad(x, (r, r, r, r)), 2 * r + 1)
    return summed / (_window_counts(h, r, x.dtype)[:, None] * _window_counts(w, r, x.dtype)[None, :])


def _window_counts(n: int, r: int, dtype: torch.dtype) -> torch.Tensor:
    """How many of the 2r+1 window positions fall inside [0, n) at each index."""
    idx = torch.arange(n)
    return ((idx + r).clamp(max=n - 1) - (idx - r).clamp(min=0) + 1).to(dtype)


def _box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Valid-mode window sums via cumulative sums (cost independent of k)."""
    c = x.cumsum(dim=2)
    c = torch.cat([c[:, :, k - 1 : k], c[:, :, k:] - c[:, :, :-k]], dim=2)
    c = c.cumsum(dim=3)
    return torch.cat([c[:, :, :, k - 1 : k], c[:, :, :, k:] - c[:, :, :, :-k]], dim=3)


def _guided_coefficients(
    guide: torch.Tensor, p: torch.Tensor, weight: torch.Tensor, r: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted colour guided filter: A (1,3,h,w), b (1,1,h,w) for guide (1,3,h,w), p and weight (1,1,h,w)."""
    total = box_filter(weight, r)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return box_filter(x * weight, r) / total

    mean_i = mean(guide)
    mean_p = mean(p)
    # The moments come from running sums in float32, whose rounding can exceed a flat window's true
    # variance where the confidence weights are tiny (fog, featureless haze): a negative variance
    # there made one window's slope explode, and the final box filter spread it into a visible
    # square. Variances are kept >= 0 and covariances within the Cauchy-Schwarz bound (with p in
    # [0, 1], var(p) <= mean(p) (1 - mean(p))), which any true covariance meets.
    variance = (mean(guide.square()) - mean_i.square()).clamp_(min=0)  # (1, 3, h, w)
    spread = variance.sqrt()

    def cov(i: int, j: int) -> torch.Tensor:
        raw = mean(guide[:, i : i + 1] * guide[:, j : j + 1]) - mean_i[:, i : i + 1] * mean_i[:, j : j + 1]
        return _within(raw, spread[:, i : i + 1] * spread[:, j : j + 1])

    cov_ip = _within(mean(guide * p) - mean_i * mean_p, spread * (mean_p * (1 - mean_p)).clamp_(min=0).sqrt_())
    # Symmetric 3x3 covariance of the guide per pixel (+ eps on the diagonal), solved in
    # closed form (adjugate / determinant): far cheaper than a batched linalg.solve.
    rr, rg, rb = variance[:, 0:1] + eps, cov(0, 1), cov(0, 2)
    gg, gb, bb = variance[:, 1:2] + eps, cov(1, 2), variance[:, 2:3] + eps
    inv_rr, inv_rg, inv_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    inv_gg, inv_gb, inv_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * inv_rr + rg * inv_rg + rb * inv_rb
    cr, cg, cb = cov_ip[:, 0:1], cov_ip[:, 1:2], cov_ip[:, 2:3]
    a = torch.cat(
        [inv_rr * cr + inv_rg * cg + inv_rb * cb, inv_rg * cr + inv_gg * cg + inv_gb * cb, inv_rb * cr + inv_gb * cg + inv_bb * cb],
        dim=1,
    ) / det
    b = mean_p - (a * mean_i).sum(dim=1, keepdim=True)
    return box_filter(a, r), box_filter(b, r)


def _within(x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """``x`` clamped to [-bound, bound] (bound >= 0): a third of the time of ``torch.clamp`` with
    tensor limits on the CPU."""
    return torch.minimum(x.abs(), bound).copysign_(x)


def window_max(x: torch.Tensor, r: int) -> torch.Tensor:
    """Maximum over a (2r+1)^2 window, as two 1-D passes (cost linear in r, not quadratic)."""
    k = 2 * r + 1
    x = F.max_pool2d(x, (k, 1), stride=1, padding=(r, 0))
    return F.max_pool2d(x, (1, k), stride=1, padding=(0, r))


def _shift_edge(p: torch.Tensor, px: float) -> torch.Tensor:
    """Grow (px > 0) or shrink (px < 0) the sky by ``px`` guide pixels (grey dilation/erosion)."""
    r = int(round(abs(px)))
    if r == 0:
        return p
    return window_max(p, r) if px > 0 else -window_max(-p, r)


def refine_matte(image: np.ndarray, prob: torch.Tensor | np.ndarray, options: MatteOptions = MatteOptions()) -> np.ndarray:
    """Sky matte (H, W) float32 in [0, 1] for RGB ``image`` (H, W, 3, uint8 or uint16) from a low-res ``prob``;
    all zero when ``prob`` shows no sky (see ``has_sky``).

    The full-resolution stages run in bands of rows, so a 100 MP photo needs the matte itself
    plus a few small temporaries, never full-size float copies of the photo or coefficients.
    """
    return sky_matte(image, prob, options)[0]


def sky_matte(image: np.ndarray, prob: torch.Tensor | np.ndarray, options: MatteOptions = MatteOptions(),
              guide: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """(matte, sky found): the one place the "no sky" rule is applied; without sky the matte is
    all zero and the full-resolution stages are skipped. ``guide``: ``matte_guide(image, options)``
    when already made (it can be made while the network runs)."""
    model = sky_matte_model(image, prob, options, guide)
    if model is None:
        return np.zeros(image.shape[:2], np.float32), False
    return model.apply(image), True


def sky_matte_model(image: np.ndarray, prob: torch.Tensor | np.ndarray, options: MatteOptions = MatteOptions(),
                    guide: np.ndarray | None = None) -> MatteModel | None:
    """``sky_matte`` before its full-resolution pass; None when ``prob`` shows no sky."""
    options.validate()
    return edge_aware_model(image, prob, options, guide) if has_sky(prob) else None


@dataclass(frozen=True)
class MatteModel:
    """A photo's matte before its full-resolution pass: the guided filter's linear model from colour
    to sky share at the guide's size, for ``apply`` to run over the photo's pixels (video runs the
    two halves on different threads)."""

    coefficients: torch.Tensor  # (4, gh, gw): A for R, G, B (per 8-bit level), then b
    edge_fade: float

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The matte (H, W) float32 in [0, 1] of the photo this model was made from."""
        full = readonly_view(as_u8(image)).permute(2, 0, 1)  # uint8 view, no copy for 8-bit photos
        matte = apply_coefficients(self.coefficients, full)
        if self.edge_fade > 0:
            fade = max(1, round(self.edge_fade / 2))
            matte = _clean(box_filter_in_bands(box_filter_in_bands(matte, fade), fade, out=matte))  # ~Gaussian feather
        return matte.numpy()


def edge_aware_matte(image: np.ndarray, prob: torch.Tensor | np.ndarray, options: MatteOptions = MatteOptions()) -> np.ndarray:
    """``refine_matte`` without the "no sky" rule: the colour model, then the confidence-weighted
    guided filter, at the photo's full resolution."""
    return edge_aware_model(image, prob, options).apply(image)


def matte_guide(image: np.ndarray | Image.Image, options: MatteOptions = MatteOptions()) -> np.ndarray:
    """The photo (an array of any depth, or its 8-bit Pillow image) reduced to ``options.guide_side``
    (box filter, 8-bit): what the colour model and the guided filter read. 8 bits are plenty to
    guide the matte; the matte itself stays float."""
    if isinstance(image, np.ndarray):
        image = as_u8(image)
    w, h = image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])
    scale = min(1.0, options.guide_side / max(h, w))
    if scale >= 1:
        return np.asarray(image)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return np.asarray(pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX))


def edge_aware_model(image: np.ndarray, prob: torch.Tensor | np.ndarray, options: MatteOptions = MatteOptions(),
                     guide: np.ndarray | None = None) -> MatteModel:
    """The colour model and the confidence-weighted guided filter at the guide's size (``guide``:
    ``matte_guide(image, options)``, made here when not given)."""
    options.validate()
    small = matte_guide(image, options) if guide is None else guide
    h, w = image.shape[:2]
    scale = min(1.0, options.guide_side / max(h, w))
    gh, gw = small.shape[:2]
    colours = readonly_view(small).permute(2, 0, 1)[None].float().contiguous() / 255.0
    p_network, p = guide_probabilities(colours, prob, options, scale)
    radius = max(1, round(options.radius * max(gh, gw)))
    if options.learned_refiner:
        p = refine_probability(embedded_refiner(), colours, p_network, p, open_zone(p, radius))
    weight = (2 * p - 1).square() + options.confidence_floor
    a, b = _unsure_zone_coefficients(colours, p, weight, radius, options.eps)
    coefficients = torch.cat([a, b], dim=1)[0]  # (4, gh, gw): A for R, G, B, then b
    coefficients[:3] /= 255.0  # scaled once here instead of at every pixel of the photo
    return MatteModel(coefficients, options.edge_fade)


def guide_probabilities(colours: torch.Tensor, prob: torch.Tensor | np.ndarray, options: MatteOptions,
                        scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(the network's probability, the colour model's correction of it), (1, 1, gh, gw) at the size of
    the guide ``colours`` (1, 3, gh, gw) in [0, 1]; ``scale``: guide pixels per photo pixel (edge shift)."""
    gh, gw = colours.shape[2:]
    prob_t = torch.as_tensor(prob, dtype=torch.float32)[None, None]
    p_network = _shift_edge(F.interpolate(prob_t, size=(gh, gw), mode="bilinear", align_corners=False),
                            options.edge_shift * scale)
    if options.colour_zone <= 0:
        return p_network, p_network
    return p_network, colour_refine(colours, p_network, max(1, round(options.colour_zone * max(gh, gw))))


TILE_ROWS, TILE_COLUMNS = 128, 256  # full-resolution tiles of the matte's last pass


def apply_coefficients(coefficients: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """The matte (H, W) float32: the guided filter's coefficients (4, h, w) (A for R, G, B, already
    divided by 255, then b) upsampled (bilinear, as ``F.interpolate(align_corners=False)``) and applied
    to the photo ``full`` (3, H, W) uint8, clamped and snapped (``_clean``).

    Computed tile by tile, and only where it matters: a tile whose coefficients are all "settled"
    (A = 0 and one b of 0 or 1: the network was sure over the whole window) is filled with that value,
    which is what the full computation gives after snapping. Most of a photo is settled sky or
    foreground, so this pass costs what the sky line's zone costs, and no tile is ever a full-size
    temporary."""
    _, h, w = coefficients.shape
    height, width = full.shape[1:]
    rows, row_weights = _axis_weights(h, height, antialias=False)
    columns, _ = _axis_weights(w, width, antialias=False)
    settled_a = (coefficients[:3] == 0).all(dim=0)
    b = coefficients[3]
    matte = torch.empty((height, width), dtype=torch.float32)
    tile_starts = range(0, width, TILE_COLUMNS)
    tile_ends = [min(width, x0 + TILE_COLUMNS) for x0 in tile_starts]
    first_column = columns[list(tile_starts), 0].tolist()
    last_column = (columns[[x1 - 1 for x1 in tile_ends], 1] + 1).tolist()
    for y0 in range(0, height, TILE_ROWS):
        y1 = min(height, y0 + TILE_ROWS)
        r0, r1 = int(rows[y0, 0]), int(rows[y1 - 1, 1]) + 1  # the coefficient rows these rows read
        unsettled = ~settled_a[r0:r1].all(dim=0)
        high, low = b[r0:r1].amax(dim=0), b[r0:r1].amin(dim=0)
        kinds = []  # per tile: 0.0 or 1.0 to fill, None to compute
        for c0, c1 in zip(first_column, last_column, strict=True):
            top, bottom = float(high[c0:c1].max()), float(low[c0:c1].min())
            settled = not bool(unsettled[c0:c1].any()) and top == bottom and top in (0.0, 1.0)
            kinds.append(top if settled else None)
        across = None  # these coefficient rows at full width (only when a tile needs them)
        for start, end, kind in _runs(kinds):
            x0, x1 = tile_starts[start], tile_ends[end - 1]
            if kind is not None:
                matte[y0:y1, x0:x1] = kind
                continue
            if across is None:
                across = F.interpolate(coefficients[None, :, r0:r1], size=(r1 - r0, width), mode="bilinear",
                                       align_corners=False)[0]
            tile = _weighted_rows(across[:, :, x0:x1], rows[y0:y1] - r0, row_weights[y0:y1])
            out = matte[y0:y1, x0:x1]
            out.copy_(tile[3])
            for c in range(3):
                out.addcmul_(tile[c], full[c, y0:y1, x0:x1].float())
            _clean(out)
    return matte


def _runs(kinds: list[float | None]) -> Iterator[tuple[int, int, float | None]]:
    """(start, end, kind) of each run of equal neighbours."""
    start = 0
    for i in range(1, len(kinds) + 1):
        if i == len(kinds) or kinds[i] != kinds[start]:
            yield start, i, kinds[start]
            start = i


BAND_PIXELS = 2_000_000  # output pixels per band of rows in the full-resolution stages


def _axis_weights(in_size: int, out_size: int, antialias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights, both (out_size, taps), of a 1-D resize as
    ``F.interpolate(mode="bilinear", align_corners=False, antialias=...)`` computes them."""
    scale = in_size / out_size
    dst = torch.arange(out_size, dtype=torch.float64)
    if not antialias:
        src = ((dst + 0.5) * scale - 0.5).clamp(min=0.0)
        i0 = src.floor().clamp(max=in_size - 1)
        frac = src - i0
        index = torch.stack([i0, (i0 + 1).clamp(max=in_size - 1)], dim=1).long()
        return index, torch.stack([1 - frac, frac], dim=1).float()
    support, inv = (scale, 1 / scale) if scale >= 1 else (1.0, 1.0)  # Pillow's triangle filter
    center = scale * (dst + 0.5)
    first = (center - support + 0.5).floor().clamp(min=0.0)
    stop = (center + support + 0.5).floor().clamp(max=float(in_size))
    taps = torch.arange(2 * math.ceil(support) + 1, dtype=torch.float64)
    index = first[:, None] + taps[None, :]
    weight = (1 - ((index - center[:, None] + 0.5) * inv).abs()).clamp(min=0.0)
    weight = torch.where(index < stop[:, None], weight, 0.0)
    weight = weight / weight.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return index.clamp(max=in_size - 1).long(), weight.float()


def resize_in_bands(
    src: torch.Tensor, out_h: int, out_w: int, antialias: bool = False, band_pixels: int = BAND_PIXELS
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Bilinear resize of ``src`` (C, h, w), any dtype, to (C, out_h, out_w) float32, yielded as
    (y0, y1, rows y0:y1) bands so the full-size result never has to exist at once. Equals
    ``F.interpolate(align_corners=False, antialias=...)`` up to float rounding."""
    _, h, w = src.shape
    index, weight = _axis_weights(h, out_h, antialias)
    rows = max(1, band_pixels // max(out_w, 1))
    for y0 in range(0, out_h, rows):
        y1 = min(out_h, y0 + rows)
        idx, wt = index[y0:y1], weight[y0:y1]
        lo, hi = int(idx.min()), int(idx.max()) + 1
        source = src[:, lo:hi].float()
        if out_w != w:  # horizontal pass on the few source rows this band needs
            source = F.interpolate(source[None], size=(hi - lo, out_w), mode="bilinear", align_corners=False,
                                   antialias=antialias)[0]
        yield y0, y1, _weighted_rows(source, idx - lo, wt)


def _weighted_rows(source: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The vertical pass of a resize: output row i = sum over taps t of source row index[i, t] times
    weight[i, t]; ``source`` (C, rows, W), ``index`` and ``weight`` (output rows, taps) from ``_axis_weights``."""
    out = source.index_select(1, index[:, 0]) * weight[:, 0, None]
    for t in range(1, index.shape[1]):
        out += source.index_select(1, index[:, t]) * weight[:, t, None]
    return out


def box_filter_in_bands(x: torch.Tensor, r: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``box_filter`` of a 2-D (H, W) tensor, computed in bands of rows (each with r rows of
    context) to keep temporaries small; ``out`` must not be ``x``."""
    h, w = x.shape
    result = torch.empty_like(x) if out is None else out
    if r <= 0:
        return result.copy_(x)
    row_counts, col_counts = _window_counts(h, r, x.dtype), _window_counts(w, r, x.dtype)
    rows = max(4 * r, BAND_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        lo, hi = max(0, y0 - r), min(h, y1 + r)
        sums = _box_sum(F.pad(x[None, None, lo:hi], (r, r, r, r)), 2 * r + 1)[0, 0]
        result[y0:y1] = sums[y0 - lo : y1 - lo] / (row_counts[y0:y1, None] * col_counts[None, :])
    return result


COLOUR_LEVELS = 32  # histogram bins per channel of the colour model
# The colour model's zones (near the sky line; sure sky within reach) come from the tent-weighted share
# of sure sky around a pixel, which fades out with distance: a hard zone (any sure sky within a square
# window) ended in a straight-edged step wherever the network left a speck of sure sky in an unsure sky,
# a square patch of new sky in the composite. The tent's radius, as a multiple of ``colour_zone``, and
# the shares from which a pixel counts as fully near sure sky / the sky line (chosen to keep the old
# zones' reach from a sky line: every val, fine-structure and robustness measure level with the square
# zones, and the mattes of 72 real photos within 0.1 of before on all but 0.05 % of their pixels).
REACH = 1.25
NEAR_SKY_SHARE, NEAR_LINE_SHARE = 0.005, 0.001
LOCAL_SKY_DISTANCE = 0.1  # RGB distance (0..1 per channel) within which a colour matches the sky beside it
NOVEL_DISTANCE = 0.2  # RGB distance from the sky beside it beyond which a never-sky colour is a structure
SURE = 0.9  # a colour model or network probability beyond this (or below 1 - SURE) is decisive


def _colour_index(guide: torch.Tensor) -> torch.Tensor:
    """(1, 3, h, w) RGB in [0, 1] -> (h * w,) bin index of a COLOUR_LEVELS^3 histogram."""
    q = (guide[0] * (COLOUR_LEVELS - 1e-3)).long().clamp_(0, COLOUR_LEVELS - 1)
    return ((q[0] * COLOUR_LEVELS + q[1]) * COLOUR_LEVELS + q[2]).flatten()


def _colour_density(index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Normalised, slightly smoothed colour histogram (a cheap kernel density estimate)."""
    n = COLOUR_LEVELS
    hist = torch.bincount(index, weights=weights, minlength=n**3).float().view(1, 1, n, n, n)
    kernel = torch.tensor([0.25, 0.5, 0.25])
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = 3
        padding = [0, 0, 0]
        padding[dim] = 1
        hist = F.conv3d(hist, kernel.view(shape), padding=tuple(padding))
    return hist.flatten() / hist.sum().clamp(min=1.0)


def _tent_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a window of radius ``r`` weighted by a tent (two box filters): it falls to zero at
    the window's edge, so a zone bounded by it fades out instead of ending in a square step."""
    half = max(1, r // 2)
    return box_filter(box_filter(x, half), max(1, r - half))


def _near(share: torch.Tensor, full: float) -> torch.Tensor:
    """How fully a pixel counts as near something whose tent-weighted share around it is ``share``:
    0 where none of it is in reach, 1 from a share of ``full`` on, linear between."""
    return (share / full).clamp(0.0, 1.0)


def colour_refine(guide: torch.Tensor, p: torch.Tensor, zone: int) -> torch.Tensor:
    """Let the photo's colours correct the network near its sky line (the colour model of "Sky
    Optimization", Liba et al. 2020), at the guide's resolution.

    The sky's colours are learnt from where the network is sure of sky, the foreground's from where
    it is sure of foreground (at half weight near the sky line, where a crown's sky gaps are labelled
    foreground). Within about ``zone`` guide pixels of the sky line (fading out by 1.25 times that), a
    pixel becomes sky when its colour is one the sky shows and the foreground hardly ever does, close
    to the sky right beside it, and inside a structure (foreground colours around it): sky between
    branches, truss openings, gaps in a fence; a pixel the network already calls sky, with such a
    colour, becomes fully sky (a mottled 0.8 in an open dusk sky, the sky under a bridge deck). A
    pixel moves toward foreground when its colour is clearly foreground near the sky line, whatever
    the network said (also the faint veil of 0.05-0.3 it leaves over a dark hill or treeline below a
    bright sky), or, anywhere, when it is a thin streak of a colour the sky never shows (a mast, a
    dark cable). Colours both models know (a white wall against a white sky, a dark night sky) keep
    the network's answer, and far from the sky line nothing opens (snow, water, blue cars). The zones
    fade out (``_tent_filter``), so no decision ends in a straight edge the photo does not have.
    Structures thinner than a guide pixel are left to the guided filter."""
    sure_sky, sure_fg = p >= SURE, p <= 1 - SURE
    if not bool(sure_sky.any()) or not bool(sure_fg.any()):
        return p
    sky_f = sure_sky.float()
    reach = round(REACH * zone)
    sky_share = _tent_filter(sky_f, reach)
    near_sky = _near(sky_share, NEAR_SKY_SHARE)  # sure sky within reach
    near_line = _near(sky_share, NEAR_LINE_SHARE) * _near(1 - sky_share, NEAR_LINE_SHARE)  # ...and something else
    index = _colour_index(guide)
    sky_density = _colour_density(index, sky_f.flatten())
    # Sure foreground near the sky line counts half: enough that distant hazy trees or a white
    # building on the skyline keep their colours as foreground, while the few sky pixels seen through
    # a crown (labelled foreground there) stay far rarer than in the sky itself.
    fg_weights = (1 - 0.5 * near_line) * sure_fg.float()
    fg_density = _colour_density(index, fg_weights.flatten())
    # Opening needs a colour the sky shows and the deep foreground hardly ever does; cutting needs
    # a colour the deep foreground shows (at least half as often as a uniform spread would) and the
    # sky hardly ever does, so a rare cloud colour the network was unsure of is not cut out.
    floor = 0.5 / COLOUR_LEVELS**3
    sky_c, fg_c = sky_density[index].view_as(p), fg_density[index].view_as(p)
    # Only inside structures: at least a quarter of the pixels around an opened one have foreground
    # colours (sky between leaves, wires, bars). A large pale roof or wall face next to a pale sky
    # has sky-like colours all around, so it stays what the network said.
    local = max(2, round(0.01 * max(p.shape[2:])))
    porous = (box_filter((fg_c >= sky_c).float(), local) >= 0.25).float()
    # ...and close to the colour of the sky right there (a white hull or wall against a pale blue sky
    # has colours the sky shows elsewhere in the frame, but not next to it): the tent-weighted mean of
    # the sure sky within reach, nearer pixels counting more.
    local_sky = _tent_filter(guide * sky_f, reach) / sky_share.clamp(min=1e-12)
    distance = (guide - local_sky).square().sum(dim=1, keepdim=True)
    like_local_sky = near_sky * (distance < LOCAL_SKY_DISTANCE**2).float()
    clear_sky = like_local_sky * (sky_c >= 9 * (fg_c + floor)).float()
    opened = clear_sky * torch.maximum(near_line * porous, (p > 0.5).float())
    # Thin structures across the sky (wires, cables, masts, twigs) need not be near the sky line and
    # often have colours the foreground elsewhere lacks: cut them where the colour is one the sky
    # never shows, far from the sky beside it, and the pixel is mostly surrounded by sky (so a large
    # dark cloud is not cut, while stars and the sun, which the sure sky holds, never count as novel).
    novel = near_sky * ((sky_c < floor / 10) & (distance > NOVEL_DISTANCE**2)).float()
    thin = (box_filter(like_local_sky, local) >= 0.6).float()
    cut = torch.maximum(near_line * ((fg_c >= 9 * sky_c) & (fg_c >= floor)).float(), novel * thin)
    posterior = sky_c / (sky_c + fg_c + floor)
    refined = p + opened * (torch.maximum(p, posterior) - p)  # opened and cut fade in at their zones' edges
    return refined + cut * (torch.minimum(refined, posterior) - refined)


CONFIDENT = 0.02  # a window whose network probabilities all lie within this of 0 or 1 is settled


def _unsure_zone_coefficients(
    guide: torch.Tensor, p: torch.Tensor, weight: torch.Tensor, r: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided filter's A (1,3,h,w) and b (1,1,h,w), where the network is sure over a whole window
    replaced by its answer (A = 0, b = 0 or 1): the colour model is only for the uncertain zone, and
    would otherwise let sky-coloured foreground (white road markings, snow) pick up a faint veil of
    sky far from the sky line. The filter runs only on the box around the unsure windows (plus the
    2r of context its two box filters read, so the answer there is the same), usually a band
    along the sky line."""
    sure_sky = 1.0 - _any_in_window(p < 1 - CONFIDENT, r).to(p.dtype)
    sure_fg = 1.0 - _any_in_window(p > CONFIDENT, r).to(p.dtype)
    keep = 1.0 - sure_sky - sure_fg
    a = torch.zeros_like(guide)
    b = sure_sky.clone()
    rows, columns = torch.nonzero(keep[0, 0].amax(dim=1)), torch.nonzero(keep[0, 0].amax(dim=0))
    if len(rows) == 0:
        return a, b
    h, w = p.shape[2:]
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(columns[0]), int(columns[-1]) + 1
    cy0, cy1, cx0, cx1 = max(0, y0 - 2 * r), min(h, y1 + 2 * r), max(0, x0 - 2 * r), min(w, x1 + 2 * r)
    crop = (slice(None), slice(None), slice(cy0, cy1), slice(cx0, cx1))
    inner = (slice(None), slice(None), slice(y0 - cy0, y1 - cy0), slice(x0 - cx0, x1 - cx0))
    zone = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
    a_zone, b_zone = _guided_coefficients(guide[crop], p[crop], weight[crop], r, eps)
    a[zone] = a_zone[inner] * keep[zone]
    b[zone] = b_zone[inner] * keep[zone] + sure_sky[zone]
    return a, b


def open_zone(p: torch.Tensor, r: int) -> torch.Tensor:
    """(B, 1, h, w) bool: pixels with a probability more than ``CONFIDENT`` from 0 and 1 within ``r``
    of them (where the learned refiner may work)."""
    return _any_in_window((p > CONFIDENT) & (p < 1 - CONFIDENT), r) > 0


def _any_in_window(mask: torch.Tensor, r: int) -> torch.Tensor:
    """1.0 where any pixel of the (2r+1)^2 window (inside the picture) is set, else 0.0: a count by
    running sums (exact: whole numbers far below float32's 2^24), far cheaper than a max filter."""
    counts = _box_sum(F.pad(mask.float(), (r, r, r, r)), 2 * r + 1)
    return (counts > 0.5).float()


def _clean(matte: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and snap values within 2/255 of 0 or 1, so that the foreground stays
    bit-exact and the sky fully replaced where the filter leaves a faint residue."""
    matte.clamp_(0.0, 1.0)
    snap = 2.0 / 255.0
    matte.masked_fill_(matte < snap, 0.0)  # (in place; boolean indexing would gather and scatter)
    return matte.masked_fill_(matte > 1.0 - snap, 1.0)
