"""The Krita plugin's pure logic, outside Krita: dialog values <-> options, settings, pixel bytes.

The plugin package is assembled exactly as install_plugin.py installs it (package + bridge_client.py +
core.json + options.json from the real core's ``--print-options``).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO))
import install_plugin  # the repository's installer script (not a package)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pykrita")
    python = Path(sys.executable)
    install_plugin.assemble(install_plugin.KRITA_SOURCE, root / "clnsod_sky", python,
                            install_plugin.core_option_table(python))
    sys.path.insert(0, str(root))
    try:
        package = importlib.import_module("clnsod_sky")  # must import without Krita
        options = importlib.import_module("clnsod_sky.options")
        pixels = importlib.import_module("clnsod_sky.pixels")
        table = options.bridge_client.load_option_table(str(root / "clnsod_sky"))
        yield package, options, pixels, table
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == "clnsod_sky" or n.startswith("clnsod_sky.")]:
            del sys.modules[name]


def _values(options, table, **changes):
    base = options.dialog_values_from({}, table)
    fields = dict(base.__dict__, **changes)
    return options.DialogValues(**fields)


def test_package_imports_without_krita(plugin) -> None:
    package, _, _, _ = plugin
    assert package.Krita is None


def test_defaults_round_trip(plugin) -> None:
    _, options, _, table = plugin
    built = options.build_options(options.dialog_values_from({}, table), table)
    assert built == table.defaults  # the dialog's untouched values are exactly the core's defaults
    assert built["mode"] == "replace" and built["sky"] == "sunset" and built["device"] == "auto"
    assert built["recolour"] == 0.35 and built["relight"] == 0.4 and built["sky_flip"] is False
    assert options.dialog_values_from(built, table) == options.dialog_values_from({}, table)


def test_dialog_widgets_come_from_the_core_table(plugin) -> None:
    _, options, _, table = plugin
    values = options.dialog_values_from({}, table)
    assert set(values.numbers) == {n.key for n in table.numbers} >= {"edge_shift", "sky_scale", "halo"}
    assert set(values.switches) == {"sky_flip"}
    assert {n.group for n in table.numbers} == {"edge", "sky", "foreground"}  # the dialog's three boxes
    assert [sky.name for sky in options.sky_choices(table)] == list(table.presets) and "cuda" in table.devices
    assert table.digest and len(table.digest) == 64


def test_dialog_values_map_to_request_options(plugin, tmp_path: Path) -> None:
    _, options, _, table = plugin
    sky = tmp_path / "my sky.jpg"
    sky.write_bytes(b"x")
    numbers = {"edge_shift": -3.0, "edge_fade": 4.0, "recolour": 0.0, "relight": 1.0, "sky_scale": 2.5,
               "sky_shift_x": -0.5, "sky_shift_y": 0.25}
    built = options.build_options(_values(options, table, sky_choice=options.SKY_FILE_CHOICE, sky_file=f"  {sky}  ",
                                          numbers=numbers, switches={"sky_flip": True}, device="cuda"), table)
    assert built["sky"] == str(sky) and built["sky_flip"] is True and built["device"] == "cuda"
    for key, value in numbers.items():
        assert built[key] == value and isinstance(built[key], float)
    assert options.dialog_values_from(built, table).sky_file == str(sky)
    assert options.dialog_values_from(built, table).sky_choice == options.SKY_FILE_CHOICE


def test_mask_only_needs_no_sky(plugin) -> None:
    _, options, _, table = plugin
    built = options.build_options(_values(options, table, mask_only=True, sky_choice=options.SKY_FILE_CHOICE,
                                          sky_file=""), table)
    assert built["mode"] == "mask"


def test_unusable_dialog_values_are_refused_readably(plugin, tmp_path: Path) -> None:
    _, options, _, table = plugin
    error = options.bridge_client.BridgeError
    with pytest.raises(error, match="choose a sky image file"):
        options.build_options(_values(options, table, sky_choice=options.SKY_FILE_CHOICE, sky_file=" "), table)
    with pytest.raises(error, match="not found"):
        options.build_options(_values(options, table, sky_choice=options.SKY_FILE_CHOICE,
                                      sky_file=str(tmp_path / "no.jpg")), table)
    with pytest.raises(error, match="unknown sky: purple-rain"):
        options.build_options(_values(options, table, sky_choice="purple-rain"), table)
    with pytest.raises(error, match="Sky scale must be between 1 and 10, got 0.5"):
        options.build_options(_values(options, table, numbers={"sky_scale": 0.5}), table)
    with pytest.raises(error, match="Device must be one of"):
        options.build_options(_values(options, table, device="tpu"), table)


def test_settings_remembered_and_garbage_falls_back(plugin, tmp_path: Path) -> None:
    _, options, _, table = plugin
    built = options.build_options(_values(options, table, sky_choice="overcast", device="cpu",
                                          numbers={"edge_fade": 12.0}), table)
    text = options.settings_text(built, table)
    assert set(json.loads(text)) == set(table.dialog_keys)  # no seed/weights/max_megapixels
    assert "seed" not in table.dialog_keys and "sky_flip" in table.dialog_keys
    assert options.options_from_settings(text, table) == {k: built[k] for k in table.dialog_keys}
    defaults = options.options_from_settings("", table)
    assert defaults["sky"] == "sunset" and defaults["edge_fade"] == 0.0
    assert options.options_from_settings("{not json", table) == defaults
    assert options.options_from_settings("[1, 2]", table) == defaults
    mixed = options.options_from_settings(json.dumps({"device": "tpu", "edge_fade": 7, "sky": str(tmp_path / "gone.jpg"),
                                                      "sky_flip": "yes", "unknown": 1}), table)
    assert mixed == dict(defaults, edge_fade=7)


def test_missing_or_foreign_option_table_says_reinstall(plugin, tmp_path: Path) -> None:
    _, options, _, _ = plugin
    client = options.bridge_client
    with pytest.raises(client.BridgeError, match="options.json is missing.*install_plugin.py"):
        client.load_option_table(str(tmp_path))
    (tmp_path / "options.json").write_text(json.dumps({"protocol": 1, "options": []}))
    with pytest.raises(client.BridgeError, match="protocol 1.*install_plugin.py"):
        client.load_option_table(str(tmp_path))
    (tmp_path / "options.json").write_text("{half")
    with pytest.raises(client.BridgeError, match="install_plugin.py"):
        client.load_option_table(str(tmp_path))


def test_color_space_check(plugin) -> None:
    _, _, pixels, _ = plugin
    for depth in ("U8", "U16", "F16", "F32"):
        assert pixels.color_space_problem("RGBA", depth) is None
    for model, depth in (("GRAYA", "U8"), ("CMYKA", "U8"), ("XYZA", "U16"), ("LABA", "F32")):
        message = pixels.color_space_problem(model, depth)
        assert f"{model} / {depth}" in message and "Convert Image Color Space" in message


def test_gray_layer_bytes_and_coverage(plugin) -> None:
    _, _, pixels, _ = plugin
    matte = bytes([0, 128, 255])
    assert pixels.gray_layer_bytes(matte) == bytes([0, 0, 0, 255, 128, 128, 128, 255, 255, 255, 255, 255])
    assert pixels.gray_layer_bytes(b"") == b""
    import struct

    assert struct.unpack("<8H", pixels.gray_layer_bytes(matte[:2], "U16")) == (0, 0, 0, 65535, 128 * 257, 128 * 257,
                                                                                128 * 257, 65535)
    for depth, code in (("F32", "f"), ("F16", "e")):
        values = struct.unpack(f"<8{code}", pixels.gray_layer_bytes(matte[1:], depth))
        assert values == pytest.approx([128 / 255] * 3 + [1.0] + [1.0] * 4, abs=1e-3)
    assert pixels.matte_coverage(bytes([255, 255, 0, 0])) == 0.5
    assert pixels.matte_coverage(b"") == 0.0


def test_skies_of_the_users_library_in_the_dialog(plugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real core lists presets and a sky of the user's library, with thumbnails; picking the user's
    sky sends its image file, and a request with that file shows as that sky again."""
    from conftest import PHOTOS

    from clnsod_core.compositing.library import SkyLibrary

    _, options, _, table = plugin
    monkeypatch.setenv("CLNSOD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLNSOD_CACHE_DIR", str(tmp_path / "cache"))
    matte = lambda photo, _space: (np.arange(photo.shape[0])[:, None] < photo.shape[0] * 0.6) * np.ones(photo.shape[:2])  # noqa: E731
    library = SkyLibrary()
    library.add(PHOTOS / "Storm.jpg", "my-storm", matte)
    skies, why = options.bridge_client.list_skies(sys.executable, table)
    assert why == ""
    assert [sky.name for sky in skies] == [*table.presets, "my-storm"]
    assert all(sky.thumbnail and Path(sky.thumbnail).is_file() for sky in skies)
    mine = skies[-1]
    assert mine.kind == "user" and mine.label == "My storm (your sky)" and mine.request_sky == str(library.get("my-storm").image)
    built = options.build_options(_values(options, table, sky_choice="my-storm"), table, skies)
    assert built["sky"] == mine.image
    assert options.dialog_values_from(built, table, skies).sky_choice == "my-storm"
    assert options.dialog_values_from(built, table).sky_choice == options.SKY_FILE_CHOICE  # unlisted: a file
    with pytest.raises(options.bridge_client.BridgeError, match="unknown sky"):
        options.build_options(_values(options, table, sky_choice="my-storm"), table)  # not listed
    presets, broken = options.bridge_client.list_skies("/nonexistent/python", table)
    assert [sky.name for sky in presets] == list(table.presets) and "cannot list skies" in broken
