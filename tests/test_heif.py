"""HEIF/HEIC (iPhone) and AVIF photos in and out, through the real codecs (pillow-heif, Pillow's AVIF),
on a real photo with EXIF orientation, camera tags and an ICC profile."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from PIL import Image, ImageCms

from clnsod_core.imaging.formats import AVIF, HEIF, sniff
from clnsod_core.imaging.io import load_photo_with_meta

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _phone_photo(landscape_photo: Path, path: Path) -> Path:
    """The landscape photo stored sideways with orientation 6 (as phones do), camera tags and a profile."""
    with Image.open(landscape_photo) as im:
        sideways = im.convert("RGB").transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Apple", "iPhone 15"
    sideways.save(path, exif=exif.tobytes(), icc_profile=SRGB, quality=90)
    return path


@pytest.mark.parametrize("fmt", [HEIF, AVIF], ids=lambda f: f.name)
def test_phone_photo_in_and_out(fmt, landscape_photo: Path, tmp_path: Path) -> None:
    source = _phone_photo(landscape_photo, tmp_path / f"IMG_0001{fmt.suffixes[0]}")
    assert sniff(source) is fmt
    photo, meta = load_photo_with_meta(source)
    with Image.open(landscape_photo) as im:
        assert photo.shape[:2] == (im.height, im.width)  # upright, whichever way the format stores orientation
        assert np.abs(photo.astype(int) - np.asarray(im.convert("RGB"), int)).mean() < 6  # lossy, same picture
    assert meta.source_format == fmt.name and meta.icc_profile == SRGB

    out = tmp_path / f"replaced{fmt.suffixes[0]}"
    result = run_cli("replace", source, "--sky", "sunset", "-o", out)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as im:
        assert im.format == fmt.name and (im.height, im.width) == photo.shape[:2]
        exif = im.getexif()
        assert exif.get(0x010F) == "Apple" and exif.get(0x0110) == "iPhone 15" and exif.get(0x0112, 1) == 1
        assert im.info.get("icc_profile") == SRGB
        top = np.asarray(im.convert("RGB"))[: photo.shape[0] // 5].astype(float)
    assert top.mean() != pytest.approx(photo[: photo.shape[0] // 5].mean(), abs=5)  # the sky changed

    as_jpeg = run_cli("replace", source, "--sky", "sunset", "-o", tmp_path / "replaced.jpg")
    assert as_jpeg.returncode == 0, as_jpeg.stderr


def test_batch_finds_and_writes_heic(landscape_photo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "shoot"
    folder.mkdir()
    _phone_photo(landscape_photo, folder / "IMG_0002.HEIC")
    Image.open(landscape_photo).save(folder / "DSC_0003.jpg")
    result = run_cli("batch", folder, "-o", tmp_path / "out", "--sky", "clear-blue", "--format", "heic")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["DSC_0003.heic", "IMG_0002.heic"]


def test_missing_codec_is_named_with_what_to_install(landscape_photo: Path, tmp_path: Path) -> None:
    """Python without pillow-heif (its import blocked, which is how Python reports a missing package)."""
    source = _phone_photo(landscape_photo, tmp_path / "IMG_0004.heic")
    # run_cli appends "-m clnsod_core.frontends.cli ARGS": run that module with the import blocked.
    without_heif = [sys.executable, "-c", "import runpy, sys; sys.modules['pillow_heif'] = None; module = sys.argv[2]; "
                    "del sys.argv[1:3]; runpy.run_module(module, run_name='__main__', alter_sys=True)"]
    read = run_cli("replace", source, "--sky", "sunset", "-o", tmp_path / "o.jpg", launcher=without_heif)
    assert read.returncode == 1 and "Traceback" not in read.stderr
    assert f"{source}: reading HEIF needs pip install 'clnsod[heif]'" in read.stderr
    write = run_cli("replace", landscape_photo, "--sky", "sunset", "-o", tmp_path / "o.heic", launcher=without_heif)
    assert write.returncode == 2 and "writing HEIF needs pip install 'clnsod[heif]'" in write.stderr
    batch = run_cli("batch", tmp_path, "-o", tmp_path / "out", "--sky", "sunset", "--format", "heic",
                    launcher=without_heif)
    assert batch.returncode == 2 and "writing HEIF needs pip install 'clnsod[heif]'" in batch.stderr
    listing = run_cli("formats", launcher=without_heif)
    assert listing.returncode == 0 and "HEIF" in listing.stdout and "read no, write no" in listing.stdout
