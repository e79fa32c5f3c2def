"""Fine training targets from coarse sky labels.

Hand-drawn polygon labels mark a tree crown, a truss or a fence as solid foreground, and a
network trained on them learns solid blobs. ``refine_label`` turns such a label into a soft
target with the same machinery the matte uses: the label is softened into an uncertain band
around its boundary, the photo's own sky colours (learnt from the labelled sky) open sky where
it clearly shows through structures next to the sky and cut out thin dark structures drawn as
sky, and the confidence-weighted guided filter gives partial coverage at edges (the recipe of
"Sky Optimization", Liba et al. 2020). Far from the sky nothing changes, so a white wall or snow
stays foreground.
"""

from __future__ import annotations

import numpy as np
import torch

from clnsod_core.arrays import to_u8
from clnsod_core.masking.matte import MatteOptions, box_filter, edge_aware_matte

SOFT_MARKER = "soft_labels.json"  # a training folder holding this file has soft (0..255) masks
BAND = 0.006  # half-width of the uncertain band around the coarse boundary, fraction of the long side


def refine_label(image: np.ndarray, label: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """Soft sky target (H, W) uint8 (255 = sky) for RGB uint8 ``image`` and its coarse 0/255 ``label``;
    void pixels (bool) keep the original label (they are excluded from training losses anyway)."""
    if image.shape[:2] != label.shape:
        raise ValueError(f"label {label.shape} and image {image.shape[:2]} differ in size")
    hard = label > 127
    if not hard.any() or hard.all():
        return np.where(hard, 255, 0).astype(np.uint8)
    h, w = label.shape
    radius = max(1, round(BAND * max(h, w)))
    soft = box_filter(torch.from_numpy(hard.astype(np.float32))[None, None], radius)[0, 0]
    matte = edge_aware_matte(image, soft, MatteOptions(guide_side=max(64, h, w)))
    out = to_u8(matte)
    if void is not None:
        out[void] = label[void]
    return out
