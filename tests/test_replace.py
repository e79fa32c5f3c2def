"""Sky replacement: matte, presets, placement, harmonisation, formats and metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from PIL import Image, ImageCms

from clnsod_core.arrays import to_u8
from clnsod_core.compositing.compose import (
    Harmonisation,
    SkyPlacement,
    composite,
    lowest_sky_line,
    place_sky,
)
from clnsod_core.compositing.layers import normal_blend, sky_over_original
from clnsod_core.compositing.skies import PRESETS, render_preset
from clnsod_core.masking.inference import SkyMasker
from clnsod_core.masking.matte import MatteOptions, refine_matte
from clnsod_core.replace import ReplaceOptions, SkyReplacer

OFF = Harmonisation(recolour=0.0, relight=0.0, halo=0.0)


@pytest.fixture(scope="module")
def replacer() -> SkyReplacer:
    return SkyReplacer(SkyMasker(device="cpu"))


def test_composite_geometry() -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    sky = rng.random((60, 80, 3), dtype=np.float32)
    matte = np.zeros((60, 80), np.float32)
    matte[:20] = 1.0
    matte[20:30] = 0.5
    out, foreground = composite(photo, matte, sky, OFF)
    np.testing.assert_array_equal(out[:20], (sky[:20] * 255 + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(out[30:], photo[30:])  # matte 0: original pixels, untouched
    np.testing.assert_array_equal(foreground, photo)
    mid = (sky[20:30] * 0.5 + photo[20:30] / 255.0 * 0.5) * 255
    assert np.abs(out[20:30].astype(float) - mid).max() <= 1.0


def test_real_photo_replacement_keeps_foreground(replacer: SkyReplacer, landscape_photo: Path) -> None:
    photo = np.asarray(Image.open(landscape_photo).convert("RGB"))
    result = replacer.replace(photo, "night-stars", ReplaceOptions(harmonisation=OFF))
    h = photo.shape[0]
    ground = result.matte == 0.0
    assert ground[int(0.8 * h):].mean() > 0.9
    np.testing.assert_array_equal(result.composite[ground], photo[ground])
    sky_part = result.composite[: int(0.3 * h)].astype(float).mean()
    assert sky_part < photo[: int(0.3 * h)].astype(float).mean() - 40  # a dark night sky now
    rgba = result.editor_layers().sky_rgba()
    assert rgba.shape == (*photo.shape[:2], 4) and rgba[..., 3].max() == 255


def test_sky_is_anchored_at_the_lowest_sky_line() -> None:
    matte = np.zeros((100, 200), np.float32)
    matte[:40] = 1.0
    matte[40:55, 150:170] = 1.0  # a patch of sky between trees, lower down
    assert lowest_sky_line(matte) == 55
    sky = np.zeros((50, 100, 3), np.uint8)
    sky[-1] = 255  # white bottom row marks the sky's bottom edge
    placed = place_sky(sky, 100, 200, 55, SkyPlacement())
    assert placed[54].mean() > 0.9 and placed[:50].mean() < 0.1  # bottom edge lands at row 54
    flipped = place_sky(np.arange(100, dtype=np.uint8)[None, :, None].repeat(50, 0).repeat(3, 2), 100, 200, 55,
                        SkyPlacement(flip=True))
    assert flipped[10, 0, 0] > flipped[10, -1, 0]
    brighter = place_sky(np.full((50, 100, 3), 100, np.uint8), 100, 200, 55, SkyPlacement(brightness=1.0))
    assert brighter.mean() == pytest.approx(200 / 255, abs=0.01)
    warm = place_sky(np.full((50, 100, 3), 100, np.uint8), 100, 200, 55, SkyPlacement(temperature=1.0))
    assert warm[..., 0].mean() > warm[..., 2].mean()


def test_harmonisation_moves_foreground_toward_the_sky() -> None:
    photo = np.full((40, 40, 3), 128, np.uint8)
    photo[:10] = (200, 210, 230)  # old sky: pale blue
    matte = np.zeros((40, 40), np.float32)
    matte[:10] = 1
    warm_sky = np.zeros((40, 40, 3), np.float32) + np.array([0.9, 0.5, 0.2], np.float32)
    _, fg = composite(photo, matte, warm_sky, Harmonisation(recolour=1.0, relight=0.0))
    assert fg[30, 0, 0] > fg[30, 0, 2] + 30
    _, dark = composite(photo, matte, warm_sky * 0.2, Harmonisation(recolour=0.0, relight=1.0))
    assert dark[30].mean() < 128 - 20


STARRY = ("night-stars", "blue-hour")  # star points are single-pixel steps by design


def test_presets_are_deterministic_and_seam_free() -> None:
    assert len(PRESETS) >= 10
    for name in PRESETS:
        a, b = render_preset(name, 320, 200, seed=3), render_preset(name, 320, 200, seed=3)
        np.testing.assert_array_equal(a, b)
        assert a.shape == (200, 320, 3) and a.dtype == np.uint8
        if name not in ("clear-blue",):
            assert not np.array_equal(a, render_preset(name, 320, 200, seed=4))
        big = render_preset(name, 640, 400, seed=3)
        small = np.asarray(Image.fromarray(big).resize((320, 200), Image.Resampling.BOX)).astype(float)
        tolerance = 25 if name in STARRY else 10
        assert np.abs(small - a).mean() < tolerance, name  # same sky at every resolution
        if name not in STARRY:
            f = a.astype(float)
            row_steps = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2))
            col_steps = np.abs(np.diff(f, axis=1)).mean(axis=(0, 2))
            for steps in (row_steps, col_steps):
                assert steps.max() < 6 * np.median(steps) + 2, name  # no seam line


def test_matte_recovers_thin_structures_at_the_sky_line() -> None:
    """Reeds 2 px wide that a coarse prediction only sees as a soft greyish band."""
    h, w = 240, 320
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = (150, 190, 240)  # blue sky
    image[160:] = (70, 100, 50)  # ground
    truth = np.ones((h, w), np.float32)
    truth[160:] = 0
    for x in range(5, w, 12):
        top = 110 + (x * 7) % 40
        image[top:160, x : x + 2] = (90, 110, 60)
        truth[top:160, x : x + 2] = 0
    coarse = torch.nn.functional.interpolate(torch.from_numpy(truth)[None, None], size=(40, 40), mode="area")[0, 0]
    bilinear = torch.nn.functional.interpolate(coarse[None, None], size=(h, w), mode="bilinear")[0, 0].numpy()
    matte = refine_matte(image, coarse, MatteOptions())
    band = slice(100, 170)
    guided_err = np.abs(matte[band] - truth[band]).mean()
    bilinear_err = np.abs(bilinear[band] - truth[band]).mean()
    assert guided_err < 0.9 * bilinear_err
    assert matte[20, 50:250].mean() > 0.95 and matte[200].mean() < 0.05


def test_edge_shift_and_fade(landscape_photo: Path, replacer: SkyReplacer) -> None:
    photo = np.asarray(Image.open(landscape_photo).convert("RGB"))
    base = replacer.matte(photo)
    grown = replacer.matte(photo, MatteOptions(edge_shift=20))
    shrunk = replacer.matte(photo, MatteOptions(edge_shift=-20))
    assert (shrunk >= 0.5).mean() < (base >= 0.5).mean() < (grown >= 0.5).mean()
    faded = replacer.matte(photo, MatteOptions(edge_fade=30))
    soft = lambda m: ((m > 0.05) & (m < 0.95)).mean()  # noqa: E731
    assert soft(faded) > soft(base)


@pytest.mark.parametrize("value", [np.zeros, np.ones, "saturated"])
def test_no_nan_on_extreme_photos(replacer: SkyReplacer, value: object) -> None:
    if value == "saturated":
        photo = np.zeros((120, 160, 3), np.uint8)
        photo[..., 0] = 255
        photo[60:, ..., 1] = 255
    else:
        photo = (value((120, 160, 3)) * 255).astype(np.uint8)  # type: ignore[operator]
    for sky in ("sunset", "night-stars"):
        result = replacer.replace(photo, sky, ReplaceOptions(harmonisation=Harmonisation(1.0, 1.0, 1.0)))
        assert np.isfinite(result.matte).all() and np.isfinite(result.sky).all()
        assert 0 <= result.matte.min() and result.matte.max() <= 1
        assert result.composite.dtype == np.uint8


def test_option_ranges_are_validated() -> None:
    with pytest.raises(ValueError, match="Sky scale must be between 1 and 10"):
        SkyPlacement(scale=0.5).validate()
    with pytest.raises(ValueError, match=r"Edge fade \(px\) must be between 0 and 500"):
        MatteOptions(edge_fade=-1).validate()
    with pytest.raises(ValueError, match="Foreground recolour must be between 0 and 1"):
        Harmonisation(recolour=2).validate()
    with pytest.raises(ValueError, match="unknown sky preset 'rainbow'"):
        render_preset("rainbow", 10, 10)


def _photo_with_metadata(src: Path, dst: Path) -> bytes:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    with Image.open(src) as im:
        im.convert("RGB").resize((480, 320)).save(dst, exif=exif, icc_profile=icc, quality=92)
    return icc


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tif"])
def test_replace_cli_formats_keep_exif_and_icc(landscape_photo: Path, tmp_path: Path, ext: str) -> None:
    src = tmp_path / "in.jpg"
    icc = _photo_with_metadata(landscape_photo, src)
    out = tmp_path / f"out.{ext}"
    result = run_cli("replace", src, "--sky", "golden-hour", "-o", out, "--quality", "90")
    assert result.returncode == 0, result.stderr
    with Image.open(out) as im:
        assert im.size == (320, 480)  # upright: EXIF orientation applied to the pixels
        assert im.info.get("icc_profile") == icc
        exif = im.getexif()
        assert exif.get(0x010F) == "TestCam" and exif.get(0x0112, 1) == 1


def test_cli_option_errors(landscape_photo: Path, tmp_path: Path) -> None:
    bad_scale = run_cli("replace", landscape_photo, "--sky", "sunset", "-o", tmp_path / "o.jpg", "--sky-scale", "0.5")
    assert bad_scale.returncode == 2 and "--sky-scale" in bad_scale.stderr
    bad_ext = run_cli("replace", landscape_photo, "--sky", "sunset", "-o", tmp_path / "o.gif")
    assert bad_ext.returncode == 2 and "unsupported output extension" in bad_ext.stderr
    (tmp_path / "sky.jpg").write_bytes(b"")
    bad_sky = run_cli("replace", landscape_photo, "--sky", tmp_path / "sky.jpg", "-o", tmp_path / "o.jpg")
    assert bad_sky.returncode == 1 and "sky image unusable: empty file" in bad_sky.stderr
    no_sky = run_cli("batch", tmp_path, "-o", tmp_path / "out", "--output", "layers")
    assert no_sky.returncode == 2 and "needs --sky" in no_sky.stderr
    assert not list(tmp_path.glob("o.*"))


def test_batch_outputs(landscape_photo: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    with Image.open(landscape_photo) as im:
        im.resize((480, 320)).save(src / "a.jpg")
    sky = tmp_path / "mysky.png"
    Image.fromarray(render_preset("dramatic-clouds", 300, 120, seed=1)).save(sky)
    both = run_cli("batch", src, "-o", tmp_path / "both", "--sky", sky, "--output", "both", "--format", "png")
    assert both.returncode == 0, both.stderr
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["a.png", "a_mask.png"]
    layers = run_cli("batch", src, "-o", tmp_path / "layers", "--sky", "overcast", "--output", "layers")
    assert layers.returncode == 0, layers.stderr
    names = sorted(p.name for p in (tmp_path / "layers").iterdir())
    assert names == ["a_lighting.png", "a_mask.png", "a_sky.png"]
    sky_rgba, lighting = (np.asarray(Image.open(tmp_path / "layers" / f"a_{n}.png")) for n in ("sky", "lighting"))
    assert sky_rgba.shape == lighting.shape == (320, 480, 4)
    # The editor stack (original, new sky with the matte as alpha, lighting) is the composite.
    composite = run_cli("batch", src, "-o", tmp_path / "comp", "--sky", "overcast", "--format", "png")
    assert composite.returncode == 0, composite.stderr
    original = np.asarray(Image.open(src / "a.jpg").convert("RGB"))
    below = to_u8(sky_over_original(original, sky_rgba[..., :3], sky_rgba[..., 3]))
    error = np.abs(normal_blend(below, lighting).astype(int) - np.asarray(Image.open(tmp_path / "comp" / "a.png")))
    assert error.max() <= 3 and error.mean() < 0.3
    assert lighting[..., 3][sky_rgba[..., 3] == 0].mean() > 0  # the default harmonisation relights the foreground
    again = run_cli("batch", src, "-o", tmp_path / "layers", "--sky", "overcast", "--output", "layers")
    assert "0 written, 1 skipped" in again.stderr


def test_skies_cli(tmp_path: Path) -> None:
    listing = run_cli("skies", "list")
    assert listing.returncode == 0 and all(name in listing.stdout for name in PRESETS)
    out = tmp_path / "night.png"
    rendered = run_cli("skies", "render", "night-stars", "-o", out, "--size", "640x360", "--seed", "2")
    assert rendered.returncode == 0, rendered.stderr
    with Image.open(out) as im:
        assert im.size == (640, 360)
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), render_preset("night-stars", 640, 360, 2))
    assert run_cli("skies", "render", "sunset", "-o", out, "--size", "640").returncode == 2
