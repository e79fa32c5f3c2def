"""Fractal value noise for the sky presets, with detail down to a pixel or two at any output size.

Each octave is a lattice of random values, smoothly (bicubic) interpolated over the whole frame.
The lattices depend only on the seed, the octave and the frame's aspect, never on its size, so a
sky rendered at 1000 px and at 6000 px has the same clouds; the larger one simply gets more
octaves of finer detail (real clouds have structure at every scale, so a sky rendered small and
upscaled looks soft at 100 %). The sum is built coarse to fine like a Laplacian pyramid: each
octave is rendered at about 8 px per lattice cell and added to the upsampled sum of the coarser
ones, so only the last two or three octaves cost a full-size pass. Those bicubic upsamplings are
two sparse matrix products (4 weights per output row and column): the same interpolation as
``F.interpolate(mode="bicubic", align_corners=True)`` to float rounding (1e-6), in half its time.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

PX_PER_CELL = 8  # resolution at which an octave is rendered before the finer ones are added
FINEST_CELL_PX = 2.0  # stop adding octaves when a lattice cell would be smaller than this
MAX_OCTAVES = 14
CUBIC_A = -0.75  # the bicubic kernel's parameter, as in PyTorch (and OpenCV)


def _bilinear(field: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(h0, w0) -> (h, w), corners aligned."""
    if field.shape == (h, w):
        return field
    return F.interpolate(field[None, None], size=(h, w), mode="bilinear", align_corners=True)[0, 0]


@functools.lru_cache(maxsize=32)  # the two fields of a sky, and the skies of a batch, share their sizes
def _cubic_weights(n_in: int, n_out: int, transposed: bool = False) -> torch.Tensor:
    """The bicubic resampling from ``n_in`` to ``n_out`` samples (corners aligned, borders clamped) as a
    sparse CSR matrix (n_out, n_in), or (n_in, n_out) when ``transposed``: four weights per output
    (never written to: the cached matrices are shared)."""
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
    position = torch.arange(n_out, dtype=torch.float32) * torch.tensor(scale)
    first = position.floor()
    t = (position - first).clamp_(0, 1)
    a = CUBIC_A

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)])  # (4, n_out)
    sources = torch.stack([(first.long() + k - 1).clamp_(0, n_in - 1) for k in range(4)])
    outputs = torch.arange(n_out).expand(4, n_out)
    index = torch.stack([sources.flatten(), outputs.flatten()] if transposed else [outputs.flatten(), sources.flatten()])
    shape = (n_in, n_out) if transposed else (n_out, n_in)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_coo_tensor(index, weights.flatten(), shape, check_invariants=True).coalesce().to_sparse_csr()


def _bicubic(field: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(h0, w0) -> (h, w), corners aligned: a vertical and a horizontal pass, each one sparse matrix
    product, the cheaper one on the smaller intermediate first."""
    h0, w0 = field.shape
    if (h0, w0) == (h, w):
        return field
    if h * w0 <= h0 * w:
        return torch.mm(torch.sparse.mm(_cubic_weights(h0, h), field), _cubic_weights(w0, w, transposed=True))
    return torch.sparse.mm(_cubic_weights(h0, h), torch.mm(field, _cubic_weights(w0, w, transposed=True)))


def _quantiles(values: torch.Tensor, qs: tuple[float, ...]) -> list[float]:
    """``torch.quantile(values, qs)`` (linear interpolation, same arithmetic) by selection instead of a
    full sort: two order statistics per quantile."""
    ranks = torch.tensor(qs, dtype=torch.float32) * (values.numel() - 1)
    below, above = ranks.long(), ranks.ceil().long()

    def order_statistic(index: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.kthvalue(values, int(i) + 1).values for i in index])

    return order_statistic(below).lerp_(order_statistic(above), ranks - below).tolist()


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
        lattice = torch.from_numpy(octave_rng.random((cells_y + 1, cells_x + 1), dtype=np.float32))
        rh, rw = min(h, cells_y * PX_PER_CELL + 1), min(w, cells_x * PX_PER_CELL + 1)
        if total is None:
            total = _bicubic(lattice, rh, rw).mul_(amp)
        else:  # the coarser sum resized before this octave is: never three planes of this size at once
            total = _bilinear(total, rh, rw)
            total.add_(_bicubic(lattice, rh, rw), alpha=amp)
        norm += amp
        amp *= gain
    assert total is not None
    out = _bicubic(total, h, w)
    sample = out[:: max(1, h // 256), :: max(1, w // 256)].flatten()  # a grid sample: fast at any size
    lo, hi = _quantiles(sample, (0.01, 0.99))
    return out.sub_(lo).mul_(1 / max(hi - lo, 1e-6)).clamp_(0, 1)  # in place: full-size copies are slow
