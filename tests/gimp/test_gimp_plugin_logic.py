"""The GIMP plug-in's pure logic (arguments from the core's option table, argument mapping, canvas
clipping), outside GIMP. The option table is the one install_plugin.py writes (the real core's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "plugin" / "common"), str(REPO / "plugin" / "gimp" / "clnsod-replace-sky")]
import bridge_client
import install_plugin
import replace_sky_logic as logic


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> bridge_client.OptionTable:
    """The option table of a plug-in folder assembled as install_plugin.py installs it."""
    folder = tmp_path_factory.mktemp("plug-ins") / install_plugin.GIMP_NAME
    python = Path(sys.executable)
    install_plugin.assemble(install_plugin.GIMP_SOURCE, folder, python, install_plugin.core_option_table(python))
    return bridge_client.load_option_table(str(folder))


def default_values(table: bridge_client.OptionTable) -> dict[str, object]:
    """Argument values as GIMP's config holds them when nothing is changed: each argument's default."""
    return {spec.name: spec.default for spec in logic.argument_specs(table) if spec.kind != "file"}


def test_defaults_map_to_the_protocol_defaults(table: bridge_client.OptionTable) -> None:
    options = logic.request_options(default_values(table), None, table)
    assert table.validate(options) == table.defaults


def test_arguments_are_generated_from_the_table(table: bridge_client.OptionTable) -> None:
    specs = {spec.name: spec for spec in logic.argument_specs(table)}
    assert list(specs)[:2] == [logic.SKY_PRESET_ARG, logic.SKY_FILE_ARG]
    assert list(specs)[-2:] == [logic.DEVICE_ARG, logic.MASK_ONLY_ARG]
    for number in table.numbers:
        spec = specs[logic.arg_name(number.key)]
        assert (spec.kind, spec.minimum, spec.maximum, spec.default) == ("double", number.minimum, number.maximum,
                                                                         number.default)
        assert spec.label.replace("_", "") == number.label and spec.help == number.tooltip
    assert specs["sky-flip"].kind == "boolean" and specs["sky-flip"].default is False
    assert [value for value, _ in specs["sky"].choices] == list(table.presets) and specs["sky"].default == "sunset"
    assert [value for value, _ in specs["device"].choices] == list(table.devices) and specs["device"].default == "auto"
    assert specs["mask-only"].default is False
    assert "seed" not in specs and "weights" not in specs  # not dialog options: they keep the core's defaults


def test_every_mnemonic_is_unique_and_leaves_the_dialogs_own_keys_free(table: bridge_client.OptionTable) -> None:
    """Alt+letter reaches each setting of GIMP's dialog: no two controls share a letter (GTK would only
    move the focus between them), and none takes OK's, Cancel's or the live dialog's letters."""
    keys = [spec.label[spec.label.index("_") + 1].lower() for spec in logic.argument_specs(table)[2:]
            if "_" in spec.label]
    assert len(keys) == len(set(keys)) and not set(keys) & set("ocrhlsbykvti")
    assert len(keys) >= len(logic.argument_specs(table)) - 5  # letters run out for at most a few


def test_sky_file_wins_over_preset_and_mask_only_sets_mask_mode(tmp_path: Path,
                                                                 table: bridge_client.OptionTable) -> None:
    sky = tmp_path / "sky.jpg"
    sky.write_bytes(b"not checked here")
    values = default_values(table) | {"mask-only": True, "sky-shift-x": 0.25, "sky-flip": True, "device": "cpu"}
    options = logic.request_options(values, str(sky), table)
    assert options["sky"] == str(sky) and options["mode"] == "mask"
    assert options["sky_shift_x"] == 0.25 and options["sky_flip"] is True and options["device"] == "cpu"


def test_every_shared_option_has_a_gimp_argument_name(table: bridge_client.OptionTable) -> None:
    names = {spec.name for spec in logic.argument_specs(table)}
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


def test_the_sky_list_offers_the_users_skies(table: bridge_client.OptionTable, tmp_path: Path) -> None:
    """A user sky in the list is sent as its image file; one that has left the library is refused."""
    mine = bridge_client.SkyChoice("my-storm", "user", "from Storm.jpg", str(tmp_path / "thumb.jpg"),
                                   str(tmp_path / "sky.png"))
    skies = (*bridge_client.preset_choices(table), mine)
    sky_spec = next(spec for spec in logic.argument_specs(table, skies) if spec.name == logic.SKY_PRESET_ARG)
    assert sky_spec.choices[-1] == ("my-storm", "My storm (your sky)") and sky_spec.default in table.presets
    values = dict(default_values(table), **{logic.SKY_PRESET_ARG: "my-storm"})
    assert logic.request_options(values, None, table, skies)["sky"] == str(tmp_path / "sky.png")
    assert logic.thumbnail_of("my-storm", skies) == str(tmp_path / "thumb.jpg")
    with pytest.raises(bridge_client.BridgeError, match="not in your sky library"):
        logic.request_options(values, None, table)


class FakeFile:
    """Stands in for a Gio.File (GIMP's file arguments) outside GIMP: only get_path is used."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def get_path(self) -> str | None:
        return self.path


class FakeConfig:
    """Stands in for a Gimp.ProcedureConfig outside GIMP: only get_property is used."""

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values

    def get_property(self, name: str) -> object:
        return self.values[name]


def test_options_from_the_config_as_the_dialog_and_scripts_read_it(tmp_path: Path,
                                                                   table: bridge_client.OptionTable) -> None:
    values = default_values(table) | {"relight": 0.8, logic.SKY_FILE_ARG: None}
    assert logic.options_from_config(FakeConfig(values), table) == logic.request_options(values, None, table)
    sky = tmp_path / "sky.jpg"
    with_file = logic.options_from_config(FakeConfig(values | {logic.SKY_FILE_ARG: FakeFile(str(sky))}), table)
    assert with_file["sky"] == str(sky) and with_file["relight"] == 0.8
    with pytest.raises(bridge_client.BridgeError, match="must be a local file"):
        logic.options_from_config(FakeConfig(values | {logic.SKY_FILE_ARG: FakeFile(None)}), table)
