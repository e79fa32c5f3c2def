"""The speed-ups compute what the plain computation does: the network with its batch norms folded,
the guided filter on the unsure zone only, the matte's last pass on unsettled tiles only, compositing
strips that are all sky or all foreground (on two threads), per-channel factors applied row by row,
the video stabiliser on the rows with sky, decoding ahead on a thread, a preset rendered straight
into the placed sky (allocated when the renderer first writes), the sun's disc computed near the sun
only, the network's and the matte's reductions of the photo made side by side from one Pillow copy,
the overlays' small copy reduced a band at a time, the noise's bicubic upsampling as two sparse
matrix products (equal to float rounding) and its quantiles by selection (exactly equal). Each is checked against the plain
computation written out here, on real photos where a photo matters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PHOTOS
from PIL import Image

from clnsod_core.arrays import from_unit, scale_channels
from clnsod_core.compositing import noise, skies
from clnsod_core.compositing.compose import (
    STRIP_ROWS,
    Harmonisation,
    SkyPlacement,
    SkyRegion,
    composite,
    place_sky,
    sky_region_height,
)
from clnsod_core.imaging.colour import SRGB, ColourSpace, convert
from clnsod_core.masking import matte as matte_module
from clnsod_core.masking.inference import SkyMasker, predict_working_size
from clnsod_core.network.fold import fold_batch_norms
from clnsod_core.network.preprocess import resize_rgb
from clnsod_core.replace import ReplaceOptions, SkyReplacer, StageCache, preset_sky
from clnsod_core.runtime import run_beside
from clnsod_core.weights.format import load_model

ICC = Path(__file__).parent / "data" / "icc"


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    with Image.open(PHOTOS / name) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB").resize(size, Image.Resampling.BILINEAR)))


@pytest.fixture(scope="module")
def masker() -> SkyMasker:
    return SkyMasker(device="cpu")


def test_folded_network_gives_the_same_probabilities(masker: SkyMasker) -> None:
    plain = load_model(masker.weights_path)
    norms_before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    norms_after = sum(isinstance(m, torch.nn.BatchNorm2d) for m in masker.model.modules())
    assert norms_before > 50 and norms_after <= 1  # (one follows a sum of two branches, not a convolution)
    photos = [photo(name, (640, 427)) for name in ("Storm.jpg", "Bridge_by_Sander_Klootwijk.jpg", "plasma_Kite.jpg")]
    folded = masker.predict_working_size(photos)
    expected = predict_working_size(plain, photos, masker.device)
    assert float((folded - expected).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(load_model(masker.weights_path).train())


def test_guided_filter_on_the_unsure_zone_equals_the_whole_frame(masker: SkyMasker) -> None:
    """In float64 (so that only the crop, not rounding, could differ)."""
    image = photo("sunset_by_Aitzol_Berasategi.jpg", (640, 427))
    prob = masker.predict_working_size([image])[0]
    guide = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].double() / 255
    p = F.interpolate(prob[None, None].double(), size=image.shape[:2], mode="bilinear", align_corners=False)
    weight = (2 * p - 1).square() + 1e-3
    r = 6
    a, b = matte_module._unsure_zone_coefficients(guide, p, weight, r, 1e-4)
    full_a, full_b = matte_module._guided_coefficients(guide, p, weight, r, 1e-4)
    sure_sky = 1 - matte_module._any_in_window(p < 1 - matte_module.CONFIDENT, r).double()
    keep = 1 - sure_sky - (1 - matte_module._any_in_window(p > matte_module.CONFIDENT, r).double())
    assert 0.05 < float((keep > 0).double().mean()) < 0.8  # the zone is a real part of the frame, not all of it
    assert torch.allclose(a, full_a * keep, atol=1e-9) and torch.allclose(b, full_b * keep + sure_sky, atol=1e-9)


def test_float32_guided_filter_matches_float64_in_flat_fog(masker: SkyMasker, monkeypatch: pytest.MonkeyPatch) -> None:
    """ColdRipple's grey sea fog, where the network is unsure (tiny confidence weights): float32 running
    sums once gave negative variances there, and the matte a visible rectangular patch."""
    image = photo("plasma_ColdRipple.jpg", (1280, 800))
    prob = masker.predict_working_size([image])[0]
    matte32 = matte_module.refine_matte(image, prob)
    box_sum = matte_module._box_sum
    monkeypatch.setattr(matte_module, "_box_sum", lambda x, k: box_sum(x.double(), k).to(x.dtype))
    matte64 = matte_module.refine_matte(image, prob)
    unsure = (matte64 > 0.05) & (matte64 < 0.95)
    assert float(unsure.mean()) > 0.1  # the fog is a large, uncertain part of the frame
    assert float(np.abs(matte32 - matte64).max()) < 0.03


def test_box_filter_a_plane_at_a_time_equals_all_planes_at_once() -> None:
    x = torch.rand(2, 3, 97, 131)
    planes = matte_module.box_filter(x, 5)
    c = matte_module._box_sum(F.pad(x, (5, 5, 5, 5)), 11)
    counts = matte_module._window_counts(97, 5, x.dtype)[:, None] * matte_module._window_counts(131, 5, x.dtype)[None, :]
    assert torch.equal(planes, c / counts)


@pytest.mark.parametrize("size", [(1920, 1080), (731, 389), (64, 48)])
def test_tiled_matte_pass_equals_the_dense_one(size: tuple[int, int]) -> None:
    """Coefficients with settled sky (b = 1), settled foreground (b = 0) and an unsure band between,
    upsampled to the photo and applied densely, then snapped, as the pass did before it was tiled."""
    width, height = size
    generator = torch.Generator().manual_seed(0)
    h, w = max(2, height // 3), max(2, width // 3)
    coefficients = torch.zeros(4, h, w)
    coefficients[3, : h // 3] = 1.0
    band = slice(h // 3, h // 2)
    coefficients[:3, band] = torch.randn(3, h // 2 - h // 3, w, generator=generator) / 255
    coefficients[3, band] = torch.rand(h // 2 - h // 3, w, generator=generator)
    coefficients[:3, :, : w // 5] = 0.0  # a settled column block across the band too
    coefficients[3, :, : w // 5] = 1.0
    pixels = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    tiled = matte_module.apply_coefficients(coefficients, pixels)
    up = torch.cat([band for _, _, band in matte_module.resize_in_bands(coefficients, height, width)], dim=1)
    dense = matte_module._clean(up[3] + (up[:3] * pixels.float()).sum(dim=0))
    # Equal up to float rounding, which can tip a rare value across a snapping threshold (2/255).
    difference = (tiled - dense).abs()
    assert float(difference.max()) <= 2 / 255 + 1e-5 and float((difference > 1e-5).float().mean()) < 1e-4
    assert 0.2 < float((dense == 1).float().mean()) and 0.2 < float((dense == 0).float().mean())


def test_composite_strips_equal_the_per_pixel_mix() -> None:
    image = photo("Storm.jpg", (900, 600))
    h, w = image.shape[:2]
    matte = np.zeros((h, w), np.float32)
    matte[: h // 3] = 1.0  # strips of pure sky, a soft band, strips of pure foreground
    matte[h // 3 : h // 2] = np.linspace(1, 0, h // 2 - h // 3, dtype=np.float32)[:, None]
    sky = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    gain = np.array([1.1, 0.95, 0.8], np.float32)
    options = Harmonisation(halo=0.0)
    for source in (image, image.astype(np.uint16) * 257):
        scale = float(np.iinfo(source.dtype).max)
        fg = np.clip(source.astype(np.float32) * (gain / np.float32(scale)), 0, 1)
        expected = from_unit(fg + (sky - fg) * matte[:, :, None], source.dtype)
        out, lit = composite(source, matte, sky, options, gain=gain)  # with the foreground layer: every strip mixed
        assert np.array_equal(lit, from_unit(fg, source.dtype)) and np.array_equal(out, expected)
        out, _ = composite(source, matte, sky, options, gain=gain, foreground=False)
        top = h // 3 // STRIP_ROWS * STRIP_ROWS  # the strips that are all sky
        assert np.array_equal(out[top:], expected[top:])  # foreground and soft strips: identical
        assert np.array_equal(out[:top], from_unit(sky[:top], source.dtype))  # pure sky: the sky itself
        assert np.abs(out[:top].astype(np.int64) - expected[:top]).max() <= 1  # (a rounding step at most)


def test_channel_factors_by_rows_equal_broadcasting() -> None:
    image = photo("Dune.jpg", (641, 427)).astype(np.float32) / 255
    factors = np.array([1.07, 0.93, 0.61], np.float32)
    expected = image * factors
    assert np.array_equal(scale_channels(image.copy(), factors), expected)
    columns = image.copy()[:, 100:300]  # not contiguous: the plain product, in place all the same
    assert np.array_equal(scale_channels(columns, factors), expected[:, 100:300])
    warm = place_sky(image, 427, 641, 427, SkyPlacement(brightness=0.5, temperature=0.4))
    tint = np.array([1.06, 1.0, 0.94], np.float32) * np.float32(2**0.5)
    assert np.array_equal(warm, np.clip(image * tint, 0, 1))


def test_banded_stabiliser_equals_the_whole_frame() -> None:
    cv2 = pytest.importorskip("cv2")
    from clnsod_core.video.temporal import HISTORY_WEIGHT, MatteStabiliser

    image = photo("picosdeeuropa_by_Aitzol_Berasategi.jpg", (960, 540))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    first = np.zeros((h, w), np.float32)
    first[: h // 3] = 1.0
    first[h // 3 : h // 3 + 20] = np.linspace(1, 0, 20, dtype=np.float32)[:, None]
    second = np.roll(first, 3, axis=0)
    second[:3] = 1.0
    motion = np.array([[1.0, 0.002, 1.5], [-0.001, 1.0, 2.25], [1e-6, 0.0, 1.0]])
    moved_grey = cv2.warpPerspective(grey, motion, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    stabiliser = MatteStabiliser()
    stabiliser.update(first, grey, None)
    fused = stabiliser.update(second, moved_grey, motion)
    # The whole-frame computation, as before the stabiliser was limited to the rows with sky.
    moved = cv2.warpPerspective(first, motion, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    trust = stabiliser._unchanged(moved_grey, grey, motion, (w, h))
    keep = cv2.resize(trust, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(HISTORY_WEIGHT)
    expected = second + keep * (moved - second)
    expected[expected < 2 / 255] = 0
    expected[expected > 1 - 2 / 255] = 1
    assert 0 < float((fused != second).mean()) and np.allclose(fused, expected, atol=1e-6)


def test_read_ahead_keeps_order_errors_and_stops_its_thread() -> None:
    from clnsod_core.video.pipeline import _read_ahead

    def numbers(closed: list[bool], fail_at: int | None = None) -> Iterator[int]:
        try:
            for i in range(10):
                if i == fail_at:
                    raise RuntimeError(f"broken at {i}")
                yield i
        finally:
            closed.append(True)

    closed: list[bool] = []
    assert list(_read_ahead(numbers(closed), depth=2)) == list(range(10)) and closed == [True]
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="broken at 6"):
        for value in _read_ahead(numbers([], fail_at=6), depth=2):
            seen.append(value)
    assert seen == list(range(6))  # every item before the error, then the error
    closed = []
    reader = _read_ahead(numbers(closed), depth=2)
    assert next(reader) == 0
    reader.close()  # the caller stops early: the producer stops and closes its source
    assert closed == [True]
    assert not any(t.name == "clnsod-video-reader" for t in threading.enumerate())


def test_a_sky_of_the_photos_size_is_placed_as_it_is() -> None:
    """A preset rendered for the photo needs no resampling: placed, it is the rendered sky itself
    (which is also what resampling to the same size gives), repeated below its last row."""
    height, width, bottom = 600, 900, 250
    region = sky_region_height(height, bottom)
    sky = preset_sky("sunset", width, region, 0)
    placed = place_sky(sky, height, width, bottom, SkyPlacement())
    assert np.array_equal(placed[:region], sky) and np.array_equal(placed[region:], np.broadcast_to(sky[-1], (height - region, width, 3)))
    resampled = torch.cat([band for _, _, band in matte_module.resize_in_bands(torch.from_numpy(sky).permute(2, 0, 1), region, width)], dim=1)
    assert torch.equal(resampled.permute(1, 2, 0), torch.from_numpy(sky))


@pytest.mark.parametrize("icc", [None, "DisplayP3-v4.icc"])
def test_a_preset_rendered_into_the_placed_sky_equals_placing_the_rendered_preset(masker: SkyMasker,
                                                                                 icc: str | None) -> None:
    """``replace`` renders a preset straight into the placed sky when placing would not resample it
    (no editor keeps the sky): the same pixels as rendering, converting and placing, for an sRGB and a
    Display P3 photo; a placement that moves the sky takes the plain path."""
    space = SRGB if icc is None else ColourSpace((ICC / icc).read_bytes())
    height, width, bottom = 500, 760, 230
    region = sky_region_height(height, bottom)
    replacer = SkyReplacer(masker)
    for placement in (SkyPlacement(), SkyPlacement(brightness=0.4, temperature=-0.3, shift_x=0.1, shift_y=0.05)):
        options = ReplaceOptions(placement=placement, seed=4)
        expected = place_sky(convert(preset_sky("blue-hour", width, region, 4), SRGB, space), height, width, bottom,
                             placement)
        cache = StageCache(keep=())
        placed, _ = replacer._placed("blue-hour", height, width, bottom, options, space, cache)
        assert "sky" not in cache.recomputed and np.array_equal(placed.full(), expected)
    zoomed = ReplaceOptions(placement=SkyPlacement(scale=1.2))
    cache = StageCache(keep=())
    placed, _ = replacer._placed("blue-hour", height, width, bottom, zoomed, space, cache)
    assert cache.recomputed == ["sky", "placement"]
    assert np.array_equal(placed.full(), place_sky(convert(preset_sky("blue-hour", width, region, 0), SRGB, space),
                                                   height, width, bottom, zoomed.placement))


def test_the_suns_disc_near_the_sun_equals_the_whole_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sunset's disc is computed on the pixels around the sun only: the same sky as computing it
    over the whole frame, at sizes where the sun lies near an edge or covers most of a tiny sky."""
    for width, height in ((1600, 500), (97, 31), (8, 8), (300, 1200)):
        near = skies.render_preset_float("sunset", width, height, 2)
        with monkeypatch.context() as patch:
            patch.setattr(skies, "_around", lambda *_: (slice(None), slice(None)))
            whole = skies.render_preset_float("sunset", width, height, 2)
        assert np.array_equal(near, whole), (width, height)
    rows, cols = skies._around(500, 1600, (0.62, 0.93), 0.035)
    assert (rows.stop - rows.start) * (cols.stop - cols.start) < 0.01 * 500 * 1600  # a small box


