"""Every user-facing option agrees everywhere it appears, with nothing changed by hand.

``clnsod_core/options.py`` declares each option once. This test reads each declared option back
from every place that uses it and compares its default and its range: the click flags of
``clnsod replace`` (and of ``mask`` and ``batch`` where they have the flag), the editor bridge's request
parsing, the ReplaceOptions dataclasses and their validation, and both plugins as
``install_plugin.py`` assembles them (the Krita dialog's values, the GIMP procedure's arguments),
which receive the table as data (options.json, from ``--print-options``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
from conftest import REPO

from clnsod_core.frontends import bridge as core_bridge
from clnsod_core.options import BRIDGE, CLI, DIALOG, OPTIONS, Option
from clnsod_core.replace import ReplaceOptions

sys.path.insert(0, str(REPO))
import install_plugin  # the repository's installer script (not a package)

NUMBERS = ("float", "int")
# The commands whose flags come from the option table (train's --seed, say, is another setting).
PHOTO_COMMANDS = ("mask", "replace", "batch")


def _import_from(folder: Path, roots: tuple[str, ...], names: tuple[str, ...]) -> dict[str, ModuleType]:
    """Import ``names`` from the installed plugin ``folder`` only; sys.modules is left as it was
    (other tests import the same module names from the source tree)."""
    def ours(module: str) -> bool:
        return module.split(".")[0] in roots

    saved = {name: sys.modules.pop(name) for name in [n for n in sys.modules if ours(n)]}
    sys.path.insert(0, str(folder))
    try:
        return {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both plugins assembled by install_plugin.py (with the real core's options.json), imported
    from where they were installed, each with the table it loads from its own options.json."""
    root = tmp_path_factory.mktemp("installed")
    python = Path(sys.executable)
    table_json = install_plugin.core_option_table(python)
    krita_dir, gimp_dir = root / "pykrita" / install_plugin.KRITA_NAME, root / "plug-ins" / install_plugin.GIMP_NAME
    install_plugin.assemble(install_plugin.KRITA_SOURCE, krita_dir, python, table_json)
    install_plugin.assemble(install_plugin.GIMP_SOURCE, gimp_dir, python, table_json)
    krita = _import_from(krita_dir.parent, ("clnsod_sky",), ("clnsod_sky.options",))["clnsod_sky.options"]
    gimp = _import_from(gimp_dir, ("bridge_client", "replace_sky_logic"), ("bridge_client", "replace_sky_logic"))
    return {"krita": krita, "krita_table": krita.bridge_client.load_option_table(str(krita_dir)),
            "gimp": gimp["replace_sky_logic"], "gimp_table": gimp["bridge_client"].load_option_table(str(gimp_dir))}


@pytest.fixture(scope="module")
def cli_commands() -> dict[str, click.Command]:
    """The commands of ``clnsod`` (the console script's entry point)."""
    from clnsod_core.frontends.cli import main

    return dict(main.commands)


def _replace_options_with(part: str, attr: str, value: object) -> ReplaceOptions:
    """ReplaceOptions() with one user-facing field changed (``part`` "replace" = ReplaceOptions itself)."""
    base = ReplaceOptions()
    if part == "replace":
        return dataclasses.replace(base, **{attr: value})
    return dataclasses.replace(base, **{part: dataclasses.replace(getattr(base, part), **{attr: value})})


def _outside(option: Option) -> tuple[object, object]:
    """One value below and one above the declared range, in the option's type."""
    kind = float if option.kind == "float" else int
    return kind(option.minimum - 1), kind(option.maximum + 1)  # type: ignore[operator]


def check_cli(option: Option, commands: dict[str, click.Command]) -> None:
    """The flag has the declared CLI default and the declared range or choices, on every photo command."""
    if CLI not in option.surfaces:
        return
    having = {name: param for name in PHOTO_COMMANDS for param in commands[name].params if param.name == option.name}
    assert "replace" in having, f"clnsod replace has no {option.flag}"
    for name, param in having.items():
        where = f"clnsod {name} {option.flag}"
        assert option.flag in param.opts, where
        assert param.default == option.default_in_cli, where
        if option.kind == "bool":
            assert isinstance(param, click.Option) and param.is_flag, where
        elif option.kind in NUMBERS:
            expected = click.FloatRange if option.kind == "float" else click.IntRange
            assert isinstance(param.type, expected), where
            assert (param.type.min, param.type.max) == (option.minimum, option.maximum), where
        elif option.kind == "choice":
            assert tuple(param.type.choices) == option.choices, where  # type: ignore[attr-defined]


