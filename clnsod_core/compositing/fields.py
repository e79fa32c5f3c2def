"""Smooth fields on a small copy of the photo: the shared steps of the reflection and haze overlays
(blurs, local contrast, max filters), all separable or cheap at the working size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clnsod_core.compositing.compose import LUMA
from clnsod_core.masking.matte import readonly_view

DETECT_SIDE = 640  # overlays find water, sky lines and contrast on a copy this large
REDUCE_BAND_PIXELS = 2_000_000  # photo pixels per band of ``small_copy``'s reduction


def smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    """In place on fresh tensors (full-size skies use it too): the same values as t * t * (3 - 2 * t)."""
    t = ((x - e0) / (e1 - e0)).clamp_(0, 1)
    rise = t.mul(-2).add_(3)  # 3 - 2t (doubling is exact, so the rounding is the same)
    return t.mul_(t).mul_(rise)


def luma(image: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luma of a (3, H, W) image: (H, W)."""
    return torch.einsum("chw,c->hw", image, torch.from_numpy(LUMA))


def _box_1d(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Mean over 2r+1 samples along ``dim`` with replicated borders, from a running sum: the cost does
    not grow with the radius (wide blurs of the water's brightness are common here)."""
    size = x.shape[dim]
    index = torch.arange(-radius - 1, size + radius).clamp(0, size - 1)
    padded = x.index_select(dim, index).double().cumsum(dim)  # float64: long running sums stay exact
    upper = padded.narrow(dim, 2 * radius + 1, size)
    lower = padded.narrow(dim, 0, size)
    return ((upper - lower) / (2 * radius + 1)).to(x.dtype)


def blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Box blur of (C, H, W) with replicated borders, run twice (close to a Gaussian)."""
    if radius < 1:
        return x
    for _ in range(2):  # separable: along rows, then along columns
        x = _box_1d(_box_1d(x, radius, -1), radius, -2)
    return x


def max_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Maximum over a (2r+1)^2 square, as two 1-D passes (a square kernel this wide is slow)."""
    size = 2 * radius + 1
    x = F.max_pool2d(x, (1, size), stride=1, padding=(0, radius))
    return F.max_pool2d(x, (size, 1), stride=1, padding=(radius, 0))


def local_deviation(luma: torch.Tensor, radius: int) -> torch.Tensor:
    """Standard deviation of (h, w) ``luma`` around each pixel (``blur`` windows of ``radius``)."""
    mean = blur(luma[None], radius)[0]
    return (blur(luma[None].pow(2), radius)[0] - mean.pow(2)).clamp(min=0).sqrt()


SmallCopy = tuple[torch.Tensor, torch.Tensor, float]  # (3, h, w) photo, (h, w) matte, scale to the photo


def small_copy(photo: np.ndarray, matte: np.ndarray) -> SmallCopy:
    """(3, h, w) float photo and (h, w) matte reduced by a whole factor to at most DETECT_SIDE a side
    (box means; the photo's bottom and right edge rows that do not fill a box are dropped), and the
    scale to the photo (small rows = photo rows * scale)."""
    h, w = matte.shape
    factor = max(1, min(-(-max(h, w) // DETECT_SIDE), h, w))  # a 20000x3 strip keeps at least one row
    hk, wk = h // factor * factor, w // factor * factor
    # Pillow's box reduce works on the 8-bit photo as is (a float copy of a 50 MP photo is 600 MB), a
    # band of whole boxes at a time: each box is averaged on its own, so the bands give the same
    # pixels as one reduce, and Pillow's copy of the photo is a band's, not the whole photo's.
    band = factor * max(1, REDUCE_BAND_PIXELS // (wk * factor))
    small = np.concatenate([np.asarray(Image.fromarray(np.ascontiguousarray(photo[y : min(hk, y + band), :wk]))
                                       .reduce(factor)) for y in range(0, hk, band)])
    img = torch.from_numpy(small.astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    m = F.avg_pool2d(readonly_view(matte[:hk, :wk])[None, None].float(), factor)[0, 0]
    return img, m, 1 / factor


def to_photo_size(fields: torch.Tensor, scale: float, h: int, w: int) -> torch.Tensor:
    """(1, C, h', w') fields of a ``small_copy`` resized (bilinear) to the photo's (h, w): to the part
    the small copy covers, then the few dropped edge rows and columns repeat the last ones."""
    hk, wk = round(fields.shape[2] / scale), round(fields.shape[3] / scale)
    resized = F.interpolate(fields, size=(hk, wk), mode="bilinear", align_corners=False)
    return F.pad(resized, (0, w - wk, 0, h - hk), mode="replicate") if (hk, wk) != (h, w) else resized
