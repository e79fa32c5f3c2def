"""Disclosure of replaced skies on a real photo: XMP in every output format (the original's EXIF kept),
the run's time, a visible ``--label`` in one corner only, and ``batch --manifest`` pairing every
output with its original (written, no sky, skipped, failed) in CSV and JSON."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import tifffile
from cli_runner import run_cli
from conftest import SHARED_DATA
from PIL import Image

from clnsod_core import __version__
from clnsod_core.compositing.disclosure import DIGITAL_SOURCE_TYPE, XMP_NAMESPACE, disclosure_xmp
from clnsod_core.imaging.io import PhotoMeta, save_image

RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
WHEN = "2026-01-01T00:00:00+00:00"  # SOURCE_DATE_EPOCH of conftest.py


def read_xmp(path: Path) -> dict[str, str]:
    """The attributes of the XMP packet's rdf:Description, as other software reads them."""
    if path.suffix in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:
            packet = bytes(tif.pages[0].tags[700].value)
    else:
        import pillow_heif

        pillow_heif.register_heif_opener()
        with Image.open(path) as im:
            packet = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    assert packet, f"{path.name} has no XMP"
    text = packet.decode("utf-8") if isinstance(packet, bytes) else packet
    packet_xml = text[text.index("<x:xmpmeta"): text.index("</x:xmpmeta>") + len("</x:xmpmeta>")]
    description = ET.fromstring(packet_xml).find(f"{RDF}RDF/{RDF}Description")
    return {key.split("}")[-1] if "}" in key else key: value for key, value in description.attrib.items()} | {
        "_raw": text}


def check_disclosed(xmp: dict[str, str], sky: str, label: str | None = None, when: str = WHEN) -> None:
    assert xmp["SkyReplaced"] == "True" and xmp["Sky"] == sky and xmp["ModifyDate"] == when
    assert xmp["CreatorTool"] == f"CLN-SOD {__version__}" and xmp["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert XMP_NAMESPACE in xmp["_raw"]
    assert xmp.get("Label") == label


@pytest.fixture(scope="module")
def photo(landscape_photo: Path) -> np.ndarray:
    with Image.open(landscape_photo) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("suffix, bits", [(".jpg", 8), (".png", 8), (".tif", 8), (".webp", 8), (".heic", 8),
                                          (".avif", 8), (".png", 16), (".tif", 16)])
def test_every_output_format_carries_the_xmp_and_keeps_the_exif(photo: np.ndarray, suffix: str, bits: int,
                                                                  tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS R6"
    pixels = photo if bits == 8 else photo.astype(np.uint16) * 257
    path = tmp_path / f"out{bits}{suffix}"
    save_image(pixels, path, PhotoMeta(exif.tobytes()), xmp=disclosure_xmp("golden-hour", WHEN, "Virtually enhanced"))
    check_disclosed(read_xmp(path), "golden-hour", "Virtually enhanced")
    with Image.open(path) as im:
        assert im.getexif().get(0x010F) == "Canon"  # the original's camera tags are still there


def test_replace_discloses_and_the_label_is_only_in_its_corner(landscape_photo: Path, photo: np.ndarray,
                                                                tmp_path: Path) -> None:
    plain, labelled = tmp_path / "plain.png", tmp_path / "labelled.png"
    assert run_cli("replace", landscape_photo, "--sky", "sunset", "-o", plain).returncode == 0
    result = run_cli("replace", landscape_photo, "--sky", "sunset", "--label", "Virtually enhanced", "-o", labelled)
    assert result.returncode == 0, result.stderr
    check_disclosed(read_xmp(plain), "sunset")
    check_disclosed(read_xmp(labelled), "sunset", "Virtually enhanced")
    a, b = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (plain, labelled))
    h, w = photo.shape[:2]
    changed = np.argwhere(np.abs(a - b).max(axis=-1) > 0)
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    assert top > h * 0.85 and left > w * 0.6 and bottom < h and right < w  # one box, bottom right
    box = b[top : bottom + 1, left : right + 1]
    assert (box.max(axis=-1) > 240).mean() > 0.05  # white text ...
    assert np.median(box) < np.median(a[top : bottom + 1, left : right + 1])  # ... on a darkened box


def test_the_time_is_the_runs_own_without_source_date_epoch(landscape_photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "now.jpg"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    result = run_cli("replace", landscape_photo, "--sky", "overcast", "-o", out, env={"SOURCE_DATE_EPOCH": ""})
    assert result.returncode == 0, result.stderr
    stamped = datetime.fromisoformat(read_xmp(out)["ModifyDate"])
    assert before <= stamped <= datetime.now(timezone.utc)


def test_batch_manifest_pairs_outputs_with_originals(landscape_photo: Path, tmp_path: Path) -> None:
    photos = tmp_path / "shoot"
    (photos / "rooms").mkdir(parents=True)
    (photos / "front.jpg").write_bytes(landscape_photo.read_bytes())
    kitchen = SHARED_DATA / "interiors" / "images" / "107_kitchen.jpg"  # held out; no sky (test_no_sky.py)
    (photos / "rooms" / "kitchen.jpg").write_bytes(kitchen.read_bytes())
    (photos / "broken.jpg").write_text("not a photo")
    out = tmp_path / "listing"
    result = run_cli("batch", photos, "-o", out, "--sky", "clear-blue", "--label", "Virtually enhanced",
                     "--manifest", tmp_path / "manifest.csv")
    assert result.returncode == 1, result.stderr  # the broken file
    with open(tmp_path / "manifest.csv", newline="") as handle:
        rows = {Path(row["original"]).name: row for row in csv.DictReader(handle)}
    assert {name: row["status"] for name, row in rows.items()} == {
        "front.jpg": "written", "kitchen.jpg": "no sky", "broken.jpg": "failed"}
    assert rows["front.jpg"]["outputs"] == str(out / "front.jpg")
    assert rows["kitchen.jpg"]["outputs"] == str(out / "rooms" / "kitchen.jpg")
    assert "not an image file" in rows["broken.jpg"]["detail"]
    settings = json.loads(rows["front.jpg"]["settings"])
    assert settings["sky"] == "clear-blue" and settings["label"] == "Virtually enhanced"
    check_disclosed(read_xmp(out / "front.jpg"), "clear-blue", "Virtually enhanced")
    # The photo without sky is written unchanged: its own bytes, nothing claims a replacement.
    assert (out / "rooms" / "kitchen.jpg").read_bytes() == kitchen.read_bytes()

    again = run_cli("batch", photos, "-o", out, "--sky", "clear-blue", "--manifest", tmp_path / "manifest.json")
    assert again.returncode == 1
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["tool"] == f"CLN-SOD {__version__}" and manifest["output"] == "composite"
    assert {Path(p["original"]).name: p["status"] for p in manifest["photos"]} == {
        "front.jpg": "skipped", "kitchen.jpg": "skipped", "broken.jpg": "failed"}


def test_bad_label_or_manifest_name_is_a_usage_error(landscape_photo: Path, tmp_path: Path) -> None:
    for args in (("--label", ""), ("--label", "x" * 81), ("--label", "line\nbreak")):
        result = run_cli("replace", landscape_photo, "--sky", "sunset", "-o", tmp_path / "x.jpg", *args)
        assert result.returncode == 2 and "label must be" in result.stderr
    result = run_cli("batch", landscape_photo.parent, "-o", tmp_path / "o", "--sky", "sunset",
                     "--manifest", tmp_path / "m.txt")
    assert result.returncode == 2 and "--manifest must end in .csv or .json" in result.stderr
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "o").exists()
