"""Dialog values <-> core options, and the remembered settings: pure Python, testable outside Krita.

What the dialog offers (number boxes, check boxes, devices, presets, defaults, ranges) comes from the
core's option table (``bridge_client.OptionTable``, loaded from options.json), never from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from . import bridge_client
from .bridge_client import OptionTable, SkyChoice

SKY_FILE_CHOICE = "image file..."  # the sky-combo entry that means "use the file field"
SETTINGS_GROUP = "clnsod_sky"
SETTINGS_KEY = "options"
LOOKS_KEY = "looks"  # saved looks: {name: options}, JSON


@dataclass(frozen=True)
class DialogValues:
    """What the dialog's widgets hold, before any interpretation."""

    mask_only: bool
    sky_choice: str  # a sky's name (a preset or one of the user's library) or SKY_FILE_CHOICE
    sky_file: str
    numbers: dict[str, float]  # every number box, by option name
    switches: dict[str, bool]  # every check box (e.g. sky_flip), by option name
    device: str


def sky_choices(table: OptionTable, skies: Sequence[SkyChoice] | None = None) -> list[SkyChoice]:
    """The skies of the dialog's gallery (the combo adds the "image file..." entry after them):
    ``skies`` as ``bridge_client.list_skies`` gave them, else the presets without thumbnails."""
    return list(skies) if skies else list(bridge_client.preset_choices(table))


def build_options(values: DialogValues, table: OptionTable, skies: Sequence[SkyChoice] | None = None) -> dict[str, object]:
    """The request options for these dialog values; BridgeError with a readable message if unusable."""
    options: dict[str, object] = {"mode": "mask" if values.mask_only else "replace", "device": values.device}
    chosen = {sky.name: sky for sky in sky_choices(table, skies)}.get(values.sky_choice)
    if values.sky_choice == SKY_FILE_CHOICE:
        path = values.sky_file.strip()
        if not path and not values.mask_only:
            raise bridge_client.BridgeError("choose a sky image file, or pick a sky")
        options["sky"] = path or table.defaults["sky"]
    elif chosen is not None:
        options["sky"] = chosen.request_sky
    else:
        raise bridge_client.BridgeError(f"unknown sky: {values.sky_choice}")
    for number in table.numbers:
        options[number.key] = number.from_widget(values.numbers.get(number.key, number.default))
    for switch in table.switches:
        options[switch.name] = bool(values.switches.get(switch.name, switch.default))
    return table.validate(options)


def dialog_values_from(options: dict[str, object], table: OptionTable,
                       skies: Sequence[SkyChoice] | None = None) -> DialogValues:
    """Widget values that show ``options`` (the reverse of build_options); missing keys show defaults.
    A sky file that is a library sky's image shows as that sky."""
    shown = dict(table.defaults, **options)
    sky = str(shown["sky"])
    listed = next((choice for choice in sky_choices(table, skies) if choice.request_sky == sky), None)
    return DialogValues(
        mask_only=shown["mode"] == "mask",
        sky_choice=listed.name if listed else SKY_FILE_CHOICE,
        sky_file="" if listed else sky,
        numbers={number.key: float(shown[number.key]) for number in table.numbers},  # type: ignore[arg-type]
        switches={switch.name: bool(shown[switch.name]) for switch in table.switches},
        device=str(shown["device"]),
    )


def settings_text(options: dict[str, object], table: OptionTable) -> str:
    """What to remember between sessions (only the options the dialog shows)."""
    return json.dumps({key: options[key] for key in table.dialog_keys if key in options}, sort_keys=True)


def options_from_settings(text: str | None, table: OptionTable) -> dict[str, object]:
    """Remembered options, falling back to the defaults key by key for anything missing or invalid
    (settings written by another version may hold options or values this core no longer has)."""
    result = {key: table.defaults[key] for key in table.dialog_keys}
    try:
        stored = json.loads(text) if text else {}
    except ValueError:
        stored = {}
    if not isinstance(stored, dict):
        return result
    for key in table.dialog_keys:
        if key not in stored:
            continue
        candidate = dict(result, **{key: stored[key]})
        try:
            table.validate(candidate)
        except (bridge_client.BridgeError, TypeError, ValueError):
            continue  # e.g. a sky file that has since been deleted
        result[key] = stored[key]
    return result
