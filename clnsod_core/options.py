"""The one declaration of every user-facing option of ``mask`` and ``replace``.

Each option is declared here once (name, type, default, range, group, label, help). Everything
else is derived from this table: the CLI flags (``frontends/cli/options.py``), the editor
bridge's request parsing, the defaults and validation of ``MatteOptions``, ``SkyPlacement``,
``Harmonisation`` and ``ReplaceOptions``, and the plugins' dialogs, which receive it as JSON
(``python -m clnsod_core.frontends.bridge --print-options``, written next to each plugin by
``install_plugin.py``). A default changed here reaches all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Where an option appears. "dialog" implies "bridge" (the dialogs send what they show).
CLI, BRIDGE, DIALOG = "cli", "bridge", "dialog"
KINDS = ("float", "int", "bool", "choice", "text")
UNSET = "unset"  # marker for ``cli_default``: the CLI flag has the same default as everywhere else


@dataclass(frozen=True)
class Option:
    name: str  # flat name: CLI flag --name-with-dashes, request key, dialog widget name
    kind: str  # one of KINDS
    default: Any
    group: str  # "edge", "sky", "foreground", "model", "output" or "job": how dialogs and --help group them
    label: str  # short label for dialogs and error messages
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    step: float = 1.0  # dialog spin-box step
    decimals: int = 0  # dialog spin-box decimals
    surfaces: tuple[str, ...] = (CLI, BRIDGE, DIALOG)
    field: tuple[str, str] | None = None  # (part, attribute) of ReplaceOptions this option sets
    cli_default: Any = UNSET  # only where the CLI must differ (documented in ``help``)

    def check(self, value: Any) -> Any:
        """``value`` converted to this option's type; ValueError with a readable message if unusable."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.label} must be true or false, got {value!r}")
            return value
        if self.kind in ("float", "int"):
            whole = isinstance(value, int) and not isinstance(value, bool)
            if not (whole or (self.kind == "float" and isinstance(value, float))):
                raise ValueError(f"{self.label} must be a {'whole ' if self.kind == 'int' else ''}number, got {value!r}")
            number = float(value) if self.kind == "float" else int(value)
            if not math.isfinite(number) or not self.minimum <= number <= self.maximum:  # type: ignore[operator]
                raise ValueError(f"{self.label} must be between {self.minimum:g} and {self.maximum:g}, got {value}")
            return number
        if value is None and self.default is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"{self.label} must be text, got {value!r}")
        if self.kind == "choice" and value not in self.choices:
            raise ValueError(f"{self.label} must be one of {', '.join(self.choices)}, got {value!r}")
        return value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def default_in_cli(self) -> Any:
        return self.default if self.cli_default == UNSET else self.cli_default

    def to_data(self) -> dict[str, Any]:
        """JSON-ready description for the plugins."""
        data = {key: getattr(self, key) for key in ("name", "kind", "default", "group", "label", "help",
                                                   "minimum", "maximum", "step", "decimals")}
        data["choices"] = list(self.choices)
        data["surfaces"] = list(self.surfaces)
        return data


DEVICES = ("auto", "cpu", "cuda", "mps")

