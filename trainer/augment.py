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

from clnsod_core.network.preprocess import resize_rgb

from .data import Sample
from .draws import chance, uniform
from .sky_line import height_above, horizon_rows
from .storm_look import storm_look
from .thin_structures import thin_structure_look
from .window_views import paste_window


@dataclass(frozen=True)
class AugmentConfig:
    full_frame_prob: float = 0.3  # keep the whole photo, as inference sees it
    min_area: float = 0.35
    max_aspect_jitter: float = 1.33
    flip_prob: float = 0.5
    sky_swap_prob: float = 0.15
    storm_prob: float = 0.12  # dark storm clouds over the labelled sky (see storm_look)
    dusk_prob: float = 0.15
    overcast_prob: float = 0.15
    noise_prob: float = 0.2
    night_prob: float = 0.12  # simulated low-light night shot (see night_look)
    haze_prob: float = 0.15  # atmospheric haze over the land/water next to the horizon
    reflection_prob: float = 0.15  # calm water below a waterline mirroring the sky (stays foreground)
    misty_water_share: float = 0.5  # of those, also hazed: a misty lake continuing the sky's colour
    thin_structure_prob: float = 0.25  # trees, wires, fences... drawn across the sky, exact coverage as label
    sky_crop_prob: float = 0.05  # crop inside the pure-sky band: all-sky (all-cloud) frames
    strip_crop_prob: float = 0.06  # crop that leaves only a thin strip of sky above the land
    window_prob: float = 0.35  # photos without sky: cut in a window (see window_views.paste_window)
    blown_window_share: float = 0.25  # of those windows, blown-out white glass instead of a view


def _sky_rows(mask: np.ndarray) -> np.ndarray:
    """Share of sky in each row of a uint8 mask."""
    return (mask > 127).mean(axis=1)


def _pure_sky_rows(mask: np.ndarray) -> int:
    """Number of top rows that are (almost) all sky."""
    not_sky = np.nonzero(_sky_rows(mask) < 0.97)[0]
    return int(not_sky[0]) if not_sky.size else mask.shape[0]


