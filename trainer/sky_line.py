"""Where a label's sky ends, column by column: the line the looks (haze, calm water, night glow,
thin structures) are placed against."""

from __future__ import annotations

import torch


def horizon_rows(sky: torch.Tensor) -> torch.Tensor | None:
    """Per column, the row just below the lowest sky pixel (S,), or None without sky. Columns
    without sky take the median of the others, so a tree at the frame's edge does not reset it."""
    s = sky[0] > 0.5
    has_sky = s.any(dim=0)
    if not bool(has_sky.any()):
        return None
    rows = torch.arange(s.shape[0]).view(-1, 1).expand_as(s)
    lowest = torch.where(s, rows, torch.full_like(rows, -1)).amax(dim=0) + 1
    fill = lowest[has_sky].float().median().round().long()
    return torch.where(has_sky, lowest, fill)


def height_above(horizon: torch.Tensor, height: int) -> torch.Tensor:
    """(height, S): how far each pixel lies above its column's sky line (``horizon_rows``), as a share
    of the frame's height; negative below it."""
    rows = torch.arange(height, dtype=torch.float32).view(height, 1)
    return (horizon.view(1, -1).float() - rows) / height
