"""The one resize used by both training and inference, so the network sees the same pixels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def resize_rgb(image: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """(H, W, 3) uint8 (or that photo as an RGB Pillow image, when one is at hand) -> (size, size, 3)
    uint8, antialiased bilinear (aspect is not kept)."""
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (size, size):
            return image
        image = Image.fromarray(image)
    if image.size == (size, size):
        return np.asarray(image)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """List of (S, S, 3) uint8 -> (B, 3, S, S) float in [0, 1]."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return batch.float().div_(255.0)
