"""No sky is an answer: real photos through the real model, the CLI and the plugin exchange.

The interior photos come from the held-out 20 % of ../shared/data/interiors (never trained on), a
kitchen and a bedroom in which the embedded weights find no sky. (Many other interiors still get
false sky from those weights: see the model card's robustness table.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from conftest import REPO, SHARED_DATA
from PIL import Image

from clnsod_core.frontends import bridge
from clnsod_core.masking.inference import SkyMasker
from clnsod_core.masking.matte import NO_SKY_AREA, has_sky
from clnsod_core.replace import SkyReplacer
from trainer.data import no_sky_split, read_exclusion_list

sys.path.insert(0, str(REPO / "plugin" / "common"))
import bridge_client  # noqa: E402  (stdlib-only plugin module, not a package)

INTERIORS = SHARED_DATA / "interiors" / "images"
HELD_OUT_INTERIORS = ("107_kitchen.jpg", "134_bedroom.jpg")


@pytest.fixture(scope="module")
def replacer() -> SkyReplacer:
    return SkyReplacer(SkyMasker(device="cpu"))


@pytest.fixture(scope="module")
def interior() -> Path:
    path = INTERIORS / HELD_OUT_INTERIORS[0]
    if not path.is_file():
        pytest.fail(f"real test data missing: {path}")
    return path


def test_test_interiors_are_held_out_and_screened() -> None:
    excluded = read_exclusion_list(REPO / "trainer" / "lists" / "interiors_sky_visible.txt")
    for name in HELD_OUT_INTERIORS:
        assert no_sky_split(INTERIORS / name) == "val"
        assert name not in excluded


def test_has_sky_threshold() -> None:
    prob = np.zeros((320, 320), np.float32)
    assert not has_sky(prob)
    side = int(np.ceil(np.sqrt(NO_SKY_AREA * prob.size)))
    prob[:side, :side] = 0.9
    assert has_sky(prob)
    prob[:side, :side] = 0.4  # uncertain is not sky
    assert not has_sky(prob)


@pytest.mark.parametrize("name", HELD_OUT_INTERIORS)
def test_interior_without_sky_is_left_unchanged(replacer: SkyReplacer, name: str) -> None:
    photo = np.asarray(Image.open(INTERIORS / name).convert("RGB"))
    result = replacer.replace(photo, "sunset")
    assert not result.sky_found
    assert not result.matte.any()
    assert np.array_equal(result.composite, photo)
    layers = result.editor_layers()
    assert layers.matte.max() == 0 and layers.lighting[..., 3].max() == 0


def test_replace_writes_an_interior_unchanged(interior: Path, tmp_path: Path) -> None:
    same_format = tmp_path / "out.jpg"
    proc = run_cli("replace", interior, "--sky", "sunset", "-o", same_format)
    assert proc.returncode == 0, proc.stderr
    assert f"{interior}: no sky found" in proc.stderr
    assert "1 written (1 with no sky found)" in proc.stderr
    assert same_format.read_bytes() == interior.read_bytes()  # the original bytes, not re-encoded

    other_format = tmp_path / "out.png"
    assert run_cli("replace", interior, "--sky", "sunset", "-o", other_format).returncode == 0
    with Image.open(other_format) as out, Image.open(interior) as src:
        assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(src.convert("RGB")))


def test_mask_of_an_interior_is_all_zero(interior: Path, tmp_path: Path) -> None:
    proc = run_cli("mask", interior, "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no sky found" in proc.stderr
    with Image.open(tmp_path / f"{interior.stem}.png") as mask:
        assert mask.size == Image.open(interior).size
        assert np.asarray(mask).max() == 0


def test_batch_counts_photos_without_sky(interior: Path, landscape_photo: Path, tmp_path: Path) -> None:
    src = tmp_path / "shoot"
    src.mkdir()
    (src / "kitchen.jpg").write_bytes(interior.read_bytes())
    (src / "front.jpg").write_bytes(landscape_photo.read_bytes())
    out = tmp_path / "out"
    proc = run_cli("batch", src, "-o", out, "--sky", "clear-blue", "--output", "both")
    assert proc.returncode == 0, proc.stderr
    assert "2 written (1 with no sky found)" in proc.stderr
    assert (out / "kitchen.jpg").read_bytes() == interior.read_bytes()
    assert np.asarray(Image.open(out / "kitchen_mask.png")).max() == 0
    assert (out / "front.jpg").read_bytes() != landscape_photo.read_bytes()
    assert np.asarray(Image.open(out / "front_mask.png")).mean() > 50  # the storm sky was found


def test_plugin_exchange_reports_no_sky(interior: Path) -> None:
    rgb = np.asarray(Image.open(interior).convert("RGB"))
    h, w = rgb.shape[:2]
    rgba = np.dstack([rgb, np.full((h, w), 255, np.uint8)])
    table = bridge_client.OptionTable.from_data(bridge.option_table())  # what install_plugin.py writes
    for mode in ("replace", "mask"):
        job = bridge_client.Job(w, h, "RGBA8", rgba.tobytes(), {"mode": mode}, table)
        try:
            final = bridge_client.run_blocking(job, sys.executable, lambda _event: None)
            assert final.kind == "done", final.message
            assert final.sky_found is False
            assert final.files == {}
            assert sorted(p.name for p in Path(job.dir).iterdir()) == ["input.raw", "request.json"]
        finally:
            job.cleanup()
    assert bridge.NO_SKY_DONE["sky_found"] is False


def test_all_cloud_photo_is_all_sky(replacer: SkyReplacer, landscape_photo: Path) -> None:
    """The storm clouds at the top of a real photo, cropped so nothing but cloud is left (dark
    grey-blue cloud banks and bright cloud): every pixel is sky, none left patchy."""
    with Image.open(landscape_photo) as im:
        photo = np.asarray(im.convert("RGB"))
    clouds = np.ascontiguousarray(photo[: int(0.35 * photo.shape[0])])
    matte, found = replacer.mask(clouds)
    assert found
    assert (matte >= 0.5).mean() > 0.995
