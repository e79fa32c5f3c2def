"""Augmentation for sky segmentation, driven by an explicit torch.Generator.

Every random choice comes from the generator passed in, which the trainer seeds from
(seed, epoch, step, rank): a resumed run draws exactly the same augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clnsod_core.preprocess import resize_rgb

from .data import Sample


@dataclass(frozen=True)
class AugmentConfig:
    full_frame_prob: float = 0.3  # keep the whole photo, as inference sees it
    min_area: float = 0.35
    max_aspect_jitter: float = 1.33
    flip_prob: float = 0.5
    sky_swap_prob: float = 0.15
    dusk_prob: float = 0.15
    overcast_prob: float = 0.15
    noise_prob: float = 0.2


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _chance(gen: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=gen)) < p


def _crop_box(h: int, w: int, cfg: AugmentConfig, gen: torch.Generator) -> tuple[int, int, int, int]:
    if _chance(gen, cfg.full_frame_prob):
        return 0, 0, h, w
    area = _uniform(gen, cfg.min_area, 1.0)
    aspect = float(np.exp(_uniform(gen, -np.log(cfg.max_aspect_jitter), np.log(cfg.max_aspect_jitter))))
    ch = min(h, max(8, round(h * np.sqrt(area / aspect))))
    cw = min(w, max(8, round(w * np.sqrt(area * aspect))))
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    return top, left, ch, cw


def _resize_gray(arr: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize((size, size), resample))


def pure_sky_band(sample: Sample) -> np.ndarray | None:
    """Top rows that are (almost) all sky: a texture to paste into another photo's sky."""
    row_sky = (sample.mask > 127).mean(axis=1)
    not_sky = np.nonzero(row_sky < 0.97)[0]
    rows = int(not_sky[0]) if not_sky.size else sample.mask.shape[0]
    if rows < 0.15 * sample.mask.shape[0] or rows < 16:
        return None
    return sample.image[:rows]


def _colour(img: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    gray = img.mean(dim=0, keepdim=True)
    img = gray + (img - gray) * _uniform(gen, 0.6, 1.4)  # saturation
    mean = img.mean()
    img = mean + (img - mean) * _uniform(gen, 0.7, 1.3)  # contrast
    img = img * _uniform(gen, 0.65, 1.35)  # brightness
    gains = torch.tensor([_uniform(gen, 0.9, 1.1) for _ in range(3)]).view(3, 1, 1)
    img = img * gains
    if _chance(gen, cfg.dusk_prob):  # warm, dim light
        tint = torch.tensor([1.05, 0.82, 0.62]).view(3, 1, 1)
        img = img * tint * _uniform(gen, 0.45, 0.85)
    elif _chance(gen, cfg.overcast_prob):  # flat grey light
        gray = img.mean(dim=0, keepdim=True)
        img = torch.lerp(img, gray, _uniform(gen, 0.5, 0.9))
        img = 0.5 * _uniform(gen, 0.8, 1.2) + (img - 0.5) * _uniform(gen, 0.5, 0.8)
    img = img.clamp(0, 1).pow(_uniform(gen, 0.75, 1.35))
    if _chance(gen, cfg.noise_prob):
        img = img + torch.randn(img.shape, generator=gen) * _uniform(gen, 0.005, 0.03)
    return img.clamp(0, 1)


def augment(
    sample: Sample, size: int, cfg: AugmentConfig, gen: torch.Generator, donor_sky: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns image (3,S,S) in [0,1], mask (1,S,S) in [0,1], void (1,S,S) bool."""
    h, w = sample.mask.shape
    top, left, ch, cw = _crop_box(h, w, cfg, gen)
    window = (slice(top, top + ch), slice(left, left + cw))
    image = torch.from_numpy(np.array(resize_rgb(np.ascontiguousarray(sample.image[window]), size))).permute(2, 0, 1).float() / 255
    mask = torch.from_numpy(np.array(_resize_gray(np.ascontiguousarray(sample.mask[window]), size, Image.Resampling.BILINEAR)))
    mask = mask.float()[None] / 255
    if sample.void is not None:
        void_u8 = np.ascontiguousarray(sample.void[window]).astype(np.uint8) * 255
        void = torch.from_numpy(np.array(_resize_gray(void_u8, size, Image.Resampling.NEAREST)) > 127)[None]
    else:
        void = torch.zeros(1, size, size, dtype=torch.bool)
    if donor_sky is not None and _chance(gen, cfg.sky_swap_prob):
        donor = torch.from_numpy(np.array(resize_rgb(np.ascontiguousarray(donor_sky), size))).permute(2, 0, 1).float() / 255
        alpha = F.avg_pool2d(mask[None], 3, stride=1, padding=1, count_include_pad=False)[0]
        image = image * (1 - alpha) + donor * alpha
    if _chance(gen, cfg.flip_prob):
        image, mask, void = image.flip(-1), mask.flip(-1), void.flip(-1)
    return _colour(image, cfg, gen), mask, void
