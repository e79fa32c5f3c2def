"""50 and 100 MP panoramas within 4 GB of peak memory, clean refusal above the limit, and the
banded resampling that makes it possible (equal to one full-size ``F.interpolate``)."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_runner import CLI, run_cli
from conftest import PHOTOS
from PIL import Image, ImageOps

from clnsod_core.masking.matte import box_filter, box_filter_in_bands, resize_in_bands

PEAK_RSS_LIMIT = 4 * 1024**3


@pytest.fixture(scope="module")
def panoramas(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Real 12 MP photo, mirrored three times side by side and upscaled: 4.5:1 panoramas."""
    folder = tmp_path_factory.mktemp("pano")
    with Image.open(PHOTOS / "sunset_by_Aitzol_Berasategi.jpg") as im:
        im = im.convert("RGB")
        strip = Image.new("RGB", (im.width * 3, im.height))
        for i, tile in enumerate((im, ImageOps.mirror(im), im)):
            strip.paste(tile, (i * im.width, 0))
    out = {}
    for mp in (50, 100):
        scale = (mp * 1e6 / (strip.width * strip.height)) ** 0.5
        path = folder / f"pano_{mp}mp.jpg"
        strip.resize((round(strip.width * scale), round(strip.height * scale)), Image.Resampling.BILINEAR).save(path, quality=90)
        out[mp] = path
    return out


def peak_rss(*args: str | Path) -> tuple[int, str]:
    """(peak resident bytes of the CLI child, its stderr), via wait4's rusage of that child alone."""
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, stderr[-2000:]
    return usage.ru_maxrss * 1024, stderr


@pytest.mark.parametrize("megapixels", [50, 100])
def test_panorama_replace_and_mask_stay_under_4_gb(panoramas: dict[int, Path], tmp_path: Path, megapixels: int) -> None:
    photo = panoramas[megapixels]
    rss, stderr = peak_rss("replace", photo, "--sky", "sunset", "-o", tmp_path / "out.jpg")
    print(f"replace {megapixels} MP: peak RSS {rss / 1024**3:.2f} GiB")
    assert "1 written" in stderr and rss < PEAK_RSS_LIMIT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own 100 MP test photo
        with Image.open(tmp_path / "out.jpg") as im, Image.open(photo) as src:
            assert im.size == src.size
    rss, stderr = peak_rss("mask", photo, "-o", tmp_path / "masks")
    print(f"mask {megapixels} MP: peak RSS {rss / 1024**3:.2f} GiB")
    assert "1 written" in stderr and rss < PEAK_RSS_LIMIT


def test_above_the_limit_is_refused_cleanly(panoramas: dict[int, Path], tmp_path: Path) -> None:
    result = run_cli("replace", panoramas[100], "--sky", "sunset", "-o", tmp_path / "o.jpg", "--max-megapixels", "80")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{panoramas[100]}: image too large (21213x4714 = 100 MP; limit 80 MP)" in result.stderr
    assert not (tmp_path / "o.jpg").exists()
    help_text = run_cli("replace", "--help").stdout
    assert "--max-megapixels" in help_text and "150" in help_text


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("shape", [(37, 53, 400, 611), (300, 500, 97, 143), (1, 1, 5, 7), (64, 64, 63, 200)])
def test_banded_resize_equals_full_interpolate(shape: tuple[int, int, int, int], antialias: bool) -> None:
    h, w, out_h, out_w = shape
    src = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(src[None], size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=antialias)[0]
    got = torch.full((3, out_h, out_w), float("nan"))
    for y0, y1, band in resize_in_bands(src, out_h, out_w, antialias, band_pixels=3000):
        got[:, y0:y1] = band
    assert torch.allclose(got, expected, atol=3e-5), float((got - expected).abs().max())


def test_banded_box_filter_is_exact() -> None:
    x = torch.rand(333, 71, generator=torch.Generator().manual_seed(1))
    for r in (1, 3, 40):
        assert torch.allclose(box_filter_in_bands(x, r), box_filter(x[None, None], r)[0, 0], atol=1e-6)
