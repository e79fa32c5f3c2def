"""The GIMP plug-in's pure logic (argument mapping, canvas clipping), outside GIMP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "plugin" / "common"), str(REPO / "plugin" / "gimp" / "clnsod-replace-sky")]
import bridge_client
import replace_sky_logic as logic


def default_values() -> dict[str, object]:
    """Argument values as GIMP's config holds them when nothing is changed."""
    values: dict[str, object] = {"sky": "sunset", "sky-flip": False, "device": "auto", "mask-only": False}
    values.update({logic.arg_name(o.key): o.default for o in bridge_client.NUMBER_OPTIONS})
    return values


def test_defaults_map_to_the_protocol_defaults() -> None:
    options = logic.request_options(default_values(), None)
    assert bridge_client.validate_options(options) == bridge_client.DEFAULT_OPTIONS


def test_sky_file_wins_over_preset_and_mask_only_sets_mask_mode(tmp_path: Path) -> None:
    sky = tmp_path / "sky.jpg"
    sky.write_bytes(b"not checked here")
    values = default_values() | {"mask-only": True, "sky-shift-x": 0.25, "sky-flip": True, "device": "cpu"}
    options = logic.request_options(values, str(sky))
    assert options["sky"] == str(sky) and options["mode"] == "mask"
    assert options["sky_shift_x"] == 0.25 and options["sky_flip"] is True and options["device"] == "cpu"


def test_every_shared_option_has_a_gimp_argument_name() -> None:
    names = {logic.arg_name(o.key) for o in bridge_client.NUMBER_OPTIONS}
    assert all(name.replace("-", "").isalnum() and name.islower() for name in names)
    assert "edge-shift" in names and "sky-shift-y" in names


@pytest.mark.parametrize(("offsets", "size", "expected"), [
    ((0, 0), (10, 8), (0, 0, 10, 8)),  # exactly the canvas
    ((3, 2), (10, 8), (0, 0, 7, 6)),  # shifted right/down: its right and bottom edges hang off
    ((-4, -1), (10, 8), (4, 1, 6, 7)),  # shifted left/up
    ((-2, -2), (20, 20), (2, 2, 10, 8)),  # larger than the canvas
    ((10, 0), (5, 5), None),  # entirely off-canvas
])
def test_visible_part(offsets: tuple[int, int], size: tuple[int, int],
                      expected: tuple[int, int, int, int] | None) -> None:
    assert logic.visible_part(*offsets, *size, 10, 8) == expected


def test_crop_plane_takes_rows_and_columns() -> None:
    width, height = 5, 4
    data = bytes(range(width * height * 2))  # 2 bytes per pixel
    crop = logic.crop_plane(data, width, 2, 1, 2, 3, 2)
    expected = b"".join(data[(r * width + 1) * 2:(r * width + 4) * 2] for r in (2, 3))
    assert crop == expected
    assert logic.crop_plane(data, width, 2, 0, 1, width, 2) == data[width * 2:width * 2 * 3]