def test_reductions_from_one_pillow_copy_equal_those_from_the_array() -> None:
    from clnsod_core.masking.matte import MatteOptions, matte_guide

    image = photo("plasma_Kite.jpg", (1500, 1001))
    shared = Image.fromarray(image)
    assert np.array_equal(resize_rgb(shared, 320), resize_rgb(image, 320))
    assert np.array_equal(matte_guide(shared, MatteOptions()), matte_guide(image, MatteOptions()))
    assert np.array_equal(matte_guide(image.astype(np.uint16) * 257, MatteOptions()), matte_guide(image, MatteOptions()))


def test_run_beside_runs_both_at_once_and_raises_either_error() -> None:
    started = threading.Event()

    def side() -> str:
        assert started.wait(timeout=10), "main never started while side ran"  # both run at the same time
        return "side"

    def main() -> str:
        started.set()
        return "main"

    assert run_beside(side, main) == ("side", "main")
    finished: list[str] = []

    def slow_side() -> None:
        threading.Event().wait(0.2)
        finished.append("side")

    with pytest.raises(ZeroDivisionError):
        run_beside(slow_side, lambda: 1 / 0)
    assert finished == ["side"]  # the helper finished before the error came back
    with pytest.raises(KeyError):
        run_beside(lambda: {}["missing"], lambda: "main")