def sky_only_box(mask: np.ndarray, gen: torch.Generator) -> tuple[int, int, int, int] | None:
    """A crop inside the pure-sky band (an all-sky frame), or None if the band is too small."""
    h, w = mask.shape
    rows = _pure_sky_rows(mask)
    if rows < 32:
        return None
    ch = max(16, round(rows * uniform(gen, 0.5, 1.0)))
    cw = min(w, max(16, round(ch * uniform(gen, 1.0, 1.6))))
    top = int(torch.randint(0, rows - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    return top, left, ch, cw


def thin_strip_box(mask: np.ndarray, gen: torch.Generator) -> tuple[int, int, int, int] | None:
    """A crop whose top keeps only a thin strip (3-10 %) of sky above the sky line."""
    h, w = mask.shape
    below = np.nonzero(_sky_rows(mask) < 0.5)[0]
    if below.size == 0 or below[0] < 4:
        return None
    line = int(below[0])
    ch = min(h, max(32, round(h * uniform(gen, 0.5, 1.0))))
    top = max(0, line - max(2, round(ch * uniform(gen, 0.03, 0.10))))
    ch = min(ch, h - top)
    return top, 0, ch, w


def _crop_box(mask: np.ndarray, cfg: AugmentConfig, gen: torch.Generator) -> tuple[int, int, int, int]:
    h, w = mask.shape
    if chance(gen, cfg.sky_crop_prob):
        box = sky_only_box(mask, gen)
        if box is not None:
            return box
    if chance(gen, cfg.strip_crop_prob):
        box = thin_strip_box(mask, gen)
        if box is not None:
            return box
    if chance(gen, cfg.full_frame_prob):
        return 0, 0, h, w
    area = uniform(gen, cfg.min_area, 1.0)
    aspect = float(np.exp(uniform(gen, -np.log(cfg.max_aspect_jitter), np.log(cfg.max_aspect_jitter))))
    ch = min(h, max(8, round(h * np.sqrt(area / aspect))))
    cw = min(w, max(8, round(w * np.sqrt(area * aspect))))
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    return top, left, ch, cw


def _resize_gray(arr: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize((size, size), resample))


def pure_sky_band(sample: Sample) -> np.ndarray | None:
    """Top rows that are (almost) all sky: a texture to paste into another photo's sky."""
    rows = _pure_sky_rows(sample.mask)
    if rows < 0.15 * sample.mask.shape[0] or rows < 16:
        return None
    return sample.image[:rows]


def _colour(img: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    gray = img.mean(dim=0, keepdim=True)
    img = gray + (img - gray) * uniform(gen, 0.6, 1.4)  # saturation
    mean = img.mean()
    img = mean + (img - mean) * uniform(gen, 0.7, 1.3)  # contrast
    img = img * uniform(gen, 0.65, 1.35)  # brightness
    gains = torch.tensor([uniform(gen, 0.9, 1.1) for _ in range(3)]).view(3, 1, 1)
    img = img * gains
    if chance(gen, cfg.dusk_prob):  # warm, dim light
        tint = torch.tensor([1.05, 0.82, 0.62]).view(3, 1, 1)
        img = img * tint * uniform(gen, 0.45, 0.85)
    elif chance(gen, cfg.overcast_prob):  # flat grey light
        gray = img.mean(dim=0, keepdim=True)
        img = torch.lerp(img, gray, uniform(gen, 0.5, 0.9))
        img = 0.5 * uniform(gen, 0.8, 1.2) + (img - 0.5) * uniform(gen, 0.5, 0.8)
    img = img.clamp(0, 1).pow(uniform(gen, 0.75, 1.35))
    if chance(gen, cfg.noise_prob):
        img = img + torch.randn(img.shape, generator=gen) * uniform(gen, 0.005, 0.03)
    return img.clamp(0, 1)


def sample_tensors(sample: Sample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A whole sample as the looks take it: image (3,H,W) in [0,1], sky (1,H,W) in [0,1], void (1,H,W) bool.

    ``torch.tensor`` copies: the decoded arrays are read-only views of PIL's buffers, which
    ``torch.from_numpy`` would share (and warn about)."""
    image = torch.tensor(sample.image).permute(2, 0, 1).float() / 255
    sky = torch.tensor(sample.mask).float()[None] / 255
    void = torch.tensor(sample.void)[None] if sample.void is not None else torch.zeros_like(sky, dtype=torch.bool)
    return image, sky, void


def augment(
    sample: Sample,
    size: int,
    cfg: AugmentConfig,
    gen: torch.Generator,
    donor_sky: np.ndarray | None,
    view: Sample | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns image (3,S,S) in [0,1], mask (1,S,S) in [0,1], void (1,S,S) bool. ``view`` is an
    outdoor photo with sky that a photo without sky may show through a window."""
    top, left, ch, cw = _crop_box(sample.mask, cfg, gen)
    window = (slice(top, top + ch), slice(left, left + cw))
    image = torch.from_numpy(np.array(resize_rgb(np.ascontiguousarray(sample.image[window]), size))).permute(2, 0, 1).float() / 255
    mask = torch.from_numpy(np.array(_resize_gray(np.ascontiguousarray(sample.mask[window]), size, Image.Resampling.BILINEAR)))
    mask = mask.float()[None] / 255
    if sample.void is not None:
        void_u8 = np.ascontiguousarray(sample.void[window]).astype(np.uint8) * 255
        void = torch.from_numpy(np.array(_resize_gray(void_u8, size, Image.Resampling.NEAREST)) > 127)[None]
    else:
        void = torch.zeros(1, size, size, dtype=torch.bool)
    if donor_sky is not None and chance(gen, cfg.sky_swap_prob):
        donor = torch.from_numpy(np.array(resize_rgb(np.ascontiguousarray(donor_sky), size))).permute(2, 0, 1).float() / 255
        alpha = F.avg_pool2d(mask[None], 3, stride=1, padding=1, count_include_pad=False)[0]
        image = image * (1 - alpha) + donor * alpha
    if chance(gen, cfg.storm_prob):
        image = storm_look(image, mask, gen)
    if sample.ref.mask is not None and chance(gen, cfg.thin_structure_prob):  # outdoor photos
        image, mask, void = thin_structure_look(image, mask, void, gen)
    water = chance(gen, cfg.reflection_prob)
    if water:
        image, mask, void = reflection_look(image, mask, void, gen)
    if chance(gen, cfg.haze_prob) or (water and chance(gen, cfg.misty_water_share)):
        image = haze_look(image, mask, gen)
    if chance(gen, cfg.flip_prob):
        image, mask, void = image.flip(-1), mask.flip(-1), void.flip(-1)
    if sample.ref.mask is None and chance(gen, cfg.window_prob):
        blown = view is None or chance(gen, cfg.blown_window_share)
        image, mask, void = paste_window(image, mask, void, None if blown else sample_tensors(view), gen)
    if chance(gen, cfg.night_prob):
        return night_look(image, mask, gen), mask, void
    return _colour(image, cfg, gen), mask, void


def haze_look(img: torch.Tensor, sky: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Atmospheric haze / mist: land and water below the horizon fade toward the horizon's sky
    colour, strongest at the horizon and decaying with distance below it, while the label keeps
    them foreground (haze continuing the sky's colour must not become sky)."""
    horizon = horizon_rows(sky)
    if horizon is None or float(sky.mean()) > 0.9:
        return img
    below = -height_above(horizon, img.shape[1])  # > 0 under the horizon
    near_sky = (sky[0] > 0.5) & (below > -0.12)
    if int(near_sky.sum()) < 16:
        return img
    colour = img[:, near_sky].mean(dim=1).view(3, 1, 1)
    strength = uniform(gen, 0.3, 0.7)
    length = uniform(gen, 0.04, 0.3)
    t = (strength * torch.exp(-below.clamp(min=0) / length))[None] * (1 - sky)
    return torch.lerp(img, colour.expand_as(img), t)


def reflection_look(
    img: torch.Tensor, sky: torch.Tensor, void: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Calm water: below a waterline at or under the sky line, the scene above is mirrored, with
    ripples, a reflectance that falls away from the waterline (Fresnel) and the water's own dark
    colour. The mirrored sky is water, so it is labelled foreground (a lake reflecting the sky must
    not be replaced with sky)."""
    horizon = horizon_rows(sky)
    h, w = img.shape[1:]
    if horizon is None or float(sky.mean()) > 0.9:
        return img, sky, void
    line = int(horizon.float().median()) + round(h * uniform(gen, 0.0, 0.2))
    if line < h // 5 or line > h - h // 8:
        return img, sky, void
    rows = torch.arange(line, h)
    depth = (rows - line).float() / max(1, h - line)  # 0 at the waterline, 1 at the bottom
    source = (2 * line - 1 - rows).clamp(min=0)
    shift = (torch.sin(rows.float() * uniform(gen, 0.1, 0.6) + uniform(gen, 0, 6.3)) * depth * w * uniform(gen, 0.0, 0.01)).round().long()
    cols = (torch.arange(w).view(1, -1) + shift.view(-1, 1)).clamp(0, w - 1)  # (rows, w)
    mirrored = img[:, source.view(-1, 1), cols]
    reflectance = (uniform(gen, 0.55, 0.95) * (1 - uniform(gen, 0.0, 0.5) * depth)).view(1, -1, 1)
    water = torch.tensor([uniform(gen, 0.0, 0.08), uniform(gen, 0.02, 0.1), uniform(gen, 0.04, 0.14)]).view(3, 1, 1)
    img, sky, void = img.clone(), sky.clone(), void.clone()
    img[:, line:] = mirrored * reflectance + water * (1 - reflectance)
    sky[:, line:] = 0
    void[:, line:] = False
    return img, sky, void


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).pow(2.4))


def _linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.pow(1 / 2.4) - 0.055)


def night_look(img: torch.Tensor, sky: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A physically plausible night shot of a day photo, in linear light: the sky becomes a dark
    blue-black with its cloud texture, stars and an orange city glow at the horizon; the land is
    lit far less, by a few warm street lamps; the camera then amplifies exposure, and with it
    shot and read noise (high ISO), before the sRGB curve."""
    h, w = img.shape[1:]
    lin = _srgb_to_linear(img)
    luma = (0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2])[None]
    sky_tint = torch.tensor([uniform(gen, 0.25, 0.5), uniform(gen, 0.4, 0.65), 1.0]).view(3, 1, 1)
    night_sky = luma * sky_tint * uniform(gen, 0.004, 0.04)
    horizon = horizon_rows(sky)
    if horizon is not None and chance(gen, 0.6):  # city glow / last twilight above the horizon
        above = height_above(horizon, h).clamp(min=0)
        glow = torch.exp(-above / uniform(gen, 0.05, 0.35))[None]
        glow_colour = torch.tensor([1.0, uniform(gen, 0.45, 0.75), uniform(gen, 0.2, 0.5)]).view(3, 1, 1)
        night_sky = night_sky + glow * glow_colour * uniform(gen, 0.003, 0.03)
    stars = (torch.rand((1, h, w), generator=gen) < uniform(gen, 0.0, 0.002)).float()
    night_sky = night_sky + stars * torch.rand((1, h, w), generator=gen) * 0.08
    land_light = torch.tensor([1.0, uniform(gen, 0.7, 0.95), uniform(gen, 0.45, 0.9)]).view(3, 1, 1)
    night_land = lin * land_light * uniform(gen, 0.004, 0.05)
    lamps = torch.zeros(1, h, w)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    for _ in range(int(torch.randint(0, 7, (), generator=gen))):
        cy, cx = uniform(gen, 0, h), uniform(gen, 0, w)
        radius = max(h, w) * uniform(gen, 0.003, 0.015)
        lamps += torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))[None] * uniform(gen, 0.02, 0.4)
    lamp_colour = torch.tensor([1.0, 0.75, 0.4]).view(3, 1, 1)
    night_land = night_land + lamps * lamp_colour * (1 - sky)
    scene = night_sky * sky + night_land * (1 - sky)
    target = uniform(gen, 0.008, 0.05)  # mean linear level the camera exposes for
    gain = target / float(scene.mean().clamp(min=1e-5))
    gain = min(gain, 60.0)
    shot, read = uniform(gen, 0.0005, 0.004), uniform(gen, 0.001, 0.006)
    noisy = scene * gain
    noisy = noisy + torch.randn(noisy.shape, generator=gen) * (noisy.clamp(min=0) * shot + read**2).sqrt()
    return _linear_to_srgb(noisy)
