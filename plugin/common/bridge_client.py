"""Plugin side of the CLN-SOD exchange (see PROTOCOL.md): standard library only.

Shared by the Krita and GIMP plugins (``install_plugin.py`` copies it next to each). It finds
the core's own Python, writes a job into a private temp folder, starts the core there, turns
its output lines into events and reads the results back. No ML and no host API in here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

PROTOCOL = 1
CORE_MODULE = "clnsod_core.host_bridge"
CORE_CONFIG = "core.json"  # written by install_plugin.py next to this file
PYTHON_OVERRIDE = "CLNSOD_CORE_PYTHON"
PRESETS = ("clear-blue", "golden-hour", "sunset", "dramatic-clouds", "overcast", "night-stars")
DEVICES = ("auto", "cpu", "cuda")
MODES = ("replace", "mask")
# Host variables that would make the core's Python load the editor's own libraries.
_HOST_PYTHON_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE")


@dataclass(frozen=True)
class NumberOption:
    """One numeric setting as both dialogs show it; ranges are the core's own limits."""

    key: str
    label: str
    minimum: float
    maximum: float
    default: float
    step: float
    decimals: int
    tooltip: str


NUMBER_OPTIONS: Tuple[NumberOption, ...] = (
    NumberOption("edge_shift", "Edge shift (px)", -500, 500, 0.0, 1, 1, "Grow (+) or shrink (-) the sky."),
    NumberOption("edge_fade", "Edge fade (px)", 0, 500, 0.0, 1, 1, "Feather the sky edge."),
    NumberOption("recolour", "Foreground recolour", 0, 1, 0.35, 0.05, 2, "Shift the foreground's colour toward the new sky."),
    NumberOption("relight", "Foreground relight", 0, 1, 0.4, 0.05, 2, "Match the foreground's brightness to the new sky."),
    NumberOption("sky_scale", "Sky scale", 1, 10, 1.0, 0.1, 2, "Zoom into the sky (1 = just covers the sky region)."),
    NumberOption("sky_shift_x", "Sky shift x", -1, 1, 0.0, 0.02, 2, "Move the sky sideways (fraction of the width)."),
    NumberOption("sky_shift_y", "Sky shift y", -1, 1, 0.0, 0.02, 2, "Move the sky down (+) or up (-) (fraction of the height)."),
    NumberOption("sky_brightness", "Sky brightness (stops)", -2, 2, 0.0, 0.1, 1, "Sky exposure."),
    NumberOption("sky_temperature", "Sky temperature", -1, 1, 0.0, 0.05, 2, "Cooler (-) or warmer (+) sky."),
    NumberOption("halo", "Edge glow", 0, 1, 0.0, 0.05, 2, "Soft sky-coloured light on the foreground at the sky line."),
)
DEFAULT_OPTIONS: Dict[str, object] = {
    "mode": "replace",
    "sky": "sunset",
    "sky_flip": False,
    "device": "auto",
    "seed": 0,
    "weights": None,
    **{option.key: option.default for option in NUMBER_OPTIONS},
}


class BridgeError(Exception):
    """Something the user must be told, as one readable message."""


def plugin_dir_of(module_file: str) -> str:
    return os.path.dirname(os.path.abspath(module_file))


