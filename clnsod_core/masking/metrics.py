"""Saliency / segmentation metrics for sky masks.

MAE, F-measure curve (beta^2 = 0.3) and S-measure follow pysodmetrics' definitions
(by default the prediction is min-max stretched per image, ground truth thresholded at
128/255) so numbers are comparable with the SOD literature. IoU is pooled over the
dataset, thresholding the raw (unstretched) prediction at 0.5.
Void pixels, when given, are left out of every pixel count (S-measure: they are set to
the ground truth, i.e. counted as correct, because it needs the full image grid).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BETA2 = 0.3
NO_SKY_CLEAN_AREA = 0.005  # a photo without sky counts as clean when < 0.5 % of it is called sky
_EPS = np.spacing(1)


def to_unit_float(pred: np.ndarray) -> np.ndarray:
    """uint8 (0..255) or float (0..1) map -> float64 in [0, 1]."""
    out = pred.astype(np.float64)
    return out / 255.0 if pred.dtype == np.uint8 else out


def min_max_stretch(pred: np.ndarray) -> np.ndarray:
    """Per-image min-max stretch, as pysodmetrics does before MAE/F/S."""
    lo, hi = pred.min(), pred.max()
    return (pred - lo) / (hi - lo) if hi != lo else pred


def binarize_gt(gt: np.ndarray) -> np.ndarray:
    if gt.dtype == np.uint8:
        return gt > 128
    return gt > 0.5


def f_measure_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """F-measure at the 256 thresholds 255..0 of the 8-bit prediction (pysodmetrics order)."""
    pred_u8 = (pred * 255).astype(np.uint8)
    bins = np.linspace(0, 256, 257)
    fg_hist, _ = np.histogram(pred_u8[gt], bins=bins)
    bg_hist, _ = np.histogram(pred_u8[~gt], bins=bins)
    tp = np.cumsum(np.flip(fg_hist))
    positives = tp + np.cumsum(np.flip(bg_hist))
    positives[positives == 0] = 1
    precision = tp / positives
    recall = tp / max(np.count_nonzero(gt), 1)
    numerator = (1 + BETA2) * precision * recall
    denominator = np.where(numerator == 0, 1, BETA2 * precision + recall)
    return numerator / denominator


def _object_score(values: np.ndarray) -> float:
    mean = values.mean()
    return 2 * mean / (mean**2 + 1 + values.std(ddof=1) + _EPS)


def _s_object(pred: np.ndarray, gt: np.ndarray) -> float:
    gt_mean = gt.mean()
    fg = pred[gt] if gt.any() else np.array([0.0, 0.0])
    bg = 1 - pred[~gt] if (~gt).any() else np.array([0.0, 0.0])
    return gt_mean * _object_score(fg) + (1 - gt_mean) * _object_score(bg)


def _centroid(gt: np.ndarray) -> tuple[int, int]:
    h, w = gt.shape
    area = np.count_nonzero(gt)
    if area == 0:
        return int(np.round(w / 2)), int(np.round(h / 2))
    ys, xs = np.nonzero(gt)
    return int(np.round(xs.mean())) + 1, int(np.round(ys.mean())) + 1


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    h, w = pred.shape
    n = h * w
    gtf = gt.astype(np.float64)
    x, y = pred.mean(), gtf.mean()
    sxx = ((pred - x) ** 2).sum() / (n - 1 + _EPS)
    syy = ((gtf - y) ** 2).sum() / (n - 1 + _EPS)
    sxy = ((pred - x) * (gtf - y)).sum() / (n - 1 + _EPS)
    alpha = 4 * x * y * sxy
    beta = (x**2 + y**2) * (sxx + syy)
    if alpha != 0:
        return alpha / (beta + _EPS)
    return 1.0 if alpha == 0 and beta == 0 else 0.0


def _s_region(pred: np.ndarray, gt: np.ndarray) -> float:
    h, w = gt.shape
    area = h * w
    cx, cy = _centroid(gt)
    parts = [
        (slice(0, cy), slice(0, cx)),
        (slice(0, cy), slice(cx, w)),
        (slice(cy, h), slice(0, cx)),
        (slice(cy, h), slice(cx, w)),
    ]
    weights = [cx * cy / area, cy * (w - cx) / area, (h - cy) * cx / area]
    weights.append(1 - sum(weights))
    return sum(wt * _ssim(pred[r, c], gt[r, c]) for wt, (r, c) in zip(weights, parts))


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure (Fan et al. 2017) of a [0,1] prediction against a bool mask."""
    y = gt.mean()
    if y == 0:
        return 1 - pred.mean()
    if y == 1:
        return pred.mean()
    return max(0.0, alpha * _s_object(pred, gt) + (1 - alpha) * _s_region(pred, gt))


@dataclass
class MetricAccumulator:
    """Accumulates one dataset's metrics image by image."""

    with_s_measure: bool = False
    # pysodmetrics stretches each prediction to [0, 1]; False scores the raw probabilities.
    stretch: bool = True
    intersection: int = 0
    union: int = 0
    fg_as_sky: int = 0  # foreground pixels predicted as sky (>= 0.5)
    sky_as_fg: int = 0
    fg_total: int = 0
    sky_total: int = 0
    mae_sum: float = 0.0
    s_sum: float = 0.0
    count: int = 0
    f_curves: list[np.ndarray] = field(default_factory=list)
    # Area called sky (>= 0.5) in each image whose ground truth has no sky at all.
    no_sky_areas: list[float] = field(default_factory=list)

    def add(self, pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> None:
        """``pred``: uint8 or float [0,1] map; ``gt``: uint8 or bool mask; same shape."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        raw = to_unit_float(pred)
        p = min_max_stretch(raw) if self.stretch else raw
        g = binarize_gt(gt) if gt.dtype != bool else gt
        valid = np.ones_like(g) if void is None else ~void.astype(bool)
        if self.with_s_measure:
            p_full = np.where(valid, p, g.astype(np.float64))
            self.s_sum += s_measure(p_full, g)
        pv, gv = p[valid], g[valid]
        hard = raw[valid] >= 0.5
        self.intersection += int(np.count_nonzero(hard & gv))
        self.union += int(np.count_nonzero(hard | gv))
        self.fg_as_sky += int(np.count_nonzero(hard & ~gv))
        self.sky_as_fg += int(np.count_nonzero(~hard & gv))
        self.sky_total += int(np.count_nonzero(gv))
        self.fg_total += int(gv.size - np.count_nonzero(gv))
        self.mae_sum += float(np.abs(pv - gv).mean()) if pv.size else 0.0
        self.f_curves.append(f_measure_curve(pv, gv))
        if not gv.any():
            self.no_sky_areas.append(float(hard.mean()) if hard.size else 0.0)
        self.count += 1

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no images were evaluated")
        out = {
            "iou": self.intersection / self.union if self.union else 1.0,
            "mae": self.mae_sum / self.count,
            "max_f": float(np.mean(self.f_curves, axis=0).max()),
            "fg_as_sky": self.fg_as_sky / max(1, self.fg_total),
            "sky_as_fg": self.sky_as_fg / max(1, self.sky_total),
        }
        if self.with_s_measure:
            out["s_measure"] = self.s_sum / self.count
        if self.no_sky_areas:
            areas = np.asarray(self.no_sky_areas)
            out["no_sky_images"] = float(areas.size)
            out["no_sky_mean_area"] = float(areas.mean())
            out["no_sky_clean"] = float(np.mean(areas < NO_SKY_CLEAN_AREA))
        out["images"] = float(self.count)
        return out
