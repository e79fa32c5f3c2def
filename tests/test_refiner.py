"""The matte's learned refiner (clnsod_core/masking/refiner.py) and its trainer (trainer/refiner_train.py),
with the shipped refiner and network on real photos and real skies from ../shared/data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clnsod_core.masking.inference import SkyMasker, embedded_weights_path
from clnsod_core.masking.matte import MatteOptions, guide_probabilities, open_zone, refine_matte
from clnsod_core.masking.refiner import (
    EMBEDDED_REFINER,
    MatteRefiner,
    embedded_refiner,
    keep_colour_decisions,
    load_refiner,
    refine_probability,
    save_refiner,
)
from trainer.data import index_data_dir, load_samples
from trainer.refiner_train import RefinerConfig, make_crops, refiner_loss, train_refiner

from conftest import PHOTOS, REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import fine_structure as fs  # noqa: E402  (a benchmark script, not a package)

WITH = MatteOptions(learned_refiner=True)


@pytest.fixture(scope="module")
def masker() -> SkyMasker:
    return SkyMasker(device="cpu")


def test_refiner_file_round_trip_and_refusals(tmp_path: Path) -> None:
    torch.manual_seed(0)
    refiner = MatteRefiner(8)
    torch.nn.init.normal_(refiner.out.weight, std=0.1)  # a non-zero correction, so the round trip is tested
    save_refiner(refiner, tmp_path / "r.pt", {"note": "test"})
    loaded = load_refiner(tmp_path / "r.pt")
    inputs = (torch.rand(1, 3, 40, 56), torch.rand(1, 1, 40, 56), torch.rand(1, 1, 40, 56))
    with torch.inference_mode():
        assert torch.allclose(loaded(*inputs), refiner.half().float()(*inputs), atol=1e-5)
    with pytest.raises(ValueError, match="not a matte refiner file"):
        load_refiner(embedded_weights_path())  # a network weights file is refused
    with pytest.raises(ValueError, match="not found"):
        load_refiner(tmp_path / "missing.pt")
    assert EMBEDDED_REFINER.stat().st_size < 200_000  # fp16, tiny beside the network


def test_the_colour_models_clear_decisions_stand() -> None:
    """A cut the colour model made (network 0.9, colour 0.02) is never undone and an opening never
    closed, whatever the refiner says; elsewhere the refiner's answer is taken."""
    network = torch.tensor([0.9, 0.1, 0.5, 0.5])
    colour = torch.tensor([0.02, 0.9, 0.6, 0.4])
    refined = torch.tensor([0.8, 0.3, 0.2, 0.9])
    assert keep_colour_decisions(refined, network, colour).tolist() == pytest.approx([0.02, 0.9, 0.2, 0.9])


def _guide_inputs(masker: SkyMasker, photo: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    colours = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
    return colours, *guide_probabilities(colours, masker.predict_working_size([photo])[0], MatteOptions())


def test_settled_pixels_keep_the_colour_models_answer(masker: SkyMasker) -> None:
    """Outside the open zone (every probability within 0.02 of 0 or 1 around it) the refiner changes
    nothing: the sky far above the land and the land far below it stay exactly what they were."""
    with Image.open(PHOTOS / "Storm.jpg") as im:
        photo = np.asarray(im.convert("RGB").resize((1024, 683), Image.Resampling.BOX))
    colours, p_network, p_colour = _guide_inputs(masker, photo)
    zone = open_zone(p_colour, 10)
    refined = refine_probability(embedded_refiner(), colours, p_network, p_colour, zone)
    assert 0.01 < float(zone.float().mean()) < 0.6
    assert torch.equal(refined[~zone], p_colour[~zone])
    assert float((refined[zone] - p_colour[zone]).abs().max()) > 0.05  # inside it, the refiner does work


def test_refiner_makes_fine_structure_mattes_better(masker: SkyMasker) -> None:
    """Real skies behind drawn crowns, reeds and bridges (the benchmark's generator, another seed than
    its report): with the refiner the matte's IoU and alpha error over them both improve."""
    totals = {"with": np.zeros(3), "without": np.zeros(3)}  # intersection, union, squared error
    for index in (1, 2, 4, 9, 10, 12):  # leafy trees, reeds, bridges
        comp = fs.make_composite(index, seed=11, width=1200, height=800)
        prob = masker.predict_working_size([comp.image])[0]
        for name, options in (("with", WITH), ("without", MatteOptions())):
            m = fs.measures(refine_matte(comp.image, prob, options), comp.sky_alpha)
            totals[name] += (m["inter"], m["union"], m["mse"])
    iou = {name: t[0] / t[1] for name, t in totals.items()}
    assert iou["with"] > iou["without"] + 0.002, iou
    assert totals["with"][2] < 0.97 * totals["without"][2], totals


def test_posts_the_colour_model_cut_stay_cut(masker: SkyMasker) -> None:
    """Barbed-wire fences with dark posts against real skies, at the guide's size: wherever the colour
    model cut what the network missed, the refiner never raises it again, and the posts stay foreground."""
    for index in (7, 15):
        comp = fs.make_composite(index, seed=11, width=1024, height=683)
        colours, p_network, p_colour = _guide_inputs(masker, comp.image)
        refined = refine_probability(embedded_refiner(), colours, p_network, p_colour, open_zone(p_colour, 10))
        cut = p_colour <= p_network - 0.25
        assert int(cut.sum()) > 100
        assert bool((refined[cut] <= p_colour[cut] + 1e-6).all())
        solid = torch.from_numpy(comp.sky_alpha < 0.05)[None, None] & cut
        assert float(refined[solid].mean()) < 0.1


def test_refiner_training_learns_on_real_photos(tiny_dataset: Path, tmp_path: Path) -> None:
    """A short run on 12 real photos with drawn structures: crops sit in the open zone, the trained
    refiner's loss on them is lower than the colour model's alone (its zero-initialised start), and
    the file it writes loads."""
    samples = load_samples([r for r in index_data_dir(tiny_dataset, "train") if r.mask is not None], 512)
    from clnsod_core.weights.format import load_model

    cfg = RefinerConfig(examples=8, crops_per_example=2, crop=128, min_side=256, max_side=384, steps=120, batch=4,
                        width=8, seed=1)
    crops = make_crops(load_model(embedded_weights_path()), samples, cfg)
    assert crops.colours.shape[1:] == (3, 128, 128) and crops.colours.shape[0] >= 8
    assert float(crops.maps[:, 3].float().mean()) > 0.15  # crops are taken where the answer is open
    with torch.no_grad():
        before = float(refiner_loss(MatteRefiner(8), crops.colours, crops.maps))
    trained = train_refiner(crops, cfg, tmp_path / "refiner.pt")
    with torch.no_grad():
        after = float(refiner_loss(trained, crops.colours, crops.maps))
    assert after < 0.95 * before
    assert isinstance(load_refiner(tmp_path / "refiner.pt"), MatteRefiner)


def test_refiner_training_command(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.pt"
    done = subprocess.run([sys.executable, "-m", "trainer.refiner_train", "--data", str(tiny_dataset), "--out", str(out),
                           "--examples", "2", "--steps", "2", "--batch-size", "2", "--threads", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert load_refiner(out).width == RefinerConfig.width
    bad = subprocess.run([sys.executable, "-m", "trainer.refiner_train", "--data", str(tiny_dataset), "--out", str(out),
                          "--steps", "0"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--steps" in bad.stderr
