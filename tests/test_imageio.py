from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clnsod_core.imaging.io import PhotoError, load_photo, save_mask_png
from clnsod_core.runtime import resolve_device


@pytest.fixture()
def rgb(landscape_photo: Path) -> Image.Image:
    with Image.open(landscape_photo) as im:
        return im.convert("RGB").resize((96, 64))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "PA"])
def test_every_mode_becomes_rgb(rgb: Image.Image, mode: str, tmp_path: Path) -> None:
    if mode == "I;16":
        gray = np.asarray(rgb.convert("L")).astype(np.uint16) * 257
        im = Image.fromarray(gray)
        assert im.mode == "I;16"
    elif mode == "PA":
        im = rgb.convert("P")
        im.info["transparency"] = 0
    else:
        im = rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    im.save(path)
    out = load_photo(path)
    assert out.shape == (64, 96, 3) and out.dtype == (np.uint16 if mode == "I;16" else np.uint8)
    if mode == "I;16":  # 16-bit gray stays 16-bit (test_deep.py has the rest of 16-bit photos)
        np.testing.assert_array_equal(out[..., 0], np.asarray(rgb.convert("L")).astype(np.uint16) * 257)


def test_exif_orientation_is_applied(rgb: Image.Image, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "rot.jpg"
    rgb.save(path, exif=exif)
    assert load_photo(path).shape == (96, 64, 3)


def test_bad_files_give_one_clear_reason(tmp_path: Path, landscape_photo: Path) -> None:
    cases = {}
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases["empty.jpg"] = "empty file"
    (tmp_path / "text.jpg").write_text("not a photo")
    cases["text.jpg"] = "not an image file"
    data = landscape_photo.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    cases["cut.jpg"] = "truncated"
    (tmp_path / "dir.jpg").mkdir()
    cases["dir.jpg"] = "is a directory"
    cases["missing.jpg"] = "file not found"
    for name, reason in cases.items():
        with pytest.raises(PhotoError, match=reason) as info:
            load_photo(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name))
        assert "\n" not in str(info.value)


def test_huge_dimensions_are_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(path)  # tiny file, 900 MP once decoded
    assert path.stat().st_size < 200_000
    with pytest.raises(PhotoError, match="image too large .*decompression-bomb limit"):
        load_photo(path)
    small_bomb = tmp_path / "big.png"
    Image.new("1", (3000, 2000)).save(small_bomb)
    with pytest.raises(PhotoError, match=r"image too large \(3000x2000 = 6 MP; limit 1 MP\)"):
        load_photo(small_bomb, max_pixels=1_000_000)


def test_mask_is_written_atomically(tmp_path: Path) -> None:
    prob = np.linspace(0, 1, 50 * 40, dtype=np.float32).reshape(40, 50)
    target = tmp_path / "m.png"
    save_mask_png(prob, target)
    with Image.open(target) as im:
        assert im.mode == "L" and im.size == (50, 40)
        arr = np.asarray(im)
    assert arr.min() == 0 and arr.max() == 255 and len(np.unique(arr)) > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]


def test_device_choice() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
