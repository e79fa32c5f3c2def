"""Reflections in water and horizon haze, on real photos: what changes, what must not, and that the
editor layers and the plugin exchange carry them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clnsod_core.compositing.compose import Harmonisation
from clnsod_core.compositing.layers import normal_blend, sky_over_original
from clnsod_core.frontends import bridge as core_bridge
from clnsod_core.masking.inference import SkyMasker
from clnsod_core.replace import ReplaceOptions, ReplaceResult, SkyReplacer
from tests.conftest import PHOTOS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin" / "common"))
import bridge_client  # noqa: E402  (stdlib-only plugin module, not a package)

LAKE = "plasma_summer_1am.jpg"  # calm lake mirroring a pink dawn sky, a reed bed in the water
NO_WATER = ("Storm.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
            "Bridge_by_Sander_Klootwijk.jpg")
WIDTH = 1280


def small_photo(name: str, width: int = WIDTH) -> np.ndarray:
    with Image.open(PHOTOS / name) as im:
        return np.asarray(im.convert("RGB").resize((width, round(width * im.height / im.width)), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def replacer() -> SkyReplacer:
    return SkyReplacer(SkyMasker(device="cpu"))


def options(reflection: float = 1.0, haze: float = 0.0) -> ReplaceOptions:
    return ReplaceOptions(harmonisation=Harmonisation(reflection=reflection, haze=haze))


@pytest.fixture(scope="module")
def lake(replacer: SkyReplacer) -> tuple[np.ndarray, ReplaceResult, np.ndarray]:
    photo = small_photo(LAKE)
    return photo, replacer.replace(photo, "blue-cumulus", options()), replacer.replace(photo, "blue-cumulus", options(0)).composite


def test_a_calm_lake_mirrors_the_new_sky_and_the_land_stays(lake: tuple[np.ndarray, ReplaceResult, np.ndarray]) -> None:
    photo, result, plain = lake
    h = photo.shape[0]
    assert result.reflection is not None
    alpha = result.reflection_matte
    water = alpha > 0.5
    assert water.mean() > 0.15  # most of the lake (the bottom third of the frame)
    rows = np.nonzero(alpha.max(axis=1) > 0)[0]
    assert rows.min() > 0.6 * h  # only below the waterline
    # Nothing outside the reflection changed: sky, distant shore, reeds where alpha is 0.
    assert np.array_equal(result.composite[alpha == 0], plain[alpha == 0])
    # The water took the colours of the new sky mirrored about the waterline (chromaticity, so the
    # water's own darkness does not count), from the old dawn's pink and violet.
    line = int(rows.min())
    ys, xs = np.nonzero(water)
    keep = 2 * line - ys >= 0
    mirrored = result.sky[2 * line - ys[keep], xs[keep]]
    chroma = lambda rgb: rgb / (rgb.sum(axis=-1, keepdims=True) + 1e-6)  # noqa: E731
    distance = lambda image: float(np.abs(chroma(image[ys[keep], xs[keep]].astype(np.float32)) - chroma(mirrored)).sum(-1).mean())  # noqa: E731
    assert distance(result.composite) < 0.5 * distance(plain), (distance(result.composite), distance(plain))
    # Water is darker than the sky it mirrors (it reflects a fraction of it).
    assert result.composite[water].mean() < result.sky[: h // 2].mean() * 255
    # The reeds standing in the water (thin dark stalks: much darker than the water 3 px to either side)
    # keep their pixels.
    luma = photo.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    sides = np.minimum(np.roll(luma, 3, axis=1), np.roll(luma, -3, axis=1))
    reeds = (luma < sides - 25) & (np.arange(h)[:, None] > rows.min())
    reeds[:, :3] = reeds[:, -3:] = False
    assert reeds.sum() > 500
    change = lambda where: float(np.median(np.abs(result.composite[where].astype(int) - plain[where]).mean(-1)))  # noqa: E731
    assert change(reeds) < 0.4 * change(water), (change(reeds), change(water))
    # --reflection scales it.
    half = SkyReplacer(SkyMasker(device="cpu")).replace(photo, "blue-cumulus", options(0.5))
    assert half.reflection is not None
    np.testing.assert_allclose(half.reflection_matte[water], alpha[water] / 2, atol=1.5 / 255)


@pytest.mark.parametrize("name", NO_WATER)
def test_photos_without_water_get_no_reflection(replacer: SkyReplacer, name: str) -> None:
    photo = small_photo(name, 960)
    result = replacer.replace(photo, "golden-hour", options())
    assert result.reflection is None and result.below_overlays is None
    assert not result.reflection_matte.any()
    assert np.array_equal(result.composite, replacer.replace(photo, "golden-hour", options(0)).composite)


def test_horizon_haze_veils_the_distance_not_the_foreground(replacer: SkyReplacer) -> None:
    photo = small_photo("aitzgorri_by_Aitzol_Berasategi.jpg")
    hazy = replacer.replace(photo, "golden-hour", options(haze=0.8))
    clear = replacer.replace(photo, "golden-hour", options())
    assert clear.haze is None and hazy.haze is not None
    alpha = hazy.haze[..., 3].astype(np.float32) / 255
    assert alpha.max() <= 0.8 * 0.75 + 1 / 255
    sky = hazy.matte > 0.99
    assert np.array_equal(hazy.composite[sky], clear.composite[sky])  # the sky itself is untouched
    # Just below the sky line (the far mountains) the land moves towards the new sky's horizon colour;
    # the near meadow at the bottom hardly changes.
    h = photo.shape[0]
    line = int(np.nonzero((hazy.matte >= 0.5).mean(axis=1) > 0.5)[0].max()) + 1
    far = np.zeros_like(sky)
    far[line : line + h // 20] = True
    far &= hazy.matte < 0.01
    horizon_colour = hazy.sky[max(0, line - h // 30) : line].reshape(-1, 3).mean(axis=0) * 255
    distance = lambda image: float(np.abs(image[far].astype(np.float32) - horizon_colour).mean())  # noqa: E731
    assert distance(hazy.composite) < 0.8 * distance(clear.composite)
    assert np.abs(hazy.composite[-h // 5 :].astype(int) - clear.composite[-h // 5 :]).mean() < 2


def test_the_editor_layers_stack_to_the_composite(replacer: SkyReplacer) -> None:
    photo = small_photo(LAKE, 960)
    result = replacer.replace(photo, "sunset", options(haze=0.5))
    layers = result.editor_layers()
    assert list(layers.overlays()) == ["reflection", "haze"]
    stacked = (sky_over_original(photo, layers.sky, layers.matte) * 255 + 0.5).astype(np.uint8)
    for layer in (layers.lighting, layers.reflection, layers.haze):
        stacked = normal_blend(stacked, layer)
    error = np.abs(stacked.astype(int) - result.composite)
    assert error.max() <= 3 and error.mean() < 0.5


def test_the_plugin_exchange_carries_the_reflection_and_haze_layers(replacer: SkyReplacer) -> None:
    photo = small_photo(LAKE, 640)
    h, w = photo.shape[:2]
    table = bridge_client.OptionTable.from_data(json.loads(json.dumps(core_bridge.option_table())))
    rgba = np.dstack([photo, np.full((h, w), 255, np.uint8)])
    job = bridge_client.Job(w, h, "RGBA8", rgba.tobytes(), {"sky": "sunset", "haze": 0.5, "device": "cpu"}, table)
    try:
        final = bridge_client.run_blocking(job, sys.executable, lambda _event: None)
        assert final.kind == "done", final.message
        overlays = job.read_overlays(final.files or {})
    finally:
        job.cleanup()
    assert [name for name, _ in overlays] == ["Reflection", "Horizon haze"]
    expected = replacer.replace(photo, "sunset", options(haze=0.5)).editor_layers()
    for (_, data), layer in zip(overlays, (expected.reflection, expected.haze), strict=True):
        assert np.array_equal(np.frombuffer(data, np.uint8).reshape(h, w, 4), layer)
