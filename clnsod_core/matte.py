"""Full-resolution sky matte from the working-size prediction.

A fast guided filter (He & Sun 2015): the linear model q = A.I + b that maps the photo's
colours to the matte is fitted on a subsampled guide, then A and b are upsampled and
applied to the full-resolution photo. The matte thus follows colour edges the network
cannot resolve at 320 px (branches, reeds, wires) without halos from plain upsampling.
Edge shift grows/shrinks the sky; edge fade feathers it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MatteOptions:
    edge_shift: float = 0.0  # px at full resolution; > 0 grows the sky, < 0 shrinks it
    edge_fade: float = 0.0  # px of feather at full resolution
    guide_side: int = 1024  # long side of the subsampled guide
    radius: int = 8  # guided-filter radius in guide pixels
    eps: float = 1e-3  # regularisation: larger = smoother, less edge-following

    def validate(self) -> None:
        if not -500 <= self.edge_shift <= 500:
            raise ValueError(f"edge shift must be between -500 and 500 px, got {self.edge_shift}")
        if not 0 <= self.edge_fade <= 500:
            raise ValueError(f"edge fade must be between 0 and 500 px, got {self.edge_fade}")
        if self.guide_side < 64 or self.radius < 1 or self.eps <= 0:
            raise ValueError("guide_side >= 64, radius >= 1 and eps > 0 are required")


def readonly_view(array: np.ndarray) -> torch.Tensor:
    """Tensor sharing memory with a (possibly read-only) array that is never written to."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def box_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window with edge-normalised borders; x: (B, C, H, W)."""
    if r <= 0:
        return x
    k = 2 * r + 1
    ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype=x.dtype)
    pad = (r, r, r, r)
    summed = _box_sum(F.pad(x, pad), k)
    count = _box_sum(F.pad(ones, pad), k)
    return summed / count


def _box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Valid-mode window sums via cumulative sums (cost independent of k)."""
    c = x.cumsum(dim=2)
    c = torch.cat([c[:, :, k - 1 : k], c[:, :, k:] - c[:, :, :-k]], dim=2)
    c = c.cumsum(dim=3)
    return torch.cat([c[:, :, :, k - 1 : k], c[:, :, :, k:] - c[:, :, :, :-k]], dim=3)


def _guided_coefficients(guide: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour guided filter coefficients A (1,3,h,w) and b (1,1,h,w) for guide (1,3,h,w), p (1,1,h,w)."""
    mean_i = box_filter(guide, r)
    mean_p = box_filter(p, r)
    cov_ip = box_filter(guide * p, r) - mean_i * mean_p
    # 3x3 covariance of the guide per pixel, plus eps on the diagonal.
    var = torch.empty(1, 3, 3, *guide.shape[2:], dtype=guide.dtype)
    for i in range(3):
        for j in range(i, 3):
            v = box_filter(guide[:, i : i + 1] * guide[:, j : j + 1], r)[:, 0] - mean_i[:, i] * mean_i[:, j]
            var[:, i, j] = v
            var[:, j, i] = v
    var = var + eps * torch.eye(3, dtype=guide.dtype).view(1, 3, 3, 1, 1)
    sigma = var.permute(0, 3, 4, 1, 2)  # (1, h, w, 3, 3)
    a = torch.linalg.solve(sigma, cov_ip.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1)  # (1, h, w, 3)
    a = a.permute(0, 3, 1, 2)
    b = mean_p - (a * mean_i).sum(dim=1, keepdim=True)
    return box_filter(a, r), box_filter(b, r)


def _shift_edge(p: torch.Tensor, px: float) -> torch.Tensor:
    """Grow (px > 0) or shrink (px < 0) the sky by ``px`` guide pixels (grey dilation/erosion)."""
    r = int(round(abs(px)))
    if r == 0:
        return p
    k = 2 * r + 1
    if px > 0:
        return F.max_pool2d(p, k, stride=1, padding=r)
    return -F.max_pool2d(-p, k, stride=1, padding=r)


def refine_matte(image: np.ndarray, prob: torch.Tensor | np.ndarray, options: MatteOptions = MatteOptions()) -> np.ndarray:
    """Sky matte (H, W) float32 in [0, 1] for RGB uint8 ``image`` (H, W, 3) from a low-res ``prob``."""
    options.validate()
    h, w = image.shape[:2]
    prob_t = torch.as_tensor(prob, dtype=torch.float32)[None, None]
    scale = min(1.0, options.guide_side / max(h, w))
    gh, gw = max(1, round(h * scale)), max(1, round(w * scale))
    full = readonly_view(image).permute(2, 0, 1)[None]  # uint8 view, no copy
    guide = F.interpolate(full.float(), size=(gh, gw), mode="area") / 255.0 if scale < 1 else full.float() / 255.0
    p = F.interpolate(prob_t, size=(gh, gw), mode="bilinear", align_corners=False)
    p = _shift_edge(p, options.edge_shift * scale)
    a, b = _guided_coefficients(guide, p, options.radius, options.eps)
    if scale < 1:
        a = F.interpolate(a, size=(h, w), mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=(h, w), mode="bilinear", align_corners=False)
    matte = b[0, 0]
    for c in range(3):  # channel by channel keeps the full-size float copy of the photo out of memory
        matte += a[0, c] * (full[0, c].float() / 255.0)
    matte.clamp_(0.0, 1.0)
    if options.edge_fade > 0:
        fade = max(1, round(options.edge_fade / 2))
        matte = box_filter(box_filter(matte[None, None], fade), fade)[0, 0]  # ~Gaussian feather
    return matte.numpy()
