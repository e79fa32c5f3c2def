"""Hard-sky augmentations (night, haze, storm clouds, all-sky and thin-strip crops) on real skyseg photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainer.augment import haze_look, night_look, reflection_look, sky_only_box, thin_strip_box
from trainer.data import index_skyseg, load_sample
from trainer.storm_look import storm_look


def _sample(skyseg: Path, sample_id: str):
    ref = next(r for r in index_skyseg(skyseg, "train") if r.sample_id == sample_id)
    return load_sample(ref)


def _gen(seed: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def _tensors(sample) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.from_numpy(np.array(sample.image)).permute(2, 0, 1).float() / 255
    sky = torch.from_numpy(np.array(sample.mask)).float()[None] / 255
    return image, sky


def test_night_look_is_dark_blue_and_deterministic(skyseg: Path) -> None:
    sample = _sample(skyseg, "coast_arnat59")
    image, sky = _tensors(sample)
    night = night_look(image, sky, _gen(3))
    assert night.shape == image.shape
    assert torch.equal(night, night_look(image, sky, _gen(3)))
    assert night.mean() < 0.6 * image.mean()
    high_sky = sky[0] > 0.5
    high_sky[image.shape[1] // 5 :] = False  # above any city glow at the horizon
    assert night[2][high_sky].mean() > night[0][high_sky].mean()  # blue-black sky


def test_haze_leaves_the_sky_and_fades_the_land_toward_it(skyseg: Path) -> None:
    sample = _sample(skyseg, "coast_arnat59")
    image, sky = _tensors(sample)
    hazy = haze_look(image, sky, _gen(1))
    in_sky = sky[0] > 0.999
    assert torch.allclose(hazy[:, in_sky], image[:, in_sky])
    sky_colour = image[:, in_sky].mean(dim=1, keepdim=True)
    land = sky[0] < 0.001
    before = (image[:, land] - sky_colour).abs().mean()
    after = (hazy[:, land] - sky_colour).abs().mean()
    assert after < before


def test_reflection_mirrors_the_scene_into_water_labelled_foreground(skyseg: Path) -> None:
    sample = _sample(skyseg, "coast_arnat59")
    image, sky = _tensors(sample)
    void = torch.zeros_like(sky, dtype=torch.bool)
    out, label, out_void = reflection_look(image, sky, void, _gen(2))
    assert torch.equal(out, reflection_look(image, sky, void, _gen(2))[0])
    water_rows = (out != image).any(dim=0).any(dim=1).nonzero()[:, 0]
    line = int(water_rows.min())
    assert line >= int((sky[0] > 0.5).any(dim=1).nonzero().max()) - 1  # at or below the sky line
    assert not (label[:, line:] > 0).any() and not out_void[:, line:].any()
    assert torch.equal(label[:, :line], sky[:, :line]) and torch.equal(out[:, :line], image[:, :line])
    # The row just under the waterline mirrors the row just above it (darkened by the reflectance).
    above, below = image[:, line - 1], out[:, line]
    assert torch.corrcoef(torch.stack([above.flatten(), below.flatten()]))[0, 1] > 0.8


def test_storm_clouds_darken_only_the_sky(skyseg: Path) -> None:
    sample = _sample(skyseg, "coast_arnat59")
    image, sky = _tensors(sample)
    stormy = storm_look(image, sky, _gen(4))
    assert torch.equal(stormy, storm_look(image, sky, _gen(4)))
    land = sky[0] == 0
    assert torch.equal(stormy[:, land], image[:, land])  # the foreground is untouched
    in_sky = sky[0] > 0.999
    luma_before, luma_after = image[:, in_sky].mean(dim=0), stormy[:, in_sky].mean(dim=0)
    darker = luma_after < luma_before - 0.1
    assert 0.1 < float(darker.float().mean()) < 0.95  # dark masses, not a uniform dimming
    assert float(luma_after.mean()) < float(luma_before.mean()) - 0.05


def test_crops_for_all_sky_and_thin_strips(skyseg: Path) -> None:
    refs = [r for r in index_skyseg(skyseg, "train") if r.dataset == "siftflow"][:300]
    sample = next(s for s in map(load_sample, refs) if (s.mask[: s.mask.shape[0] // 3] > 127).all())
    top, left, h, w = sky_only_box(sample.mask, _gen(0))
    assert (sample.mask[top : top + h, left : left + w] > 127).mean() > 0.97
    top, left, h, w = thin_strip_box(sample.mask, _gen(0))
    rows = (sample.mask[top : top + h, left : left + w] > 127).mean(axis=1)
    sky_rows = np.count_nonzero(rows > 0.5)
    assert 1 <= sky_rows <= 0.15 * h


def test_window_in_an_interior_shows_labelled_sky_or_blown_glass(skyseg: Path) -> None:
    from conftest import SHARED_DATA

    from trainer.data import index_no_sky
    from trainer.window_views import paste_window

    room_ref = index_no_sky(SHARED_DATA / "interiors", "train")[0]
    room = load_sample(room_ref, 320)
    image = torch.from_numpy(np.array(room.image)).permute(2, 0, 1).float() / 255
    mask = torch.zeros(1, *image.shape[1:])
    void = torch.zeros(1, *image.shape[1:], dtype=torch.bool)
    outdoor = _sample(skyseg, "coast_arnat59")
    view_image, view_sky = _tensors(outdoor)
    view = (view_image, view_sky, torch.zeros_like(view_sky, dtype=torch.bool))

    with_view = paste_window(image, mask, void, view, _gen(5))
    assert all(torch.equal(a, b) for a, b in zip(with_view, paste_window(image, mask, void, view, _gen(5))))
    new_image, new_mask, new_void = with_view
    changed = (new_image != image).any(dim=0)
    sky = new_mask[0] > 0.5
    assert sky.any() and bool(changed[sky].all())  # sky only inside the window
    assert not new_void[0][~changed].any()
    lit = new_image[:, sky & ~new_void[0]]
    assert (lit.amax(dim=0) <= 0.97).any()  # some of the view keeps its sky colour
    assert torch.equal(mask, torch.zeros_like(mask))  # inputs untouched

    blown_image, blown_mask, blown_void = paste_window(image, mask, void, None, _gen(5))
    assert not (blown_mask > 0).any() and not blown_void.any()  # white glass is not sky
    assert (blown_image != image).any(dim=0).float().mean() > 0.03
