"""The Krita plugin's pure logic, outside Krita: dialog values <-> options, settings, pixel bytes.

The plugin package is assembled as install_plugin.py installs it (package + bridge_client.py copied in).
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pykrita")
    shutil.copytree(REPO / "plugin" / "krita" / "clnsod_sky", root / "clnsod_sky")
    shutil.copy2(REPO / "plugin" / "common" / "bridge_client.py", root / "clnsod_sky" / "bridge_client.py")
    sys.path.insert(0, str(root))
    try:
        package = importlib.import_module("clnsod_sky")  # must import without Krita
        options = importlib.import_module("clnsod_sky.options")
        pixels = importlib.import_module("clnsod_sky.pixels")
        yield package, options, pixels
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == "clnsod_sky" or n.startswith("clnsod_sky.")]:
            del sys.modules[name]


def _values(options, **changes):
    base = options.dialog_values_from({})
    fields = dict(base.__dict__, **changes)
    return options.DialogValues(**fields)


def test_package_imports_without_krita(plugin) -> None:
    package, _, _ = plugin
    assert package.Krita is None


def test_defaults_round_trip(plugin) -> None:
    _, options, _ = plugin
    built = options.build_options(options.dialog_values_from({}))
    assert built["mode"] == "replace" and built["sky"] == "sunset" and built["device"] == "auto"
    assert built["recolour"] == 0.35 and built["relight"] == 0.4 and built["sky_flip"] is False
    assert options.dialog_values_from(built) == options.dialog_values_from({})


def test_dialog_values_map_to_request_options(plugin, tmp_path: Path) -> None:
    _, options, _ = plugin
    sky = tmp_path / "my sky.jpg"
    sky.write_bytes(b"x")
    numbers = {"edge_shift": -3.0, "edge_fade": 4.0, "recolour": 0.0, "relight": 1.0, "sky_scale": 2.5,
               "sky_shift_x": -0.5, "sky_shift_y": 0.25}
    built = options.build_options(_values(options, sky_choice=options.SKY_FILE_CHOICE, sky_file=f"  {sky}  ",
                                          numbers=numbers, sky_flip=True, device="cuda"))
    assert built["sky"] == str(sky) and built["sky_flip"] is True and built["device"] == "cuda"
    for key, value in numbers.items():
        assert built[key] == value and isinstance(built[key], float)
    assert options.dialog_values_from(built).sky_file == str(sky)
    assert options.dialog_values_from(built).sky_choice == options.SKY_FILE_CHOICE


def test_mask_only_needs_no_sky(plugin) -> None:
    _, options, _ = plugin
    built = options.build_options(_values(options, mask_only=True, sky_choice=options.SKY_FILE_CHOICE, sky_file=""))
    assert built["mode"] == "mask"


def test_unusable_dialog_values_are_refused_readably(plugin, tmp_path: Path) -> None:
    _, options, _ = plugin
    error = options.bridge_client.BridgeError
    with pytest.raises(error, match="choose a sky image file"):
        options.build_options(_values(options, sky_choice=options.SKY_FILE_CHOICE, sky_file=" "))
    with pytest.raises(error, match="not found"):
        options.build_options(_values(options, sky_choice=options.SKY_FILE_CHOICE, sky_file=str(tmp_path / "no.jpg")))
    with pytest.raises(error, match="unknown sky preset"):
        options.build_options(_values(options, sky_choice="purple-rain"))
    with pytest.raises(error, match="Sky scale"):
        options.build_options(_values(options, numbers={"sky_scale": 0.5}))


def test_settings_remembered_and_garbage_falls_back(plugin, tmp_path: Path) -> None:
    _, options, _ = plugin
    built = options.build_options(_values(options, sky_choice="overcast", device="cpu",
                                          numbers={"edge_fade": 12.0}))
    text = options.settings_text(built)
    assert set(json.loads(text)) == set(options.DIALOG_KEYS)  # no seed/weights
    assert options.options_from_settings(text) == {k: built[k] for k in options.DIALOG_KEYS}
    defaults = options.options_from_settings("")
    assert defaults["sky"] == "sunset" and defaults["edge_fade"] == 0.0
    assert options.options_from_settings("{not json") == defaults
    assert options.options_from_settings("[1, 2]") == defaults
    mixed = options.options_from_settings(json.dumps({"device": "tpu", "edge_fade": 7, "sky": str(tmp_path / "gone.jpg"),
                                                      "unknown": 1}))
    assert mixed == dict(defaults, edge_fade=7)


def test_color_space_check(plugin) -> None:
    _, _, pixels = plugin
    assert pixels.color_space_problem("RGBA", "U8") is None
    for model, depth in (("RGBA", "U16"), ("RGBA", "F32"), ("GRAYA", "U8"), ("CMYKA", "U8")):
        message = pixels.color_space_problem(model, depth)
        assert f"{model} / {depth}" in message and "Convert Image Color Space" in message


def test_gray_layer_bytes_and_coverage(plugin) -> None:
    _, _, pixels = plugin
    matte = bytes([0, 128, 255])
    assert pixels.gray_layer_bytes(matte) == bytes([0, 0, 0, 255, 128, 128, 128, 255, 255, 255, 255, 255])
    assert pixels.gray_layer_bytes(b"") == b""
    assert pixels.matte_coverage(bytes([255, 255, 0, 0])) == 0.5
    assert pixels.matte_coverage(b"") == 0.0
