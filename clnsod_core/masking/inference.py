"""The one inference API: photo in, full-resolution soft sky probability out.

The CLI and every host plugin go through ``SkyMasker``; nothing else runs the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clnsod_core.arrays import as_u8
from clnsod_core.imaging.colour import ColourSpace, to_srgb_u8
from clnsod_core.imaging.io import DEFAULT_MAX_PIXELS, load_photo_with_meta
from clnsod_core.network.fold import fold_batch_norms
from clnsod_core.network.model import CLNSOD
from clnsod_core.network.preprocess import resize_rgb, to_tensor
from clnsod_core.runtime import resolve_device
from clnsod_core.weights.download import ProgressCallback
from clnsod_core.weights.format import load_model
from clnsod_core.weights.registry import resolve_weights


def embedded_weights_path() -> Path:
    """The default weights shipped inside the package (works offline), verified by sha256."""
    return resolve_weights(None)


class SkyMasker:
    """Loads a CLN-SOD network once and predicts sky probabilities for photos."""

    def __init__(
        self,
        weights: Path | str | None = None,
        device: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        download_progress: ProgressCallback | None = None,
    ):
        """``weights``: registry name, file path or URL (None = embedded default)."""
        self.weights_path = resolve_weights(weights, progress=download_progress)
        self.device = resolve_device(device)
        # Batch norms folded into the convolutions, and channels-last (the photos arrive
        # pixel-interleaved): each makes the network ~10-15 % faster on a CPU, with the same answers.
        model = fold_batch_norms(load_model(self.weights_path))
        self.model: CLNSOD = model.to(self.device, memory_format=torch.channels_last)  # type: ignore[assignment]
        self.max_pixels = max_pixels

    @property
    def input_size(self) -> int:
        return self.model.config.input_size

    def predict_working_size(self, images: Sequence[np.ndarray | Image.Image],
                             spaces: Sequence[ColourSpace | None] | None = None) -> torch.Tensor:
        """(B, S, S) float32 sky probabilities at the network's working size; ``spaces`` are the
        photos' colour spaces (None = sRGB): the network sees every photo in sRGB."""
        return predict_working_size(self.model, images, self.device, spaces)

    def predict_batch(self, images: list[np.ndarray],
                      spaces: Sequence[ColourSpace | None] | None = None) -> list[np.ndarray]:
        """Full-resolution (H, W) float32 probabilities in [0, 1] for RGB photos (uint8 or uint16)."""
        if not images:
            return []
        small = self.predict_working_size(images, spaces)
        return [upsample_probability(prob, image.shape[:2]) for prob, image in zip(small, images, strict=True)]

    def predict(self, image: np.ndarray) -> np.ndarray:
        return self.predict_batch([image])[0]

    def predict_file(self, path: Path | str) -> tuple[np.ndarray, np.ndarray]:
        """(upright RGB photo, uint8 or uint16, its sky probability); PhotoError on unusable input."""
        image, meta = load_photo_with_meta(path, self.max_pixels)
        return image, self.predict_batch([image], [ColourSpace(meta.icc_profile)])[0]


def network_input(image: np.ndarray | Image.Image, size: int, space: ColourSpace | None = None) -> np.ndarray:
    """What the network sees of a photo (an array of any depth, or its 8-bit Pillow image): (size,
    size, 3) uint8 sRGB (resized first: converting colours at the working size costs nothing)."""
    small = resize_rgb(image if isinstance(image, Image.Image) else as_u8(image), size)
    return small if space is None else to_srgb_u8(small, space)


@torch.inference_mode()
def predict_working_size(model: CLNSOD, images: Sequence[np.ndarray | Image.Image], device: torch.device,
                         spaces: Sequence[ColourSpace | None] | None = None) -> torch.Tensor:
    """(B, S, S) float32 sky probabilities at the network's working size (also used by validation)."""
    spaces = spaces if spaces is not None else [None] * len(images)
    size = model.config.input_size
    batch = to_tensor([network_input(image, size, space) for image, space in zip(images, spaces, strict=True)])
    return torch.sigmoid(model(batch.to(device)).logits.float())[:, 0].cpu()


def upsample_probability(prob: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one (S, S) probability map to (H, W) float32."""
    out = F.interpolate(prob[None, None], size=size, mode="bilinear", align_corners=False)
    return out[0, 0].clamp_(0.0, 1.0).numpy()
