"""Fractal value noise for the sky presets, with detail down to a pixel or two at any output size.

Each octave is a lattice of random values, smoothly (bicubic) interpolated over the whole frame.
The lattices depend only on the seed, the octave and the frame's aspect, never on its size, so a
sky rendered at 1000 px and at 6000 px has the same clouds; the larger one simply gets more
octaves of finer detail (real clouds have structure at every scale, so a sky rendered small and
upscaled looks soft at 100 %). The sum is built coarse to fine like a Laplacian pyramid: each
octave is rendered at about 8 px per lattice cell and added to the upsampled sum of the coarser
ones, so only the last two or three octaves cost a full-size pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PX_PER_CELL = 8  # resolution at which an octave is rendered before the finer ones are added
FINEST_CELL_PX = 2.0  # stop adding octaves when a lattice cell would be smaller than this
MAX_OCTAVES = 14


def _resize(field: torch.Tensor, h: int, w: int, mode: str) -> torch.Tensor:
    if field.shape[-2:] == (h, w):
        return field
    return F.interpolate(field, size=(h, w), mode=mode, align_corners=True)


def fbm(h: int, w: int, rng: np.random.Generator, base_cells: int = 3, stretch: float = 2.5,
        gain: float = 0.5, finest_px: float = FINEST_CELL_PX) -> torch.Tensor:
    """Fractal value noise in [0, 1], (h, w) float32; cells are ``stretch`` times wider than tall.

    ``gain`` is the amplitude ratio of one octave to the next coarser one (0.5: the classic 1/f
    "clouds"; larger = more fine detail). Takes exactly one draw from ``rng`` whatever the size,
    so noise fields drawn after this one do not change with the output size either.
    """
    octave_rng = np.random.default_rng(int(rng.integers(2**63)))
    total: torch.Tensor | None = None
    amp, norm = 1.0, 0.0
    for octave in range(MAX_OCTAVES):
        cells_x = base_cells * 2**octave
        cells_y = max(1, round(cells_x * h / max(w, 1) * stretch))
        if octave > 0 and min(w / cells_x, h / cells_y) < finest_px:
            break
        lattice = torch.from_numpy(octave_rng.random((cells_y + 1, cells_x + 1), dtype=np.float32))[None, None]
        rh, rw = min(h, cells_y * PX_PER_CELL + 1), min(w, cells_x * PX_PER_CELL + 1)
        if total is None:
            total = _resize(lattice, rh, rw, "bicubic").mul_(amp)
        else:  # the coarser sum resized before this octave is: never three planes of this size at once
            total = _resize(total, rh, rw, "bilinear")
            total.add_(_resize(lattice, rh, rw, "bicubic"), alpha=amp)
        norm += amp
        amp *= gain
    assert total is not None
    out = _resize(total, h, w, "bicubic")[0, 0]
    sample = out[:: max(1, h // 256), :: max(1, w // 256)].flatten()  # a grid sample: fast at any size
    lo, hi = (float(q) for q in torch.quantile(sample, torch.tensor([0.01, 0.99])))
    return out.sub_(lo).mul_(1 / max(hi - lo, 1e-6)).clamp_(0, 1)  # in place: full-size copies are slow