def test_a_preset_renders_into_an_array_made_when_first_written() -> None:
    plain = skies.render_preset_float("stormy", 300, 120, 5)
    made: list[np.ndarray] = []

    def allocate() -> np.ndarray:
        made.append(np.full((120, 300, 3), np.nan, np.float32))
        return made[-1]

    rendered = skies.render_preset_float("stormy", 300, 120, 5, out=allocate)
    assert len(made) == 1 and rendered is made[0] and np.array_equal(rendered, plain)
    with pytest.raises(ValueError, match="C-contiguous"):
        skies.render_preset_float("stormy", 300, 120, 5, out=np.empty((120, 301, 3), np.float32))


def test_small_copy_reduced_in_bands_equals_one_reduction(monkeypatch: pytest.MonkeyPatch) -> None:
    from clnsod_core.compositing import fields

    image = photo("plasma_BytheWater.jpg", (2000, 1333))  # 1333 rows: the last box row is dropped
    matte = np.zeros(image.shape[:2], np.float32)
    matte[:600] = 1
    banded = fields.small_copy(image, matte)
    monkeypatch.setattr(fields, "REDUCE_BAND_PIXELS", 10**12)
    whole = fields.small_copy(image, matte)
    factor = round(1 / whole[2])
    assert factor > 1 and fields.REDUCE_BAND_PIXELS // (2000 * factor) > 1333 // factor  # really one band
    assert torch.equal(banded[0], whole[0]) and torch.equal(banded[1], whole[1]) and banded[2] == whole[2]
    reduced = np.asarray(Image.fromarray(image[: 1333 // factor * factor, : 2000 // factor * factor]).reduce(factor))
    assert torch.equal(banded[0], torch.from_numpy(reduced.astype(np.float32) / 255).permute(2, 0, 1))


@pytest.mark.parametrize("shape", [(1, 1, 5, 7), (2, 3, 1, 9), (5, 4, 5, 4), (13, 31, 97, 400), (650, 769, 1445, 4272),
                                   (40, 60, 17, 23)])
def test_sparse_bicubic_equals_torch_interpolate(shape: tuple[int, int, int, int]) -> None:
    h0, w0, h, w = shape
    field = torch.rand(h0, w0, generator=torch.Generator().manual_seed(h0 * w0))
    expected = F.interpolate(field[None, None], size=(h, w), mode="bicubic", align_corners=True)[0, 0]
    assert float((noise._bicubic(field, h, w) - expected).abs().max()) < 3e-6


def test_quantiles_by_selection_equal_torch_quantile() -> None:
    for n in (1, 2, 7, 1000, 66049):
        values = torch.rand(n, generator=torch.Generator().manual_seed(n))
        assert noise._quantiles(values, (0.01, 0.5, 0.99)) == torch.quantile(values, torch.tensor([0.01, 0.5, 0.99])).tolist()


def test_a_placed_sky_held_as_its_region_reads_as_the_full_array() -> None:
    """The placed sky is held as its region's rows; every way the composite, the overlays and the
    editor layers read it gives what the full array (last row repeated below) gives."""
    rows = np.random.default_rng(3).random((7, 5, 3), dtype=np.float32)
    region = SkyRegion(rows, 12)
    full = region.full()
    assert full.shape == region.shape == (12, 5, 3)
    assert np.array_equal(full[:7], rows) and np.array_equal(full[7:], np.broadcast_to(rows[-1], (5, 5, 3)))
    for sl in (slice(0, 3), slice(2, 7), slice(5, 9), slice(7, 12), slice(9, 12), slice(0, 12), slice(10, 20)):
        assert np.array_equal(region.band(sl), full[sl])
    for step in (1, 2, 3, 5):
        assert np.array_equal(region.every(step), full[::step, ::step])
    assert np.array_equal(region.full(lambda r: from_unit(r, np.dtype(np.uint16))), from_unit(full, np.dtype(np.uint16)))
    assert SkyRegion.of(full).rows is full and SkyRegion.of(region) is region
