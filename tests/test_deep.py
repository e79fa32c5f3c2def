"""16-bit photos end to end on a real photo: 16-bit PNG/TIFF in gives 16-bit PNG/TIFF out with its
profile and camera tags, the new sky has no 8-bit banding, float and planar TIFFs are read, and
without the 'deep' extra the user is told what was lost."""

from __future__ import annotations

import warnings
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from cli_runner import run_cli
from PIL import Image

from clnsod_core.imaging import deep
from clnsod_core.imaging.io import PhotoMeta, PhotoWarning, load_photo_with_meta, save_image

ICC = Path(__file__).parent / "data" / "icc"


@pytest.fixture(scope="module")
def photo16(landscape_photo: Path) -> np.ndarray:
    """The real photo area-averaged 2x in float: real detail between 8-bit levels, stored in 16 bits."""
    with Image.open(landscape_photo) as im:
        rgb = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    small = F.interpolate(rgb, scale_factor=0.5, mode="area")[0].permute(1, 2, 0).numpy()
    pixels = np.ascontiguousarray((small * 65535 + 0.5).astype(np.uint16))
    assert len(np.unique(pixels[..., 2])) > 256  # more levels than 8 bits can hold
    return pixels


def _camera_exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = orientation, "Nikon", "Z 8"
    return exif.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_files_round_trip_with_profile_tags_and_orientation(photo16: np.ndarray, suffix: str,
                                                                    tmp_path: Path) -> None:
    icc = (ICC / "AdobeRGB1998.icc").read_bytes()
    path = tmp_path / f"photo{suffix}"
    save_image(np.rot90(photo16, 1).copy(), path, PhotoMeta(_camera_exif(6), icc))  # stored sideways, orientation 6
    pixels, meta = load_photo_with_meta(path)
    if suffix == ".png":  # PNG keeps the EXIF orientation: reading turns the photo upright
        np.testing.assert_array_equal(pixels, np.rot90(np.rot90(photo16, 1), -1))
        exif = Image.Exif()
        exif.load(meta.exif)
        assert exif.get(0x010F) == "Nikon" and exif.get(0x0112) == 1  # tags kept, orientation now upright
    else:  # the TIFF writer stores the camera's text tags but no orientation: pixels as written
        np.testing.assert_array_equal(pixels, np.rot90(photo16, 1))
    assert meta.icc_profile == icc
    with Image.open(path) as im:  # other software sees the tags too
        assert im.getexif().get(0x010F) == "Nikon" and im.info.get("icc_profile") == icc


def _gradient_sky(path: Path, height: int, width: int) -> None:
    """A smooth 16-bit sky gradient (a clear sky photographed in 16 bits): 0.25 -> 0.55 blue."""
    t = np.linspace(0, 1, height, dtype=np.float64)[:, None, None]
    top, bottom = np.array([0.10, 0.25, 0.55]), np.array([0.45, 0.62, 0.85])
    sky = (top + (bottom - top) * t) * np.ones((1, width, 1))
    path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray((sky * 65535 + 0.5).astype(np.uint16))))


def _levels(column: np.ndarray) -> tuple[int, int]:
    """(distinct values, largest step between neighbours) of a column of 16-bit values."""
    return len(np.unique(column)), int(np.abs(np.diff(column.astype(np.int64))).max())


def test_a_16_bit_photo_gives_a_16_bit_replacement_without_banding(photo16: np.ndarray, tmp_path: Path) -> None:
    source, sky = tmp_path / "photo16.png", tmp_path / "sky16.png"
    source.write_bytes(deep.encode_png(photo16, None, _camera_exif()))
    _gradient_sky(sky, 600, 900)
    outputs = {}
    for suffix in (".png", ".tif", ".jpg"):
        out = tmp_path / f"out{suffix}"
        result = run_cli("replace", source, "--sky", sky, "--relight", "0", "--recolour", "0", "-o", out)
        assert result.returncode == 0 and result.stderr.count("warning") == 0, result.stderr
        outputs[suffix] = load_photo_with_meta(out)[0]
    assert outputs[".png"].dtype == outputs[".tif"].dtype == np.uint16 and outputs[".jpg"].dtype == np.uint8
    np.testing.assert_array_equal(outputs[".png"], outputs[".tif"])

    mask_dir = tmp_path / "mask"
    assert run_cli("mask", source, "-o", mask_dir).returncode == 0
    mask = np.asarray(Image.open(mask_dir / "photo16.png"))
    sky_rows = np.nonzero((mask == 255).all(axis=1))[0]  # rows that are sky across the whole width
    assert len(sky_rows) > 60
    column = outputs[".png"][sky_rows[5] : sky_rows[-5], photo16.shape[1] // 2, 2]
    distinct, step = _levels(column)
    column8 = outputs[".jpg"][sky_rows[5] : sky_rows[-5], photo16.shape[1] // 2, 2].astype(np.uint16) * 257
    distinct8, step8 = _levels(column8)
    # The gradient rises ~37 16-bit levels per output row: every row is its own level, no 257-steps.
    assert distinct >= 0.9 * len(column) and step < 257, (distinct, len(column), step)
    assert distinct8 < 0.5 * len(column) and step8 >= 257  # what 8 bits would have given
    # The foreground keeps its 16-bit detail (no harmonisation asked: it is the photo itself).
    ground = mask[-40:] == 0
    np.testing.assert_array_equal(outputs[".png"][-40:][ground], photo16[-40:][ground])


def test_float_and_planar_tiffs_are_read(photo16: np.ndarray, tmp_path: Path) -> None:
    icc = (ICC / "ProPhotoRGB.icc").read_bytes()
    float_tiff, planar = tmp_path / "float.tif", tmp_path / "planar.tif"
    tifffile.imwrite(float_tiff, photo16.astype(np.float32) / 65535, photometric="rgb", iccprofile=icc)
    tifffile.imwrite(planar, np.moveaxis(photo16, -1, 0), photometric="rgb", planarconfig="separate")
    pixels, meta = load_photo_with_meta(float_tiff)
    assert pixels.dtype == np.uint16 and np.abs(pixels.astype(int) - photo16).max() <= 1 and meta.icc_profile == icc
    np.testing.assert_array_equal(load_photo_with_meta(planar)[0], photo16)
    out = tmp_path / "out.tif"
    assert run_cli("replace", float_tiff, "--sky", "overcast", "-o", out).returncode == 0
    assert load_photo_with_meta(out)[0].dtype == np.uint16


def test_without_the_extra_16_bits_are_read_as_8_with_a_warning(photo16: np.ndarray, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The extra is installed here, so its absence is simulated (the one mock in this file)."""
    path = tmp_path / "photo16.png"
    path.write_bytes(deep.encode_png(photo16, None, None))
    monkeypatch.setattr(deep, "AVAILABLE", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels, _ = load_photo_with_meta(path)
    assert pixels.dtype == np.uint8
    assert [str(w.message) for w in caught if w.category is PhotoWarning] == [
        f"{path}: 16-bit image read at 8 bits; {deep.INSTALL} keeps all 16"]
