"""Losses: BCE on the sky prediction and the cross-correlation (affinity) loss on S.

Labels use 0 = foreground, 1 = sky, 2 = void (unlabelled). Everything here runs in
fp32 even under autocast: BCE on probabilities is not autocast-safe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VOID = 2
NUM_CLASSES = 3
_EPS = 1e-6


def make_labels(mask: torch.Tensor, void: torch.Tensor | None) -> torch.Tensor:
    """(B, 1, H, W) sky mask in [0, 1] (+ optional bool void) -> (B, H, W) int64 labels."""
    labels = (mask[:, 0] > 0.5).long()
    if void is not None:
        labels = labels.masked_fill(void[:, 0].bool(), VOID)
    return labels


def downscale_labels(labels: torch.Tensor, side: int) -> torch.Tensor:
    """Nearest-neighbour downscale of (B, H, W) labels to (B, side, side)."""
    small = F.interpolate(labels[:, None].float(), size=(side, side), mode="nearest")
    return small[:, 0].long()


def ideal_affinity_map(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """A = L.L^T for (B, h, w) labels: (B, N, N), 1 where two positions share a label."""
    one_hot = F.one_hot(labels.flatten(1), num_classes).float()  # (B, N, K)
    return torch.bmm(one_hot, one_hot.transpose(1, 2))


def _ratio_or_one(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den, defined as 1 (nothing to get wrong) where the denominator is zero."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.ones_like(num))


def affinity_loss(context_map: torch.Tensor, ideal: torch.Tensor, global_weight: float = 1.0) -> torch.Tensor:
    """Unary BCE(S, A) plus global recall/precision/specificity terms, each -log(term).

    The diagonal (a position with itself) is excluded from recall and precision on both
    numerator and denominator, so S == A gives exactly zero loss, also for classes
    that occupy a single position.
    """
    s = context_map.float()
    a = ideal.float()
    unary = F.binary_cross_entropy(s.clamp(_EPS, 1.0 - _EPS), a)
    off_diag = 1.0 - torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    a_off = a * off_diag
    s_off = s * off_diag
    hits = (s * a_off).sum(-1)
    recall = _ratio_or_one(hits, a_off.sum(-1))
    precision = _ratio_or_one(hits, s_off.sum(-1))
    specificity = _ratio_or_one(((1.0 - s) * (1.0 - a)).sum(-1), (1.0 - a).sum(-1))
    global_term = sum(-torch.log(t.clamp(min=_EPS)).mean() for t in (recall, precision, specificity))
    return unary + global_weight * global_term


def masked_bce_with_logits(logits: torch.Tensor, target: torch.Tensor, void: torch.Tensor | None) -> torch.Tensor:
    """Pixel BCE averaged over non-void pixels (zero if every pixel is void)."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    if void is None:
        return per_pixel.mean()
    valid = (~void.bool()).float()
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1.0)


def anchor_loss(
    logits: torch.Tensor, anchor_prob: torch.Tensor, mask: torch.Tensor, void: torch.Tensor | None
) -> torch.Tensor:
    """BCE toward another network's sky probability, on the pixels where that network agrees with
    the label (both on the same side of 0.5, not void): a fine-tune keeps what the anchor already
    gets right ("learning without forgetting") and is free to change where it is wrong.
    Zero when the two never agree."""
    agree = (anchor_prob > 0.5) == (mask > 0.5)
    if void is not None:
        agree &= ~void.bool()
    return masked_bce_with_logits(logits, anchor_prob, ~agree)


def clnsod_loss(
    logits: torch.Tensor,
    context_map: torch.Tensor | None,
    mask: torch.Tensor,
    void: torch.Tensor | None,
    affinity_weight: float = 1.0,
    global_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Total training loss and its parts. ``context_map`` None = ablation (BCE only)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        seg = masked_bce_with_logits(logits, mask, void)
        parts = {"bce": seg}
        total = seg
        if context_map is not None:
            side = int(round(context_map.shape[-1] ** 0.5))
            labels = downscale_labels(make_labels(mask, void), side)
            aff = affinity_loss(context_map, ideal_affinity_map(labels), global_weight)
            parts["affinity"] = aff
            total = total + affinity_weight * aff
        parts["total"] = total
    return parts