def core_python(plugin_dir: str) -> str:
    """The core's interpreter: $CLNSOD_CORE_PYTHON, else the one install_plugin.py recorded."""
    path = os.environ.get(PYTHON_OVERRIDE, "")
    source = PYTHON_OVERRIDE
    if not path:
        config = os.path.join(plugin_dir, CORE_CONFIG)
        source = config
        try:
            with open(config, encoding="utf-8") as handle:
                path = str(json.load(handle)["python"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BridgeError(f"CLN-SOD core not configured ({config}: {exc}). "
                              "Run 'python install_plugin.py krita|gimp' from the CLN-SOD folder.") from None
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BridgeError(f"CLN-SOD core Python not found: {path} (from {source}). "
                          "Reinstall with 'python install_plugin.py krita|gimp' from the CLN-SOD folder.")
    return path


def core_environment() -> Dict[str, str]:
    """The host's environment minus the variables that point Python at the host's libraries."""
    env = {k: v for k, v in os.environ.items() if k not in _HOST_PYTHON_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def validate_options(options: Dict[str, object]) -> Dict[str, object]:
    """Defaults filled in, unknown keys and out-of-range values refused with a readable message."""
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise BridgeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    merged = dict(DEFAULT_OPTIONS, **options)
    for option in NUMBER_OPTIONS:
        value = merged[option.key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not option.minimum <= value <= option.maximum:
            raise BridgeError(f"{option.label} must be between {option.minimum:g} and {option.maximum:g}, got {value!r}")
        merged[option.key] = float(value)
    if merged["mode"] not in MODES:
        raise BridgeError(f"mode must be one of {', '.join(MODES)}")
    if merged["device"] not in DEVICES:
        raise BridgeError(f"device must be one of {', '.join(DEVICES)}")
    sky = str(merged["sky"])
    if merged["mode"] == "replace" and sky not in PRESETS and not os.path.isfile(sky):
        raise BridgeError(f"sky image not found: {sky}")
    merged["sky"] = sky if sky in PRESETS else os.path.abspath(sky)
    merged["sky_flip"] = bool(merged["sky_flip"])
    if isinstance(merged["seed"], bool) or not isinstance(merged["seed"], int) or not 0 <= merged["seed"] < 2**31:
        raise BridgeError(f"seed must be a whole number from 0 to {2**31 - 1}")
    if merged["weights"] is not None and not isinstance(merged["weights"], str):
        raise BridgeError("weights must be a registry name, file or URL")
    return merged


@dataclass(frozen=True)
class Event:
    kind: str  # "progress", "done" or "error"
    fraction: float = 0.0
    message: str = ""
    files: Optional[Dict[str, str]] = None
    sky_found: bool = True  # "done" with sky_found false: the photo has no sky, no files were written


NO_SKY_MESSAGE = "no sky found in this image; nothing was added"


def parse_event(line: str) -> Optional[Event]:
    """One stdout line of the core -> Event; None for anything else (library noise)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if "error" in data:
        return Event("error", message=str(data["error"]))
    if data.get("done"):
        files = data.get("files")
        return Event("done", 1.0, files=dict(files) if isinstance(files, dict) else {},
                     sky_found=data.get("sky_found") is not False)
    if "progress" in data:
        try:
            fraction = min(1.0, max(0.0, float(data["progress"])))
        except (TypeError, ValueError):
            return None
        return Event("progress", fraction, str(data.get("stage", "")))
    return None


class Job:
    """A private job folder holding one request; delete it with ``cleanup()``."""

    def __init__(self, width: int, height: int, pixel_format: str, pixels: bytes, options: Dict[str, object]) -> None:
        if len(pixels) != width * height * 4:
            raise BridgeError(f"internal error: {len(pixels)} bytes for a {width}x{height} RGBA image")
        self.width, self.height, self.pixel_format = width, height, pixel_format
        self.options = validate_options(options)
        self.dir = tempfile.mkdtemp(prefix="clnsod-")  # 0700, owned by this user
        try:
            request = dict(self.options, protocol=PROTOCOL, width=width, height=height, pixel_format=pixel_format)
            self._write("input.raw", pixels)
            self._write("request.json", json.dumps(request).encode("utf-8"))
        except OSError as exc:
            self.cleanup()
            raise BridgeError(f"cannot write the job to {self.dir}: {exc}") from None

    def _write(self, name: str, data: bytes) -> None:
        fd = os.open(os.path.join(self.dir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def command(self, python: str) -> List[str]:
        """The core stops by itself when its stdin pipe closes: keep that pipe open while it runs."""
        return [python, "-m", CORE_MODULE, "--stop-on-stdin-eof", self.dir]

    def read_output(self, key: str) -> bytes:
        """An output named in the ``done`` event, size-checked: the matte is 1 byte/pixel, layers 4."""
        channels = 1 if key == "matte" else 4
        path = os.path.join(self.dir, f"{key}.raw")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise BridgeError(f"the core did not produce {key} ({exc})") from None
        if len(data) != self.width * self.height * channels:
            raise BridgeError(f"the core's {key} has the wrong size ({len(data)} bytes)")
        return data

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def failure_message(exit_code: Optional[int], stderr_tail: str) -> str:
    """Message for a core that stopped without saying why (crash, missing packages...)."""
    tail = stderr_tail.strip().splitlines()[-3:]
    detail = (": " + " | ".join(tail)) if tail else ""
    return f"the CLN-SOD core stopped unexpectedly (exit status {exit_code}){detail}"


def run_blocking(job: Job, python: str, on_progress: Callable[[Event], None],
                 should_cancel: Callable[[], bool] = lambda: False) -> Event:
    """Run the core to completion (for hosts whose plug-ins are their own process, like GIMP).

    Returns the final ``done`` or ``error`` event; ``should_cancel`` is polled between lines.
    """
    try:
        process = subprocess.Popen(job.command(python), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.PIPE, env=core_environment(), text=True, encoding="utf-8",
                                   errors="replace")
    except OSError as exc:
        return Event("error", message=f"cannot start the CLN-SOD core {python}: {exc.strerror or exc}")
    stderr_lines: List[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    final: Optional[Event] = None
    assert process.stdout is not None
    for line in process.stdout:
        event = parse_event(line)
        if event is None:
            continue
        if event.kind == "progress":
            on_progress(event)
        else:
            final = event
        if should_cancel():
            stop(process)
            return Event("error", message="cancelled")
    code = process.wait()
    if process.stdin is not None:
        process.stdin.close()
    reader.join(timeout=5)
    if final is None:
        return Event("error", message=failure_message(code, "".join(stderr_lines[-20:])))
    return final


def stop(process: "subprocess.Popen[str]") -> None:
    """Terminate, then kill after 2 s."""
    process.terminate()
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
