"""Fine targets from coarse labels (clnsod_core.masking.labels, ``clnsod refine-labels``) and the matte's colour
model, on real photos from ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clnsod_core.masking.inference import SkyMasker
from clnsod_core.masking.labels import SOFT_MARKER, refine_label
from clnsod_core.masking.matte import MatteOptions, colour_refine, refine_matte, window_max
from trainer.data import index_data_dir, load_samples

from cli_runner import run_cli
from conftest import SHARED_DATA, SKYSEG


def _read(dataset: str, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
    base = SKYSEG / dataset
    image = np.asarray(Image.open(base / "images" / f"{sample_id}.jpg").convert("RGB"))
    label = np.asarray(Image.open(base / "masks" / f"{sample_id}.png").convert("L"))
    return image, label


def _away_from_boundary(label: np.ndarray, r: int = 3) -> np.ndarray:
    """Pixels more than ``r`` px from the label's sky line (where a coarse polygon may simply be off)."""
    t = torch.from_numpy((label > 127).astype(np.float32))[None, None]
    return ((window_max(t, r) + window_max(-t, r)) == 0)[0, 0].numpy()


def test_sky_opens_between_bare_branches(skyseg: Path) -> None:
    """Stanford 1000882: a row of bare winter trees that the polygon label marks as solid foreground."""
    image, label = _read("stanford", "1000882")
    refined = refine_label(image, label)
    opened = (label < 128) & (refined >= 128) & _away_from_boundary(label)
    assert opened.sum() >= 200
    assert image[opened].mean() > 150  # what opened is bright sky, not bark
    assert (refined[label >= 128] >= 128).mean() > 0.97  # the labelled sky stays sky


@pytest.mark.parametrize("sample_id", ["insidecity_hous1", "insidecity_art942", "insidecity_urb474", "insidecity_art551"])
def test_white_walls_stay_foreground(skyseg: Path, sample_id: str) -> None:
    """City photos where white walls and pale roofs (>= 8 % of the frame) meet a pale sky."""
    image, label = _read("siftflow", sample_id)
    refined = refine_label(image, label)
    white = (image.min(axis=2) > 190) & (label < 128) & _away_from_boundary(label)
    assert white.mean() > 0.05
    assert (refined[white] >= 128).mean() < 0.02


def test_refinement_keeps_void_and_size(skyseg: Path) -> None:
    image, label = _read("stanford", "1000882")
    void = np.zeros(label.shape, bool)
    void[:20] = True
    refined = refine_label(image, label, void)
    assert refined.shape == label.shape and refined.dtype == np.uint8
    assert np.array_equal(refined[void], label[void])
    with pytest.raises(ValueError):
        refine_label(image, label[:-1])


