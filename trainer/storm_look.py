"""Storm clouds: dark, dense cloud masses laid over a photo's labelled sky.

The training photos' skies are mostly blue or bright; a dark grey storm bank sitting on the
horizon, or a sky filled with slate-coloured cumulus, looks to a network much like a mountain or a
wall, and was called foreground (the worst composites of the fine-structure benchmark, and the
all-cloud photos of the robustness report). The clouds are fractal noise, shaded darker at their
bases, only where the label says sky (weighted by the label, so thin structures in front stay as
they were); the label does not change: dark clouds are sky.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clnsod_core.compositing.fields import smoothstep

from .draws import chance, randint, uniform
from .sky_line import height_above, horizon_rows


def fractal_noise(height: int, width: int, gen: torch.Generator, octaves: int = 5) -> torch.Tensor:
    """(H, W) smooth noise in [0, 1]: random grids from 3 cells across, doubling per octave,
    each half the weight of the one before, upsampled bicubically and summed."""
    total = torch.zeros(1, 1, height, width)
    weight, cells = 1.0, 3
    for _ in range(octaves):
        grid = torch.rand((1, 1, cells, max(2, round(cells * width / height))), generator=gen)
        total += weight * F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        weight, cells = weight / 2, cells * 2
    total = total[0, 0]
    low, high = total.min(), total.max()
    return (total - low) / (high - low).clamp(min=1e-6)


def storm_look(img: torch.Tensor, sky: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``img`` (3, H, W) with dark cloud masses over its sky (``sky`` (1, H, W), the soft label).
    Half of the time the clouds thicken toward the sky line: a storm bank on the horizon."""
    if float(sky.mean()) < 0.08:
        return img
    h, w = img.shape[1:]
    density = fractal_noise(h, w, gen)
    horizon = horizon_rows(sky)
    if horizon is not None and chance(gen, 0.5):  # a bank resting on the horizon
        above = height_above(horizon, h).clamp(min=0)
        density = density + uniform(gen, 0.2, 0.6) * torch.exp(-above / uniform(gen, 0.1, 0.4))
    threshold = uniform(gen, 0.3, 0.65)
    edge = uniform(gen, 0.05, 0.25)
    cover = smoothstep(threshold - edge, threshold + edge, density)
    # Cloud bases are darker than their tops: shade by how far the density has risen above the edge.
    depth = (density - threshold).clamp(min=0) / max(1e-6, 1 - threshold)
    grey = uniform(gen, 0.12, 0.5)
    tints = (torch.tensor([0.85, 0.92, 1.05]), torch.tensor([1.0, 0.9, 0.92]), torch.tensor([1.0, 1.0, 1.0]))
    tint = tints[randint(gen, 0, len(tints) - 1)].view(3, 1, 1)
    texture = 0.7 + 0.6 * fractal_noise(h, w, gen, octaves=6)
    clouds = (grey * tint * texture * (1 - 0.5 * depth)).clamp(0, 1)
    # A little of the sky's own light stays in the cloud (thin edges, sunset colour behind).
    clouds = torch.lerp(clouds, img, uniform(gen, 0.0, 0.25))
    opacity = uniform(gen, 0.75, 1.0)
    return torch.lerp(img, clouds, cover[None] * sky * opacity)
