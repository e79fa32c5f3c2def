"""Shared fixtures: real data from ../shared/data and small real photos derived from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Replaced photos carry the run's time in their XMP; a fixed one (the reproducible-builds convention the
# CLI honours) keeps outputs of separate runs byte-comparable. tests/test_disclosure.py checks the clock.
os.environ.setdefault("SOURCE_DATE_EPOCH", "1767225600")
SHARED_DATA = Path(os.environ.get("CLNSOD_SHARED_DATA", REPO.parent / "shared" / "data"))
SKYSEG = SHARED_DATA / "skyseg"
PHOTOS = SHARED_DATA / "photos"


@pytest.fixture(scope="session")
def skyseg() -> Path:
    if not (SKYSEG / "index.jsonl").is_file():
        pytest.fail(f"real test data missing: {SKYSEG}/index.jsonl (CI provides ../shared beside the repo)")
    return SKYSEG


@pytest.fixture(scope="session")
def landscape_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real landscape photo (storm sky over fields and a road), downscaled to keep tests fast.

    Its top 40 % is sky and its bottom 30 % is ground in every column.
    """
    src = PHOTOS / "Storm.jpg"
    out = tmp_path_factory.mktemp("photos") / "storm.jpg"
    with Image.open(src) as im:
        im.convert("RGB").resize((960, im.height * 960 // im.width), Image.Resampling.BILINEAR).save(out, quality=92)
    return out


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, skyseg: Path) -> Path:
    """An images/ + masks/ (+ void/) folder built from 12 real skyseg training photos."""
    root = tmp_path_factory.mktemp("tiny") / "mine"
    for sub in ("images", "masks", "void"):
        (root / sub).mkdir(parents=True)
    rows = [line for line in (skyseg / "index.jsonl").read_text().splitlines() if '"train"' in line]
    picked = rows[:: len(rows) // 12][:12]
    import json

    for row in map(json.loads, picked):
        base = skyseg / row["dataset"]
        (root / "images" / f"{row['id']}.jpg").write_bytes((base / "images" / f"{row['id']}.jpg").read_bytes())
        (root / "masks" / f"{row['id']}.png").write_bytes((base / "masks" / f"{row['id']}.png").read_bytes())
        if row["void"]:
            (root / "void" / f"{row['id']}.png").write_bytes((base / "void" / f"{row['id']}.png").read_bytes())
    return root