def test_refine_labels_command_and_soft_training_data(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "refined"
    proc = run_cli("refine-labels", tiny_dataset, out)
    assert proc.returncode == 0, proc.stderr
    assert "12 written" in proc.stderr
    assert json.loads((out / SOFT_MARKER).read_text())["tool"] == "clnsod refine-labels"
    assert (out / "images").resolve() == (tiny_dataset / "images").resolve()
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 12
    values = np.concatenate([np.asarray(Image.open(m)).ravel() for m in masks])
    assert ((values > 8) & (values < 247)).any()  # partial coverage kept
    again = run_cli("refine-labels", tiny_dataset, out)
    assert again.returncode == 0 and "12 skipped" in again.stderr
    assert run_cli("refine-labels", tiny_dataset, tiny_dataset).returncode == 2  # never in place
    samples = load_samples(index_data_dir(out, "train"))
    assert len(samples) == 12 and all(s.ref.soft for s in samples)
    assert any(((s.mask > 8) & (s.mask < 247)).any() for s in samples)


@pytest.fixture(scope="module")
def masker() -> SkyMasker:
    return SkyMasker(device="cpu")


def test_matte_opens_sky_between_branches(masker: SkyMasker) -> None:
    """The same bare trees at inference: the colour model opens sky the network called foreground."""
    image, _ = _read("stanford", "1000882")
    photo = np.asarray(Image.fromarray(image).resize((1280, 960), Image.Resampling.BICUBIC))
    prob = masker.predict_working_size([photo])[0]
    with_colour = refine_matte(photo, prob)
    without = refine_matte(photo, prob, MatteOptions(colour_zone=0))
    crowns = slice(48, 384)
    gained = (with_colour[crowns] >= 0.5) & (without[crowns] < 0.5)
    lost = (with_colour[crowns] < 0.5) & (without[crowns] >= 0.5)
    assert gained.sum() > 5 * max(1, lost.sum())
    assert gained.mean() > 0.01
    assert photo[crowns][gained].mean() > 150


def test_matte_lifts_the_networks_veil_off_a_dark_hill(masker: SkyMasker) -> None:
    """EveningGlow: below a bright sunset sky, the network leaves a faint 0.05-0.3 over the dark hill
    and treeline (a hazy new sky over them in the composite). Their colours are clearly foreground,
    so the colour model takes the veil off, while the sky stays fully sky."""
    with Image.open(SHARED_DATA / "photos" / "plasma_EveningGlow.jpg") as im:
        photo = np.asarray(im.convert("RGB").resize((1280, 800), Image.Resampling.BOX))
    prob = masker.predict_working_size([photo])[0]
    with_colour = refine_matte(photo, prob)
    plain = refine_matte(photo, prob, MatteOptions(colour_zone=0))
    hill = (slice(260, 296), slice(0, 384))  # hill and treeline below the sky line: rows 32.5-37 %, left 30 %
    assert (plain[hill] > 0.05).mean() > 0.02  # the network's veil is there to be lifted
    assert with_colour[hill].mean() < 0.6 * plain[hill].mean()
    assert (with_colour[hill] > 0.05).mean() < 0.5 * (plain[hill] > 0.05).mean()
    assert with_colour[:160].mean() > 0.99


def test_matte_makes_a_half_believed_sky_fully_sky(masker: SkyMasker) -> None:
    """A real coast photo whose network answer is made unsure over a patch of its open sky (0.6-0.85,
    mottled, as the network leaves some dusk skies): the patch's colour is the sky's right beside it,
    so the matte makes it sky instead of a partly replaced old sky."""
    image, label = _read("siftflow", "coast_arnat59")
    prob = masker.predict_working_size([image])[0].clone()
    size = prob.shape[0]
    patch = (slice(size // 10, size // 4), slice(size // 4, 3 * size // 4))
    assert prob[patch].min() > 0.99
    prob[patch] = 0.6 + 0.25 * torch.rand(prob[patch].shape, generator=torch.Generator().manual_seed(0))
    h, w = image.shape[:2]
    inside = (slice(round(0.12 * h), round(0.23 * h)), slice(round(0.28 * w), round(0.72 * w)))
    assert (label[inside] > 127).all()
    assert refine_matte(image, prob)[inside].mean() > 0.88
    assert refine_matte(image, prob, MatteOptions(colour_zone=0))[inside].mean() < 0.8


@pytest.mark.parametrize(("photo", "sky_to", "land_from"),
                         [("Storm.jpg", 0.45, 0.7), ("plasma_EveningGlow.jpg", 0.2, 0.45), ("plasma_Kite.jpg", 0.7, 0.9)])
def test_colour_model_zones_draw_no_edges(photo: str, sky_to: float, land_from: float) -> None:
    """A real photo's sky under an unsure network answer (0.7), its land sure foreground, and one speck
    of sure sky in the sky: the colour model acts around the speck, and its zones fade out, so two
    neighbouring pixels of exactly the same colour and the same network answer get nearly the same
    answer (at most 0.13 apart where the sky-line zone fades out, which the guided filter then spreads
    over its window). The zones used to be squares: around such a speck a straight-edged patch, 0.7
    apart from its outside, appeared in the composite's sky."""
    with Image.open(SHARED_DATA / "photos" / photo) as im:
        rgb = im.convert("RGB")
        width, height = 512, round(rgb.height * 512 / rgb.width)
        sky = np.asarray(rgb.resize((width, height), Image.Resampling.BOX))
    colours = torch.from_numpy(sky.copy()).permute(2, 0, 1)[None].float() / 255
    p = torch.full((1, 1, height, width), 0.7)
    p[:, :, round(land_from * height) :] = 0.0
    speck = round(sky_to * height / 2)
    p[:, :, speck : speck + 5, width // 2 : width // 2 + 5] = 0.99
    rows = slice(0, round(sky_to * height))
    refined = colour_refine(colours, p, 40)[:, :, rows]
    assert float(((refined - 0.7).abs() > 0.05).float().mean()) > 0.01  # the colour model does act
    for dim in (2, 3):
        same = (colours[:, :, rows].diff(dim=dim) == 0).all(dim=1, keepdim=True) & (p[:, :, rows].diff(dim=dim) == 0)
        assert int(same.sum()) > 1000
        assert float(refined.diff(dim=dim).abs()[same].max()) < 0.2