def check_bridge(option: Option) -> None:
    """A minimal request gets the declared default; non-bridge options and bad choices are refused."""
    request = {"protocol": core_bridge.PROTOCOL, "options_digest": core_bridge.options_digest(),
               "width": 1, "height": 1, "pixel_format": "RGBA8"}

    def parse(extra: dict[str, object]) -> dict[str, Any]:
        return core_bridge.parse_request(json.dumps(dict(request, **extra)).encode()).options

    if not (BRIDGE in option.surfaces or DIALOG in option.surfaces):
        assert option.name not in parse({})
        with pytest.raises(core_bridge.RequestError, match="unknown request field"):
            parse({option.name: option.default})
        return
    value = parse({})[option.name]
    assert value == option.default and type(value) is type(option.default)
    if option.kind == "choice":
        with pytest.raises(core_bridge.RequestError, match="must be one of"):
            parse({option.name: "not-a-choice"})


def check_dataclasses(option: Option) -> None:
    """ReplaceOptions() holds the declared default; the range's ends pass validate(), beyond raises."""
    if option.field is None:
        return
    part, attr = option.field
    defaults = ReplaceOptions()
    value = getattr(defaults if part == "replace" else getattr(defaults, part), attr)
    assert value == option.default and type(value) is type(option.default)
    defaults.validate()
    if option.kind not in NUMBERS:
        return
    for inside in (option.minimum, option.maximum):
        _replace_options_with(part, attr, inside).validate()
    for outside in _outside(option):
        with pytest.raises(ValueError, match=re.escape(f"{option.label} must be")):
            _replace_options_with(part, attr, outside).validate()


def check_krita(option: Option, options: ModuleType, table: Any) -> None:
    """The Krita dialog (values it shows untouched, what it sends, its number ranges)."""
    shown = options.dialog_values_from({}, table)
    sent = options.build_options(shown, table)
    if not (BRIDGE in option.surfaces or DIALOG in option.surfaces):
        assert option.name not in sent
        return
    assert sent[option.name] == option.default
    numbers = {number.key: number for number in table.numbers}
    if DIALOG not in option.surfaces:
        assert option.name not in numbers and option.name not in shown.switches
    elif option.kind in NUMBERS:
        number = numbers[option.name]
        assert (number.minimum, number.maximum, number.default) == (option.minimum, option.maximum, option.default)
        assert shown.numbers[option.name] == option.default
        for inside in (option.minimum, option.maximum):
            table.validate({option.name: number.from_widget(inside)})
        for outside in _outside(option):
            with pytest.raises(options.bridge_client.BridgeError, match=re.escape(option.label)):
                table.validate({option.name: outside})
    elif option.kind == "bool":
        assert shown.switches[option.name] == option.default
    elif option.name == "mode":
        assert table.modes == option.choices and shown.mask_only == (option.default == "mask")
    elif option.name == "device":
        assert table.devices == option.choices and shown.device == option.default
    elif option.name == "sky":
        assert shown.sky_choice == option.default


def check_gimp(option: Option, logic: ModuleType, table: Any) -> None:
    """The GIMP procedure's arguments (defaults, ranges, choices) and what an untouched call sends."""
    specs = {spec.name: spec for spec in logic.argument_specs(table)}
    untouched = {spec.name: spec.default for spec in specs.values() if spec.kind != "file"}
    sent = table.validate(logic.request_options(untouched, None, table))
    if not (BRIDGE in option.surfaces or DIALOG in option.surfaces):
        assert option.name not in sent
        return
    assert sent[option.name] == option.default
    argument = logic.MASK_ONLY_ARG if option.name == "mode" else logic.arg_name(option.name)
    if DIALOG not in option.surfaces:
        assert argument not in specs
        return
    spec = specs[argument]
    if option.kind in NUMBERS:
        assert spec.kind == ("double" if option.kind == "float" else "int")
        assert (spec.minimum, spec.maximum, spec.default) == (option.minimum, option.maximum, option.default)
    elif option.name == "mode":
        assert spec.default == (option.default == "mask")
    elif option.kind == "choice":
        assert [value for value, _label in spec.choices] == list(option.choices)
        assert spec.default == option.default
    else:
        assert spec.default == option.default


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.name)
def test_option_agrees_everywhere(option: Option, cli_commands: dict[str, click.Command],
                                  plugins: dict[str, Any]) -> None:
    for table in (plugins["krita_table"], plugins["gimp_table"]):
        assert table.digest == core_bridge.options_digest()  # the installed table is this core's
        if BRIDGE in option.surfaces or DIALOG in option.surfaces:
            spec = table.option(option.name)
            assert (spec.kind, spec.default, spec.minimum, spec.maximum, spec.choices, spec.label) == (
                option.kind, option.default, option.minimum, option.maximum, option.choices, option.label)
    check_cli(option, cli_commands)
    check_bridge(option)
    check_dataclasses(option)
    check_krita(option, plugins["krita"], plugins["krita_table"])
    check_gimp(option, plugins["gimp"], plugins["gimp_table"])
