"""Dialog values <-> core options, and the remembered settings: pure Python, testable outside Krita."""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import bridge_client

SKY_FILE_CHOICE = "image file..."  # the sky-combo entry that means "use the file field"
SETTINGS_GROUP = "clnsod_sky"
SETTINGS_KEY = "options"
# The options the dialog offers; seed and weights keep their defaults.
DIALOG_KEYS = ("mode", "sky", "sky_flip", "device") + tuple(option.key for option in bridge_client.NUMBER_OPTIONS)


@dataclass(frozen=True)
class DialogValues:
    """What the dialog's widgets hold, before any interpretation."""

    mask_only: bool
    sky_choice: str  # a preset name or SKY_FILE_CHOICE
    sky_file: str
    numbers: dict[str, float]
    sky_flip: bool
    device: str


def sky_choices() -> list[str]:
    return list(bridge_client.PRESETS) + [SKY_FILE_CHOICE]


def build_options(values: DialogValues) -> dict[str, object]:
    """The request options for these dialog values; BridgeError with a readable message if unusable."""
    options: dict[str, object] = {
        "mode": "mask" if values.mask_only else "replace",
        "sky_flip": bool(values.sky_flip),
        "device": values.device,
    }
    if values.sky_choice == SKY_FILE_CHOICE:
        path = values.sky_file.strip()
        if not path and not values.mask_only:
            raise bridge_client.BridgeError("choose a sky image file, or pick a sky preset")
        options["sky"] = path or bridge_client.DEFAULT_OPTIONS["sky"]
    elif values.sky_choice in bridge_client.PRESETS:
        options["sky"] = values.sky_choice
    else:
        raise bridge_client.BridgeError(f"unknown sky preset: {values.sky_choice}")
    for option in bridge_client.NUMBER_OPTIONS:
        options[option.key] = float(values.numbers.get(option.key, option.default))
    return bridge_client.validate_options(options)


def dialog_values_from(options: dict[str, object]) -> DialogValues:
    """Widget values that show ``options`` (the reverse of build_options)."""
    sky = str(options.get("sky", bridge_client.DEFAULT_OPTIONS["sky"]))
    preset = sky in bridge_client.PRESETS
    numbers = {o.key: float(options.get(o.key, o.default)) for o in bridge_client.NUMBER_OPTIONS}  # type: ignore[arg-type]
    return DialogValues(
        mask_only=options.get("mode") == "mask",
        sky_choice=sky if preset else SKY_FILE_CHOICE,
        sky_file="" if preset else sky,
        numbers=numbers,
        sky_flip=bool(options.get("sky_flip", False)),
        device=str(options.get("device", "auto")),
    )


def settings_text(options: dict[str, object]) -> str:
    """What to remember between sessions (only the keys the dialog shows)."""
    return json.dumps({key: options[key] for key in DIALOG_KEYS if key in options}, sort_keys=True)


def options_from_settings(text: str | None) -> dict[str, object]:
    """Remembered options, falling back to the defaults key by key for anything missing or invalid."""
    result = {key: bridge_client.DEFAULT_OPTIONS[key] for key in DIALOG_KEYS}
    try:
        stored = json.loads(text) if text else {}
    except ValueError:
        stored = {}
    if not isinstance(stored, dict):
        return result
    for key in DIALOG_KEYS:
        if key not in stored:
            continue
        candidate = dict(result, **{key: stored[key]})
        try:
            bridge_client.validate_options(candidate)
        except (bridge_client.BridgeError, TypeError, ValueError):
            continue  # e.g. a sky file that has since been deleted
        result[key] = stored[key]
    return result
