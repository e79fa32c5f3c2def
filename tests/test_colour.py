"""Colour management on a real photo: the same scene stored in sRGB, Display P3, Adobe RGB and
ProPhoto RGB (pixels converted with LittleCMS, tagged with real ICC profiles from tests/data/icc)
gets the same new sky once each result is converted back to sRGB; user sky photos in another
space, gray photos with a gray profile, and profiles that are sRGB under another name."""

from __future__ import annotations

import io
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from cli_runner import run_cli
from colour_metrics import delta_e00, srgb_to_lab
from PIL import Image, ImageCms

from clnsod_core.imaging.colour import SRGB, ColourSpace, convert
from clnsod_core.imaging.io import load_photo_with_meta

ICC = Path(__file__).parent / "data" / "icc"
SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _profile(name: str) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO((ICC / name).read_bytes()))


def _read_as_srgb(path: Path) -> np.ndarray:
    """An output file converted to 8-bit sRGB through its own embedded profile (LittleCMS)."""
    pixels, meta = load_photo_with_meta(path)
    srgb = convert(pixels, ColourSpace(meta.icc_profile), SRGB).astype(np.float64)
    return srgb / 257 if pixels.dtype == np.uint16 else srgb


def _mask(path: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / f"masks-{path.stem}"
    assert run_cli("mask", path, "-o", out).returncode == 0
    return np.asarray(Image.open(out / f"{path.stem}.png")) / 255


def test_delta_e00_matches_the_published_test_data() -> None:
    """Pairs and answers from Sharma, Wu & Dalal (2005), Table 1."""
    pairs = [((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
             ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
             ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
             ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082)]
    for lab1, lab2, expected in pairs:
        assert delta_e00(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def scene(landscape_photo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The real photo in sRGB, replaced with the 'clear-blue' preset: the reference for every space."""
    root = tmp_path_factory.mktemp("colour")
    with Image.open(landscape_photo) as im:
        rgb = im.convert("RGB")
    source = root / "scene-srgb.png"
    rgb.save(source)
    out = root / "out-srgb.png"
    result = run_cli("replace", source, "--sky", "clear-blue", "-o", out)
    assert result.returncode == 0, result.stderr
    return {"root": root, "rgb": rgb, "out": np.asarray(Image.open(out).convert("RGB")).astype(np.float64),
            "mask": _mask(source, root)}


@pytest.mark.parametrize("profile_name, bits",
                         [("DisplayP3-v4.icc", 8), ("AdobeRGB1998.icc", 8), ("ProPhotoRGB.icc", 16)])
def test_the_same_scene_in_another_space_gets_the_same_sky(scene: dict, profile_name: str, bits: int) -> None:
    root: Path = scene["root"]
    icc = (ICC / profile_name).read_bytes()
    stem = f"scene-{Path(profile_name).stem}-{bits}"
    source = root / f"{stem}.png"
    if bits == 8:
        converted = ImageCms.profileToProfile(scene["rgb"], SRGB_PROFILE, _profile(profile_name),
                                              renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
        converted.save(source, icc_profile=icc)
    else:  # 16 bits: ProPhoto at 8 bits would band; LittleCMS at 16 bits through imagecodecs
        rgb16 = np.asarray(scene["rgb"]).astype(np.uint16) * 257
        pixels = imagecodecs.cms_transform(rgb16, ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
                                           icc, colorspace="rgb", outcolorspace="rgb")
        from clnsod_core.imaging.deep import encode_png
        source.write_bytes(encode_png(pixels, icc, None))
    out = root / f"{stem}-out.png"
    result = run_cli("replace", source, "--sky", "clear-blue", "-o", out)
    assert result.returncode == 0, result.stderr
    pixels, meta = load_photo_with_meta(out)
    assert meta.icc_profile == icc and pixels.dtype == (np.uint16 if bits == 16 else np.uint8)

    mask = _mask(source, root)
    assert np.abs(mask - scene["mask"]).mean() < 0.003  # the network saw the same sRGB picture
    sky = (mask > 0.99) & (scene["mask"] > 0.99)
    assert sky.mean() > 0.3
    reference = scene["out"]
    replaced = _read_as_srgb(out)
    diff = delta_e00(srgb_to_lab(reference[sky]), srgb_to_lab(replaced[sky]))
    assert diff.mean() < 1.0 and np.percentile(diff, 95) < 2.0, (diff.mean(), np.percentile(diff, 95))
    # Without colour management (sRGB numbers pasted in and tagged with the wide profile) it fails:
    naive = np.asarray(ImageCms.profileToProfile(Image.fromarray(reference.astype(np.uint8)), _profile(profile_name),
                                                 SRGB_PROFILE)).astype(np.float64)
    assert delta_e00(srgb_to_lab(reference[sky]), srgb_to_lab(naive[sky])).mean() > 2.0


def test_a_sky_photo_in_adobe_rgb_is_converted_into_the_photo(scene: dict, tmp_path: Path) -> None:
    """A user sky photo keeps its own profile until it is composited into the (sRGB) photo."""
    with Image.open(Path(__file__).parents[1] / "examples" / "sunset.jpg") as im:
        sky_rgb = im.convert("RGB")
    sky_srgb, sky_adobe = tmp_path / "sky-srgb.png", tmp_path / "sky-adobe.png"
    sky_rgb.save(sky_srgb)
    ImageCms.profileToProfile(sky_rgb, SRGB_PROFILE, _profile("AdobeRGB1998.icc")).save(
        sky_adobe, icc_profile=(ICC / "AdobeRGB1998.icc").read_bytes())
    source = scene["root"] / "scene-srgb.png"
    outs = []
    for sky in (sky_srgb, sky_adobe):
        out = tmp_path / f"out-{sky.stem}.png"
        assert run_cli("replace", source, "--sky", sky, "-o", out).returncode == 0
        outs.append(np.asarray(Image.open(out).convert("RGB")).astype(np.float64))
    sky = scene["mask"] > 0.99
    diff = delta_e00(srgb_to_lab(outs[0][sky]), srgb_to_lab(outs[1][sky]))
    assert diff.mean() < 1.0 and np.percentile(diff, 95) < 2.0


def test_gray_photo_with_a_gray_profile_becomes_srgb(landscape_photo: Path, tmp_path: Path) -> None:
    gray_icc = (ICC / "Gray.icc").read_bytes()
    with Image.open(landscape_photo) as im:
        gray = im.convert("L")
    source = tmp_path / "gray.jpg"
    gray.save(source, icc_profile=gray_icc, quality=95)
    pixels, meta = load_photo_with_meta(source)
    assert pixels.shape[2] == 3 and meta.icc_profile is None  # RGB values in sRGB: no gray profile on RGB data
    with Image.open(source) as im:
        expected = ImageCms.profileToProfile(im, _profile("Gray.icc"), SRGB_PROFILE, outputMode="RGB",
                                             renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    assert np.abs(pixels.astype(int) - np.asarray(expected, int)).max() <= 1  # LittleCMS, to rounding
    out = tmp_path / "gray-out.jpg"
    assert run_cli("replace", source, "--sky", "sunset", "-o", out).returncode == 0
    with Image.open(out) as im:
        assert im.mode == "RGB" and "icc_profile" not in im.info


def test_profiles_that_are_srgb_are_not_converted() -> None:
    assert ColourSpace((ICC / "sRGB-colord.icc").read_bytes()).is_srgb
    for name in ("DisplayP3-v4.icc", "AdobeRGB1998.icc", "ProPhotoRGB.icc", "Gray.icc"):
        assert not ColourSpace((ICC / name).read_bytes()).is_srgb, name
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert convert(pixels, ColourSpace((ICC / "sRGB-colord.icc").read_bytes()), SRGB) is pixels
