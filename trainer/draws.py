"""Random draws from an explicit ``torch.Generator``: every augmentation choice goes through these,
so a run seeded the same way (and a resumed one) draws exactly the same values."""

from __future__ import annotations

import torch


def uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def chance(gen: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=gen)) < p


def randint(gen: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (hi >= lo)."""
    return lo + int(torch.randint(0, max(1, hi - lo + 1), (), generator=gen))
