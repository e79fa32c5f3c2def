"""The inference API with the embedded weights, in-process."""

from pathlib import Path

import numpy as np
import pytest

from clnsod_core.imaging.io import PhotoError
from clnsod_core.masking.inference import SkyMasker, embedded_weights_path


@pytest.fixture(scope="module")
def masker() -> SkyMasker:
    return SkyMasker(device="cpu")


def test_embedded_weights_are_small_fp16(masker: SkyMasker) -> None:
    assert embedded_weights_path().stat().st_size <= 20 * 1024 * 1024
    assert masker.input_size == 384 and masker.model.config.use_context_prior


def test_full_resolution_probability(masker: SkyMasker, landscape_photo: Path) -> None:
    photo, sky = masker.predict_file(landscape_photo)
    assert sky.shape == photo.shape[:2] and sky.dtype == np.float32
    assert 0.0 <= sky.min() and sky.max() <= 1.0 and np.isfinite(sky).all()
    small = photo[::3, ::3].copy()
    batched = masker.predict_batch([photo, small])
    np.testing.assert_allclose(batched[0], sky, atol=1e-4)
    assert batched[1].shape == small.shape[:2]
    assert masker.predict_batch([]) == []


def test_bad_file_raises_photo_error(masker: SkyMasker, tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_text("nope")
    with pytest.raises(PhotoError, match="x.jpg: not an image file"):
        masker.predict_file(tmp_path / "x.jpg")
