"""The user's sky library: ``clnsod skies add/list/remove`` and ``--sky NAME``, on real photos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clnsod_core.compositing.library import SkyLibrary, name_from_file, sky_rectangle
from clnsod_core.compositing.skies import PRESETS
from tests.cli_runner import run_cli
from tests.conftest import PHOTOS, SHARED_DATA

INTERIOR = SHARED_DATA / "interiors" / "images" / "100_kitchen.jpg"


def test_sky_rectangle_is_the_largest_clear_stretch_under_the_skyline() -> None:
    """A skyline with a tower on the left and a low roof on the right; a bird in the sky is ignored."""
    matte = np.zeros((400, 600), np.float32)
    matte[:300] = 1  # land from row 300
    matte[100:, 0:80] = 0  # a tower reaching row 100
    matte[150:, 400:] = 0  # a roof reaching row 150
    matte[40:43, 300:303] = 0  # a bird
    assert sky_rectangle(matte) == (80, 0, 400, 300)
    assert sky_rectangle(np.zeros((50, 50), np.float32)) is None
    big = np.kron(matte, np.ones((4, 4), np.float32))  # 2400 px wide: found on a grid of 3 px cells
    left, top, right, bottom = sky_rectangle(big)
    assert 320 <= left <= 323 and top == 0 and 1597 <= right <= 1600 and 1197 <= bottom <= 1200  # within a cell
    assert (big[top:bottom, left:right] < 1).sum() == 12 * 12  # only the bird


def test_names_from_files() -> None:
    assert name_from_file(Path("My Sky (2).JPG")) == "my-sky-2"
    assert name_from_file(Path("Évening__glow.tif")) == "evening__glow"
    assert name_from_file(Path("~~~.png")) == ""  # then --name is needed


@pytest.fixture()
def library_env(tmp_path: Path) -> dict[str, str]:
    return {"CLNSOD_DATA_DIR": str(tmp_path / "data"), "CLNSOD_CACHE_DIR": str(tmp_path / "cache")}


def test_add_list_use_and_remove_skies(tmp_path: Path, library_env: dict[str, str],
                                       landscape_photo: Path) -> None:
    small = tmp_path / "small sky.jpg"
    with Image.open(PHOTOS / "Storm.jpg") as im:
        im.resize((900, 600), Image.Resampling.LANCZOS).save(small, quality=92)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    added = run_cli("skies", "add", PHOTOS / "Storm.jpg", small, INTERIOR, text, tmp_path / "missing.jpg",
                    PHOTOS / "Dune.jpg", env=library_env)
    assert added.returncode == 1
    assert "2 added, 4 failed" in added.stderr
    assert "small sky.jpg is only 900x600" in added.stderr  # a warning, still added
    assert f"{INTERIOR}: no sky found in this photo" in added.stderr  # an interior: no sky to import
    assert "notes.jpg" in added.stderr and "missing.jpg: file not found" in added.stderr
    assert "Dune.jpg: the sky along the top of this photo is too small" in added.stderr

    library = SkyLibrary(Path(library_env["CLNSOD_DATA_DIR"]))
    storm = library.get("storm")
    assert storm is not None and library.get("small-sky") is not None
    assert sorted(os.listdir(library.folder)) == ["small-sky", "storm"]  # nothing half-imported
    # The stored sky is the source's sky, cropped above its land; the horizon lies below the crop.
    with Image.open(PHOTOS / "Storm.jpg") as im:
        source = np.asarray(im.convert("RGB"))
    left, top, right, bottom = storm.crop
    stored = np.asarray(Image.open(storm.image))
    assert stored.shape == (bottom - top, right - left, 3) == (storm.height, storm.width, 3)
    np.testing.assert_array_equal(stored, source[top:bottom, left:right])  # lossless, unchanged pixels
    assert 0.3 * source.shape[0] < bottom <= storm.horizon < 0.8 * source.shape[0]
    with Image.open(storm.thumbnail) as thumb:
        assert thumb.width == 320 and thumb.format == "JPEG"

    again = run_cli("skies", "add", PHOTOS / "Storm.jpg", "--name", "storm-2", env=library_env)
    assert again.returncode == 1 and "already in the library as 'storm'" in again.stderr
    for name, message in (("sunset", "is a built-in preset"), ("Bad Name", "not a usable sky name")):
        refused = run_cli("skies", "add", small, "--name", name, env=library_env)
        assert refused.returncode == 1 and message in refused.stderr
    both = run_cli("skies", "add", small, PHOTOS / "Storm.jpg", "--name", "x", env=library_env)
    assert both.returncode == 2 and "give one FILE" in both.stderr

    listing = run_cli("skies", "list", env=library_env)
    assert listing.returncode == 0
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert set(PRESETS) < set(lines) and f"{storm.width}x{storm.height}" in lines["storm"]
    assert "from Storm.jpg" in lines["storm"] and "yours" in lines["storm"]
    catalogue = json.loads(run_cli("skies", "list", "--json", env=library_env).stdout)
    by_name = {entry["name"]: entry for entry in catalogue}
    assert [e["name"] for e in catalogue[: len(PRESETS)]] == list(PRESETS)
    assert all(Path(entry["thumbnail"]).is_file() for entry in catalogue)
    assert by_name["storm"]["image"] == str(storm.image) and by_name["storm"]["kind"] == "user"

    # --sky NAME uses the stored sky: the same composite as passing its image file.
    by_name_out, by_file_out = tmp_path / "by_name.png", tmp_path / "by_file.png"
    for sky, out in (("storm", by_name_out), (storm.image, by_file_out)):
        result = run_cli("replace", landscape_photo, "--sky", sky, "-o", out, env=library_env)
        assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(by_name_out)), np.asarray(Image.open(by_file_out)))

    removed = run_cli("skies", "remove", "storm", "nope", env=library_env)
    assert removed.returncode == 1 and "removed storm" in removed.stdout and "no sky named 'nope'" in removed.stderr
    assert sorted(os.listdir(library.folder)) == ["small-sky"]
    gone = run_cli("replace", landscape_photo, "--sky", "storm", "-o", tmp_path / "o.png", env=library_env)
    assert gone.returncode == 1 and "storm" in gone.stderr and not (tmp_path / "o.png").exists()


def test_a_library_that_cannot_be_written_leaves_nothing_behind(tmp_path: Path, library_env: dict[str, str]) -> None:
    skies = Path(library_env["CLNSOD_DATA_DIR"]) / "skies"
    skies.mkdir(parents=True)
    skies.chmod(0o555)
    try:
        refused = run_cli("skies", "add", PHOTOS / "Storm.jpg", env=library_env)
    finally:
        skies.chmod(0o755)
    assert refused.returncode == 1 and "cannot write to the sky library" in refused.stderr
    assert os.listdir(skies) == []
