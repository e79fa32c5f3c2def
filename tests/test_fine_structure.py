"""The fine-structure benchmark's generator and measures (benchmarks/fine_structure.py), on real skies
and real foreground bands from ../shared/data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fine_structure as fs  # noqa: E402  (a benchmark script, not a package)


def test_alpha_is_the_exact_coverage_of_a_known_shape() -> None:
    pen = fs.Pen(32, 16)
    # Vertices on the 1/4-px sample grid: the closed outline covers [10.25, 20.75) x [5.5, 9.25).
    pen.polygon([(10.25, 5.5), (20.5, 5.5), (20.5, 9.0), (10.25, 9.0)])
    x_cover = np.clip(np.minimum(np.arange(32) + 1, 20.75) - np.maximum(np.arange(32), 10.25), 0, 1)
    y_cover = np.clip(np.minimum(np.arange(16) + 1, 9.25) - np.maximum(np.arange(16), 5.5), 0, 1)
    expected = y_cover[:, None] * x_cover[None, :]
    assert np.abs(pen.alpha() - expected).max() <= 0.5 / 255 + 1e-6
    assert pen.alpha()[5, 10] == pytest.approx(0.375, abs=1 / 255)  # a corner pixel: 3/4 x 1/2


def test_thin_wire_has_partial_coverage_that_sums_to_its_area() -> None:
    pen = fs.Pen(64, 32)
    pen.line([(0.0, 10.0), (64.0, 10.0)], width=0.5)  # half a pixel wide
    alpha = pen.alpha()
    assert 0 < alpha.max() < 1  # never a solid pixel: the sky shows through
    assert alpha.sum() / 64 == pytest.approx(0.5, abs=0.26)  # within one sample row of 0.5 px


def test_composites_are_deterministic_and_exact() -> None:
    first = fs.make_composite(3, seed=7, width=480, height=320)
    again = fs.make_composite(3, seed=7, width=480, height=320)
    other = fs.make_composite(3, seed=8, width=480, height=320)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.sky_alpha, again.sky_alpha)
    assert not np.array_equal(first.image, other.image)
    assert first.kind == fs.KINDS[3]
    alpha = first.sky_alpha
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert 0.05 < alpha.mean() < 0.95  # both sky and foreground
    assert (alpha[-10:] < 0.01).all()  # the real foreground band stands on the bottom edge


def test_a_night_sky_is_lit_as_night_and_not_darkened_again() -> None:
    """A starry preset sky goes with night lighting only, keeping its own brightness above the land."""
    night = [c for c in (fs.make_composite(i, seed=0, width=120, height=80) for i in range(12))
             if c.sky_source in fs.NIGHT_SKIES]
    assert night, "the first 12 composites of seed 0 hold a night sky"
    for comp in night:
        assert comp.lighting == "night"
        sky = comp.image[comp.sky_alpha > 0.99].mean()
        land = comp.image[comp.sky_alpha < 0.01].mean()
        assert sky > 15 and sky > land, (sky, land)


@pytest.mark.parametrize("index", range(len(fs.KINDS)))
def test_every_kind_draws_thin_structure_over_the_sky(index: int) -> None:
    comp = fs.make_composite(index, seed=0, width=600, height=400)
    partial = (comp.sky_alpha > 0.02) & (comp.sky_alpha < 0.98)
    assert partial.mean() > 0.002, comp.kind  # fractional coverage: wires, twigs, leaves, stalks


def test_measures() -> None:
    gt = np.zeros((100, 100), np.float32)
    gt[:40] = 1.0
    same = fs.measures(gt, gt)
    assert same["sad"] == same["mse"] == same["grad"] == same["conn"] == same["band_err"] == 0
    assert same["inter"] == same["union"] == 4000
    off = fs.measures(np.clip(gt + 0.1, 0, 1), gt)
    assert off["sad"] == pytest.approx(0.1 * 6000 / 1000)
    assert off["mse"] == pytest.approx(0.01 * 0.6)
    hole = gt.copy()
    hole[10:20, 10:20] = 0  # a blob of sky called foreground
    assert fs.measures(hole, gt)["conn"] > 0
    assert fs.measures(hole, gt)["grad"] > 0
