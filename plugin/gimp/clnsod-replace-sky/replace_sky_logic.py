"""Pure logic of the GIMP "Replace Sky" plug-in: no ``gi`` import, so it is unit-testable outside GIMP.

The plug-in's arguments are generated from the core's option table (``bridge_client.OptionTable``,
loaded from the options.json install_plugin.py writes), as the Krita dialog is, so both editors
offer the same settings with the core's own ranges, defaults, labels and help.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge_client import BridgeError, OptionTable, SkyChoice, preset_choices, with_mnemonic

# GIMP argument names use dashes; the exchange protocol uses underscores.
SKY_PRESET_ARG = "sky"
SKY_FILE_ARG = "sky-file"
DEVICE_ARG = "device"
MASK_ONLY_ARG = "mask-only"


@dataclass(frozen=True)
class ArgumentSpec:
    """One procedure argument, independent of GIMP's API (clnsod-replace-sky.py turns it into a call)."""

    name: str  # GIMP argument name
    kind: str  # "choice", "file", "double", "int" or "boolean"
    label: str  # with a mnemonic
    help: str
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[tuple[str, str], ...] = ()  # (value, label) for "choice"


def arg_name(key: str) -> str:
    """GIMP argument name for a protocol option key (``sky_shift_x`` -> ``sky-shift-x``)."""
    return key.replace("_", "-")


def device_label(name: str) -> str:
    return "auto (GPU if available)" if name == "auto" else name


# Letters the dialog's other controls use: GIMP's (OK, Cancel, Reset, Help, Load Saved Settings, Save
# Settings) and the live dialog's (Before / after, Sky gallery, Look, Save look, Delete look, Sky image,
# Mask only): the settings' mnemonics avoid them, so Alt+letter reaches each control.
RESERVED_MNEMONICS = frozenset("ocrhls" "bykvtim")


def mnemonic(label: str, used: set[str]) -> str:
    """The label with GTK's mnemonic marker on a letter no other control of the dialog uses."""
    return with_mnemonic(label, used, "_")


def argument_specs(table: OptionTable, skies: Sequence[SkyChoice] = ()) -> list[ArgumentSpec]:
    """Every argument in dialog order: sky source, the table's numbers and switches, device, mode.
    ``skies``: presets and the user's library (``bridge_client.list_skies``); empty: the presets."""
    sky, device = table.option("sky"), table.option("device")
    # A choice argument's default must be one of its choices: the core's default sky is a preset.
    default_sky = str(sky.default) if sky.default in table.presets else table.presets[0]
    choices = tuple((choice.name, choice.label) for choice in (skies or preset_choices(table)))
    specs = [
        ArgumentSpec(SKY_PRESET_ARG, "choice", "_Sky", "Built-in sky or one of your skies (clnsod skies add); "
                     "used when no sky image is given", default_sky, choices=choices),
        ArgumentSpec(SKY_FILE_ARG, "file", "Sky _image", "Sky image file; replaces the preset when set"),
    ]
    numbers = {number.key: number for number in table.numbers}
    switches = {switch.name: switch for switch in table.switches}
    used = set(RESERVED_MNEMONICS)
    for name in table.dialog_keys:  # the table's order: edge, sky placement, foreground
        if name in numbers:
            number = numbers[name]
            specs.append(ArgumentSpec(arg_name(name), "int" if number.whole else "double", mnemonic(number.label, used),
                                      number.tooltip, number.from_widget(number.default), number.minimum,
                                      number.maximum))
        elif name in switches:
            switch = switches[name]
            specs.append(ArgumentSpec(arg_name(name), "boolean", mnemonic(switch.label, used), switch.help,
                                      bool(switch.default)))
    specs.append(ArgumentSpec(DEVICE_ARG, "choice", mnemonic(device.label, used), device.help, device.default,
                              choices=tuple((name, device_label(name)) for name in table.devices)))
    specs.append(ArgumentSpec(MASK_ONLY_ARG, "boolean", "_Mask only",
                              "Only add the 'Sky mask' channel (and select it); no new layers",
                              table.option("mode").default == "mask"))
    return specs


def argument_names(table: OptionTable) -> list[str]:
    """Dialog order: sky source, edge, sky placement, foreground, device, mode."""
    return [spec.name for spec in argument_specs(table)]


def request_options(values: Mapping[str, object], sky_file: str | None, table: OptionTable,
                    skies: Sequence[SkyChoice] = ()) -> dict[str, object]:
    """Protocol options from the procedure's argument values (keyed by GIMP argument name).

    A sky image file, when given, takes precedence over the chosen sky (one procedure signature
    serves both sources, as in the Krita dialog); one of the user's skies is sent as its image file.
    Validation is left to ``OptionTable.validate``.
    """
    options: dict[str, object] = {
        "mode": "mask" if values[MASK_ONLY_ARG] else "replace",
        "sky": sky_file if sky_file else chosen_sky(str(values[SKY_PRESET_ARG]), table, skies),
        "device": str(values[DEVICE_ARG]),
    }
    for number in table.numbers:
        options[number.key] = number.from_widget(values[arg_name(number.key)])  # type: ignore[arg-type]
    for switch in table.switches:
        options[switch.name] = bool(values[arg_name(switch.name)])
    return options


def options_from_config(config: Any, table: OptionTable, skies: Sequence[SkyChoice] = ()) -> dict[str, object]:
    """Protocol options from the procedure's config (a ``Gimp.ProcedureConfig``: anything with
    ``get_property``), for the dialog's previews and for every run; BridgeError for a sky image that is
    not a local file. Validation is left to ``OptionTable.validate``."""
    values = {name: config.get_property(name) for name in argument_names(table) if name != SKY_FILE_ARG}
    sky_file = config.get_property(SKY_FILE_ARG)  # a Gio.File or None
    sky_path = sky_file.get_path() if sky_file is not None else None
    if sky_file is not None and not sky_path:
        raise BridgeError("the sky image must be a local file")
    return request_options(values, sky_path, table, skies)


def chosen_sky(name: str, table: OptionTable, skies: Sequence[SkyChoice]) -> str:
    """The request's sky for the name picked in the list; BridgeError if it has left the library."""
    for choice in skies or preset_choices(table):
        if choice.name == name:
            return choice.request_sky
    raise BridgeError(f"the sky {name!r} is not in your sky library any more; pick another")


def thumbnail_of(name: str, skies: Sequence[SkyChoice]) -> str | None:
    return next((choice.thumbnail for choice in skies if choice.name == name), None)


def visible_part(offset_x: int, offset_y: int, width: int, height: int,
                 canvas_width: int, canvas_height: int) -> tuple[int, int, int, int] | None:
    """The part of a layer (given by its offsets and size) that lies on the canvas.

    Returns ``(x, y, w, h)`` in layer coordinates, or None when the layer is entirely off-canvas.
    Why: the "Sky mask" channel is canvas-sized, while the layer may be offset or larger.
    """
    x0, y0 = max(0, -offset_x), max(0, -offset_y)
    x1, y1 = min(width, canvas_width - offset_x), min(height, canvas_height - offset_y)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def crop_plane(data: bytes, width: int, bytes_per_pixel: int, x: int, y: int, w: int, h: int) -> bytes:
    """Rows ``y..y+h`` and columns ``x..x+w`` of a packed ``width``-wide image."""
    row = width * bytes_per_pixel
    if x == 0 and w == width:
        return data[y * row:(y + h) * row]
    start, length = x * bytes_per_pixel, w * bytes_per_pixel
    return b"".join(data[r * row + start:r * row + start + length] for r in range(y, y + h))