OPTIONS: tuple[Option, ...] = (
    Option("mode", "choice", "replace", "job", "Result", "replace: new sky, sky mask and foreground lighting; "
           "mask: only the sky mask.", choices=("replace", "mask"), surfaces=(BRIDGE, DIALOG)),
    Option("sky", "text", "sunset", "sky", "Sky", "New sky: a preset, a sky of your library (clnsod skies list) or an image file.",
           cli_default=None),  # the CLI needs an explicit --sky; `batch` without one writes masks
    Option("edge_shift", "float", 0.0, "edge", "Edge shift (px)", "Grow (+) or shrink (-) the sky by this many pixels.",
           -500, 500, step=1, decimals=1, field=("matte", "edge_shift")),
    Option("edge_fade", "float", 0.0, "edge", "Edge fade (px)", "Feather the sky edge by this many pixels.",
           0, 500, step=1, decimals=1, field=("matte", "edge_fade")),
    Option("sky_scale", "float", 1.0, "sky", "Sky scale", "Zoom into the sky (1 = just covers the sky region).",
           1, 10, step=0.1, decimals=2, field=("placement", "scale")),
    Option("sky_shift_x", "float", 0.0, "sky", "Sky shift x", "Move the sky sideways, as a fraction of the photo width.",
           -1, 1, step=0.02, decimals=2, field=("placement", "shift_x")),
    Option("sky_shift_y", "float", 0.0, "sky", "Sky shift y",
           "Move the sky down (+) or up (-), as a fraction of the photo height.",
           -1, 1, step=0.02, decimals=2, field=("placement", "shift_y")),
    Option("sky_flip", "bool", False, "sky", "Flip the sky", "Mirror the sky horizontally.",
           field=("placement", "flip")),
    Option("sky_brightness", "float", 0.0, "sky", "Sky brightness (stops)", "Sky exposure in stops.",
           -2, 2, step=0.1, decimals=1, field=("placement", "brightness")),
    Option("sky_temperature", "float", 0.0, "sky", "Sky temperature", "Cooler (-) or warmer (+) sky.",
           -1, 1, step=0.05, decimals=2, field=("placement", "temperature")),
    Option("recolour", "float", 0.35, "foreground", "Foreground recolour",
           "Shift the foreground's colour toward the new sky (0 = off).",
           0, 1, step=0.05, decimals=2, field=("harmonisation", "recolour")),
    Option("relight", "float", 0.4, "foreground", "Foreground relight",
           "Match the foreground's brightness to the new sky (0 = off).",
           0, 1, step=0.05, decimals=2, field=("harmonisation", "relight")),
    Option("halo", "float", 0.0, "foreground", "Edge glow", "Soft sky-coloured light on the foreground at the sky line.",
           0, 1, step=0.05, decimals=2, field=("harmonisation", "halo")),
    Option("reflection", "float", 1.0, "foreground", "Reflection",
           "The new sky mirrored in calm water that reflected the old one (found automatically; 1 = as strongly "
           "as the water reflected the old sky, 0 = off). Land is never changed.",
           0, 1, step=0.05, decimals=2, field=("harmonisation", "reflection")),
    Option("haze", "float", 0.0, "foreground", "Horizon haze",
           "Blend distant land near the horizon toward the new sky's horizon colour (0 = off).",
           0, 1, step=0.05, decimals=2, field=("harmonisation", "haze")),
    Option("seed", "int", 0, "sky", "Preset seed", "Seed for preset skies (each seed gives other clouds).",
           0, 2**31 - 1, surfaces=(CLI, BRIDGE), field=("replace", "seed")),
    Option("quality", "int", 92, "output", "Quality", "JPEG/WebP quality.", 1, 100, surfaces=(CLI,)),
    Option("label", "text", None, "output", "Label",
           "Stamp this text (e.g. 'Virtually enhanced') in the bottom-right corner of every replaced photo. "
           "Every replaced photo also carries XMP metadata saying that its sky was replaced.", surfaces=(CLI,)),
    Option("weights", "text", None, "model", "Weights",
           "Registry name (see 'clnsod weights list'), weights file, or URL#sha256=HEX "
           "(default: the weights embedded in the package).", surfaces=(CLI, BRIDGE)),
    Option("device", "choice", "auto", "model", "Device", "Where the network runs: auto = cuda, then mps, then cpu.",
           choices=DEVICES),
    Option("max_megapixels", "float", 150.0, "model", "Largest photo (MP)",
           "Refuse photos larger than this (protects against decompression bombs).",
           0.01, 1_000_000, surfaces=(CLI, BRIDGE)),
)
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def option(name: str) -> Option:
    return BY_NAME[name]


def on(surface: str) -> tuple[Option, ...]:
    """The options offered on one surface (CLI, BRIDGE or DIALOG), in declaration order."""
    return tuple(o for o in OPTIONS if surface in o.surfaces or (surface == BRIDGE and DIALOG in o.surfaces))


def defaults(part: str) -> dict[str, Any]:
    """Default of each attribute of one ReplaceOptions part ("matte", "placement", ...)."""
    return {o.field[1]: o.default for o in OPTIONS if o.field is not None and o.field[0] == part}


def check_part(part: str, values: dict[str, Any]) -> None:
    """Validate the attributes of one ReplaceOptions part against their declared ranges."""
    for o in OPTIONS:
        if o.field is not None and o.field[0] == part:
            o.check(values[o.field[1]])


def part_values(part: str, flat: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of one ReplaceOptions part, taken from flat option names (CLI flags, requests)."""
    return {o.field[1]: flat[o.name] for o in OPTIONS if o.field is not None and o.field[0] == part}
