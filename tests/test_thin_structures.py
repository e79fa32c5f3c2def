"""The thin-structure training look: exact coverage, labels lowered by it, on a real skyseg photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.data import index_skyseg, load_sample
from trainer.thin_structures import DRAWERS, CoveragePen, thin_structure_look


def _gen(seed: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def _photo(skyseg: Path, sample_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    ref = next(r for r in index_skyseg(skyseg, "train") if r.sample_id == sample_id)
    sample = load_sample(ref)
    image = torch.from_numpy(np.array(sample.image)).permute(2, 0, 1).float() / 255
    sky = torch.from_numpy(np.array(sample.mask)).float()[None] / 255
    return image, sky


def test_coverage_is_exact_on_known_shapes() -> None:
    pen = CoveragePen(40, 60)
    pen.line([(10, 20), (50, 20)], 0.5)  # half a pixel wide, 40 px long, centred on a pixel edge row
    coverage = pen.coverage()
    assert coverage.shape == (1, 40, 60)
    assert float(coverage.sum()) == pytest.approx(40 * 0.5, rel=0.06)  # area of the line (+ its round ends)
    assert float(coverage.max()) <= 0.5 + 1e-6  # a half-pixel line never covers a whole pixel
    pen = CoveragePen(40, 60)
    pen.ellipse(30, 20, 8, 8)
    assert float(pen.coverage().sum()) == pytest.approx(np.pi * 64, rel=0.03)


def test_structures_lower_the_sky_label_by_their_coverage(skyseg: Path) -> None:
    image, sky = _photo(skyseg, "coast_arnat59")
    void = torch.zeros_like(sky, dtype=torch.bool)
    void[:, :4] = True
    out, label, out_void = thin_structure_look(image, sky, void, _gen(5))
    again = thin_structure_look(image, sky, void, _gen(5))
    assert torch.equal(out, again[0]) and torch.equal(label, again[1])  # deterministic for a seed
    assert torch.equal(out_void, void)
    changed = (out - image).abs().amax(dim=0) > 1e-6
    assert changed.any()
    lowered = label < sky - 1e-6
    assert bool(lowered.any()) and not bool((label > sky + 1e-6).any())
    # Thin: most of the sky is untouched, and much of what is drawn is partial coverage (soft labels).
    in_sky = sky[0] > 0.99
    assert float(lowered[0][in_sky].float().mean()) < 0.5
    partial = (label[0] > 0.05) & (label[0] < 0.95) & in_sky
    assert int(partial.sum()) > 0.2 * int((lowered[0] & in_sky).sum())
    # Pixels nothing was drawn on keep their label and colour.
    assert torch.equal(label[0][~changed], sky[0][~changed])


def test_every_kind_draws_inside_the_frame_above_the_ground() -> None:
    ground = torch.full((96,), 60.0)
    for index, draw in enumerate(DRAWERS):
        pen = CoveragePen(80, 96)
        draw(pen, _gen(index), ground)
        coverage = pen.coverage()[0]
        assert float(coverage.sum()) > 1.0, draw.__name__
        assert float(coverage[:60].sum()) > 0.5 * float(coverage.sum()), draw.__name__  # mostly across the sky


def test_structures_in_front_of_land_keep_it_foreground(skyseg: Path) -> None:
    image, _ = _photo(skyseg, "coast_arnat59")
    no_sky = torch.zeros(1, *image.shape[1:])
    void = torch.zeros_like(no_sky, dtype=torch.bool)
    out, label, _ = thin_structure_look(image, no_sky, void, _gen(1))
    assert bool((out != image).any())  # drawn across the land: a wire is no cue for sky behind it
    assert not bool(label.any())
