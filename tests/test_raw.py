"""Camera RAW through LibRaw (rawpy) on DNGs made from a real photo (see raw_files.py): developed
at 16 bits with the camera's white balance, upright from the raw's orientation, replaced into 16-bit
TIFF/PNG or 8-bit JPEG, found by batch; broken raws and a missing extra give one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from PIL import Image
from raw_files import write_dng

from clnsod_core.imaging import raw
from clnsod_core.imaging.io import PhotoError, load_photo_with_meta


@pytest.fixture(scope="module")
def scene(landscape_photo: Path) -> np.ndarray:
    with Image.open(landscape_photo) as im:
        return np.asarray(im.convert("RGB"))


def test_a_dng_is_developed_at_16_bits_with_camera_white_balance(scene: np.ndarray, tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "DSC_0001.dng", scene)
    pixels, meta = load_photo_with_meta(dng)
    assert pixels.dtype == np.uint16 and pixels.shape == scene.shape and meta.source_format == "RAW"
    assert len(np.unique(pixels[..., 1])) > 1000  # a real 16-bit development, not 8 bits scaled up
    developed = pixels.astype(np.float64) / 65535
    original = scene.astype(np.float64) / 255
    # LibRaw brightens automatically (like a camera JPEG); colour balance and content must match.
    gain = developed.mean(axis=(0, 1)) / original.mean(axis=(0, 1))
    assert gain.max() / gain.min() < 1.03, gain  # the camera's white balance undid the sensor's green cast
    for c in range(3):
        assert np.corrcoef(developed[..., c].ravel(), original[..., c].ravel())[0, 1] > 0.99


def test_the_raw_orientation_is_applied(scene: np.ndarray, tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "portrait.dng", scene, orientation=6)  # camera turned: rotate 90 clockwise
    pixels = load_photo_with_meta(dng)[0].astype(np.float64)
    upright = np.rot90(scene, -1).astype(np.float64)
    assert pixels.shape == upright.shape
    assert np.corrcoef(pixels[..., 1].ravel(), upright[..., 1].ravel())[0, 1] > 0.99


def test_replace_and_batch_take_raw_files(scene: np.ndarray, tmp_path: Path) -> None:
    photos = tmp_path / "card"
    photos.mkdir()
    dng = write_dng(photos / "DSC_0002.dng", scene)
    for suffix, dtype in ((".tif", np.uint16), (".png", np.uint16), (".jpg", np.uint8)):
        out = tmp_path / f"replaced{suffix}"
        result = run_cli("replace", dng, "--sky", "golden-hour", "-o", out)
        assert result.returncode == 0, result.stderr
        assert load_photo_with_meta(out)[0].dtype == dtype
    result = run_cli("batch", photos, "-o", tmp_path / "out", "--sky", "sunset", "--format", "tif")
    assert result.returncode == 0, result.stderr
    assert load_photo_with_meta(tmp_path / "out" / "DSC_0002.tif")[0].dtype == np.uint16


def test_broken_raw_files_get_one_clear_line(tmp_path: Path, scene: np.ndarray) -> None:
    not_raw = tmp_path / "IMG_0003.CR2"
    not_raw.write_bytes(b"this is not a raw file at all" * 100)
    dng = write_dng(tmp_path / "cut.dng", scene)
    truncated = tmp_path / "truncated.nef"
    truncated.write_bytes(dng.read_bytes()[:5000])
    for bad in (not_raw, truncated):
        result = run_cli("replace", bad, "--sky", "sunset", "-o", tmp_path / f"{bad.stem}.tif")
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and str(bad) in lines[0], result.stderr
        assert ("truncated" if bad is truncated else "not a camera raw file") in lines[0]
        assert not (tmp_path / f"{bad.stem}.tif").exists()


def test_without_rawpy_the_error_names_the_extra(tmp_path: Path, scene: np.ndarray,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """rawpy is installed here, so its absence is simulated (the one mock in this file)."""
    dng = write_dng(tmp_path / "DSC_0004.dng", scene)
    monkeypatch.setattr(raw, "AVAILABLE", False)
    with pytest.raises(PhotoError, match=r"reading camera RAW \(\.dng\) needs pip install 'clnsod\[raw\]'"):
        load_photo_with_meta(dng)
