"""Plugin side of the CLN-SOD exchange (see PROTOCOL.md): standard library only.

Shared by the Krita and GIMP plugins (``install_plugin.py`` copies it next to each). It finds
the core's own Python, writes a job into a private temp folder, starts the core there, turns
its output lines into events and reads the results back. No ML and no host API in here.

The options (names, defaults, ranges, labels, presets, devices) are not written here: they come
from the core as data (``options.json``, which ``install_plugin.py`` writes next to this file from
``python -m clnsod_core.frontends.bridge --print-options``), so both dialogs always offer exactly
what the core that will run accepts.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

PROTOCOL = 3
# Pixel formats of the exchange -> bytes per pixel (4 channels; 16-bit and float ones little-endian).
BYTES_PER_PIXEL = {"RGBA8": 4, "BGRA8": 4, "RGBA16": 8, "BGRA16": 8, "RGBAF16": 8, "RGBAF32": 16}
CORE_MODULE = "clnsod_core.frontends.bridge"
CORE_CONFIG = "core.json"  # written by install_plugin.py next to this file
OPTIONS_FILE = "options.json"  # the core's option table, written by install_plugin.py next to this file
PYTHON_OVERRIDE = "CLNSOD_CORE_PYTHON"
REINSTALL_HINT = "Run 'python install_plugin.py krita|gimp' again from the CLN-SOD folder."
# Host variables that would make the core's Python load the editor's own libraries.
_HOST_PYTHON_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE")
_KINDS = ("float", "int", "bool", "choice", "text")
# Optional outputs above the lighting layer (key of the ``done`` event's files, layer name), bottom to top.
OVERLAY_LAYERS = (("reflection", "Reflection"), ("haze", "Horizon haze"))
_DIALOG, _BRIDGE = "dialog", "bridge"


class BridgeError(Exception):
    """Something the user must be told, as one readable message."""


@dataclass(frozen=True)
class OptionSpec:
    """One row of the core's option table (``clnsod_core/options.py``), as options.json holds it."""

    name: str
    kind: str  # "float", "int", "bool", "choice" or "text"
    default: Any
    group: str  # "job", "sky", "edge", "foreground", "model": how the dialogs group them
    label: str
    help: str
    minimum: Optional[float]
    maximum: Optional[float]
    step: float
    decimals: int
    choices: Tuple[str, ...]
    surfaces: Tuple[str, ...]  # subset of "cli", "bridge", "dialog"

    @property
    def in_dialog(self) -> bool:
        return _DIALOG in self.surfaces

    @property
    def in_request(self) -> bool:
        """The request may carry it ("dialog" implies "bridge": the dialogs send what they show)."""
        return _BRIDGE in self.surfaces or _DIALOG in self.surfaces


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
    group: str
    whole: bool  # an "int" option: sent as a whole number

    def from_widget(self, value: float) -> Union[int, float]:
        """A spin box's value as the request carries it (spin boxes hold floats)."""
        return round(value) if self.whole else float(value)


def with_mnemonic(label: str, used: set[str], marker: str) -> str:
    """``label`` with a keyboard mnemonic no other control of the dialog has (``marker``: "_" in GTK,
    "&" in Qt), so Alt+letter reaches every setting: a word's first letter if free, else any free
    letter, else none; ``used`` (lower-case letters) is updated."""
    words = [i for i, ch in enumerate(label) if ch.isalpha() and (i == 0 or not label[i - 1].isalpha())]
    letters = [i for i, ch in enumerate(label) if ch.isalpha()]
    for i in words + letters:
        if label[i].lower() not in used:
            used.add(label[i].lower())
            return label[:i] + marker + label[i:]
    return label


def _number_text(value: float) -> str:
    """Range bounds as people write them: 2147483647, not 2.14748e+09."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _spec_from_data(row: object) -> OptionSpec:
    """One option of options.json, type-checked; ValueError naming what is wrong."""
    if not isinstance(row, dict):
        raise ValueError("an option is not a JSON object")
    name = row.get("name")
    if not isinstance(name, str) or row.get("kind") not in _KINDS:
        raise ValueError(f"option {name!r} has no valid name or kind")
    for key in ("group", "label", "help"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"option {name}: {key} must be text")
    choices, surfaces = row.get("choices", []), row.get("surfaces")
    if not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        raise ValueError(f"option {name}: choices must be a list of text")
    if not (isinstance(surfaces, list) and all(isinstance(s, str) for s in surfaces)):
        raise ValueError(f"option {name}: surfaces must be a list of text")
    numbers: Dict[str, Optional[float]] = {}
    for key in ("minimum", "maximum", "step", "decimals"):
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"option {name}: {key} must be a number")
        numbers[key] = value
    if row["kind"] in ("float", "int") and (numbers["minimum"] is None or numbers["maximum"] is None):
        raise ValueError(f"option {name}: a number needs a minimum and a maximum")
    return OptionSpec(name=name, kind=row["kind"], default=row.get("default"), group=row["group"], label=row["label"],
                      help=row["help"], minimum=numbers["minimum"], maximum=numbers["maximum"],
                      step=float(numbers["step"] if numbers["step"] is not None else 1),
                      decimals=int(numbers["decimals"] or 0), choices=tuple(choices), surfaces=tuple(surfaces))


class OptionTable:
    """The core's options as the plugins use them: dialog widgets, defaults, checks, the digest.

    Built from the JSON of ``python -m clnsod_core.frontends.bridge --print-options``; every
    request carries ``digest`` so a core of another version refuses it instead of misreading it.
    """

    def __init__(self, options: Tuple[OptionSpec, ...], presets: Tuple[str, ...], digest: str) -> None:
        self.options = options
        self.presets = presets
        self.digest = digest
        self._by_name = {spec.name: spec for spec in options}
        for required in ("mode", "sky", "device"):
            if required not in self._by_name:
                raise ValueError(f"the option {required!r} is missing")

    @classmethod
    def from_data(cls, data: object) -> "OptionTable":
        """From the parsed options.json; BridgeError (telling to reinstall) if it is not one."""
        try:
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("protocol") != PROTOCOL:
                raise ValueError(f"it is for protocol {data.get('protocol')!r}, this plugin speaks {PROTOCOL}")
            digest, presets, rows = data.get("options_digest"), data.get("presets"), data.get("options")
            if not isinstance(digest, str) or not digest:
                raise ValueError("options_digest is missing")
            if not (isinstance(presets, list) and presets and all(isinstance(p, str) for p in presets)):
                raise ValueError("presets must be a list of names")
            if not isinstance(rows, list):
                raise ValueError("options must be a list")
            table = cls(tuple(_spec_from_data(row) for row in rows), tuple(presets), digest)
            for spec in table.request_options:
                _checked(spec, spec.default)
        except (ValueError, BridgeError) as exc:
            raise BridgeError(f"the CLN-SOD option table is invalid ({exc}). {REINSTALL_HINT}") from None
        return table

    def option(self, name: str) -> OptionSpec:
        return self._by_name[name]

    @property
    def request_options(self) -> Tuple[OptionSpec, ...]:
        """The options a request may carry, in the core's order."""
        return tuple(spec for spec in self.options if spec.in_request)

    @property
    def defaults(self) -> Dict[str, Any]:
        """Default of every option a request may carry."""
        return {spec.name: spec.default for spec in self.request_options}

    @property
    def dialog_keys(self) -> Tuple[str, ...]:
        """The options the dialogs show (and the Krita plugin remembers)."""
        return tuple(spec.name for spec in self.options if spec.in_dialog)

    @property
    def numbers(self) -> Tuple[NumberOption, ...]:
        """The dialogs' number boxes: every float/int option the dialogs show."""
        return tuple(NumberOption(spec.name, spec.label, float(spec.minimum), float(spec.maximum),  # type: ignore[arg-type]
                                  float(spec.default), spec.step, spec.decimals, spec.help, spec.group,
                                  spec.kind == "int")
                     for spec in self.options if spec.in_dialog and spec.kind in ("float", "int"))

    @property
    def switches(self) -> Tuple[OptionSpec, ...]:
        """The dialogs' check boxes: every bool option the dialogs show."""
        return tuple(spec for spec in self.options if spec.in_dialog and spec.kind == "bool")

    @property
    def devices(self) -> Tuple[str, ...]:
        return self.option("device").choices

    @property
    def modes(self) -> Tuple[str, ...]:
        return self.option("mode").choices

    def validate(self, options: Mapping[str, object]) -> Dict[str, Any]:
        """Defaults filled in, unknown keys and unusable values refused with a readable message.

        The same checks the core makes, so a mistake is reported in the editor before a job starts;
        a sky file is made absolute because the core runs in another working folder.
        """
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise BridgeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        merged = dict(self.defaults, **options)
        for spec in self.request_options:
            merged[spec.name] = _checked(spec, merged[spec.name])
        sky = merged["sky"]
        if merged["mode"] == "replace" and sky not in self.presets and not os.path.isfile(sky):
            raise BridgeError(f"sky image not found: {sky}")
        merged["sky"] = sky if sky in self.presets else os.path.abspath(sky)
        return merged


def _checked(spec: OptionSpec, value: object) -> Any:
    """``value`` as the request must carry it; BridgeError with the option's label if unusable."""
    if spec.kind in ("float", "int"):
        bounds = f"between {_number_text(spec.minimum)} and {_number_text(spec.maximum)}"  # type: ignore[arg-type]
        if spec.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not spec.minimum <= value <= spec.maximum:  # type: ignore[operator]
                raise BridgeError(f"{spec.label} must be a whole number {bounds}, got {value!r}")
            return value
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not spec.minimum <= value <= spec.maximum):  # type: ignore[operator]
            raise BridgeError(f"{spec.label} must be {bounds}, got {value!r}")
        return float(value)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise BridgeError(f"{spec.label} must be true or false, got {value!r}")
        return value
    if value is None and spec.default is None:
        return None
    if not isinstance(value, str):
        raise BridgeError(f"{spec.label} must be text, got {value!r}")
    if spec.kind == "choice" and value not in spec.choices:
        raise BridgeError(f"{spec.label} must be one of {', '.join(spec.choices)}, got {value!r}")
    return value


def load_option_table(plugin_dir: str) -> OptionTable:
    """The option table install_plugin.py wrote next to the plugin; BridgeError telling to reinstall."""
    path = os.path.join(plugin_dir, OPTIONS_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BridgeError(f"the CLN-SOD option table {path} is missing or unreadable ({exc}). {REINSTALL_HINT}") from None
    return OptionTable.from_data(data)


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

    def __init__(self, width: int, height: int, pixel_format: str, pixels: bytes, options: Mapping[str, object],
                 table: OptionTable, icc_profile: Optional[bytes] = None) -> None:
        """``icc_profile``: the image's RGB profile (None = sRGB); the layers come back in that space."""
        if pixel_format not in BYTES_PER_PIXEL:
            raise BridgeError(f"internal error: unknown pixel format {pixel_format}")
        if len(pixels) != width * height * BYTES_PER_PIXEL[pixel_format]:
            raise BridgeError(f"internal error: {len(pixels)} bytes for a {width}x{height} {pixel_format} image")
        self.width, self.height, self.pixel_format = width, height, pixel_format
        self.options = table.validate(options)
        self.dir = tempfile.mkdtemp(prefix="clnsod-")  # 0700, owned by this user
        try:
            request = dict(self.options, protocol=PROTOCOL, options_digest=table.digest, width=width, height=height,
                           pixel_format=pixel_format, icc_profile=icc_profile is not None)
            if icc_profile is not None:
                self._write("profile.icc", icc_profile)
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
        """An output named in the ``done`` event, size-checked: the matte is 1 byte/pixel, layers in
        the request's pixel format."""
        channels = 1 if key == "matte" else BYTES_PER_PIXEL[self.pixel_format]
        return self.read_file(f"{key}.raw", self.width * self.height * channels)

    def read_file(self, name: str, size: int) -> bytes:
        """A file the core wrote into the job folder, which must hold ``size`` bytes."""
        try:
            with open(os.path.join(self.dir, name), "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise BridgeError(f"the core did not produce {name} ({exc})") from None
        if len(data) != size:
            raise BridgeError(f"the core's {name} has the wrong size ({len(data)} bytes)")
        return data

    def read_overlays(self, files: Mapping[str, str]) -> List[Tuple[str, bytes]]:
        """(layer name, pixels) of the optional layers above the lighting that the core wrote (listed in
        the ``done`` event's files), bottom to top: the reflection in water, then the horizon haze."""
        return [(title, self.read_output(key)) for key, title in OVERLAY_LAYERS if key in files]

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class SkyChoice:
    """One sky the dialogs offer: a preset, or a sky of the user's library (``clnsod skies add``)."""

    name: str
    kind: str  # "preset" or "user"
    description: str
    thumbnail: Optional[str] = None  # a small sRGB JPEG, when the core could list them
    image: Optional[str] = None  # a user sky's image file: what the request sends as its sky

    @property
    def label(self) -> str:
        text = self.name.replace("-", " ").replace("_", " ")
        text = text[:1].upper() + text[1:]
        return text if self.kind == "preset" else f"{text} (your sky)"

    @property
    def request_sky(self) -> str:
        """The request's ``sky``: a preset's name, a user sky's image file (any core reads a file)."""
        return self.image if self.kind == "user" and self.image else self.name


LIST_SKIES_FLAG = "--list-skies"
LIST_SKIES_TIMEOUT_S = 60.0


def preset_choices(table: OptionTable) -> Tuple[SkyChoice, ...]:
    """The presets alone, without thumbnails: what the dialogs offer when the core cannot list skies."""
    return tuple(SkyChoice(name, "preset", "") for name in table.presets)


def _sky_from_data(row: object) -> Optional[SkyChoice]:
    if not isinstance(row, dict) or row.get("kind") not in ("preset", "user") or not isinstance(row.get("name"), str):
        return None
    texts = {key: row.get(key) if isinstance(row.get(key), str) else None for key in ("thumbnail", "image")}
    if row["kind"] == "user" and not texts["image"]:
        return None
    return SkyChoice(row["name"], row["kind"], str(row.get("description") or ""), texts["thumbnail"], texts["image"])


def list_skies(python: str, table: OptionTable) -> Tuple[Tuple[SkyChoice, ...], str]:
    """Every sky the core offers now (presets, then the user's library) with thumbnails, and "";
    or the presets alone and why the list could not be had (the dialog must open regardless)."""
    try:
        done = subprocess.run([python, "-m", CORE_MODULE, LIST_SKIES_FLAG], capture_output=True, text=True,
                              encoding="utf-8", errors="replace", env=core_environment(), timeout=LIST_SKIES_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return preset_choices(table), f"cannot list skies: {exc}"
    for line in reversed(done.stdout.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        rows = data.get("skies") if isinstance(data, dict) else None
        if isinstance(rows, list):
            skies = tuple(sky for sky in map(_sky_from_data, rows) if sky is not None)
            presets = [sky.name for sky in skies if sky.kind == "preset"]
            if presets != list(table.presets):  # another core version than options.json describes
                return preset_choices(table), f"the core's presets differ from the plugin's. {REINSTALL_HINT}"
            return skies, ""
    return preset_choices(table), failure_message(done.returncode, done.stderr)


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


# -- the core that stays up (PROTOCOL.md, "The core that stays up") ------------------------------------

SERVER_MODULE = "clnsod_core.frontends.core_server"
CORE_START_TIMEOUT_S = 120.0
PREVIEW_SIDE = 1000  # long side of the live preview (screen resolution)
RESTARTED_MESSAGE = "the CLN-SOD core had stopped and was restarted"
RESTART_TRIES = 3


class CoreGone(BridgeError):
    """The core process went away in the middle of a request (crashed, killed, out of memory)."""


def core_socket_path(editor: str, editor_pid: int) -> str:
    """One core per editor process, in a folder only this user can open (created 0700 here)."""
    import socket

    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):
        raise BridgeError("the Replace Sky dialog talks to the CLN-SOD core through a Unix-domain socket, "
                          "which this system's Python does not offer (Linux and macOS do)")
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = os.path.join(base, f"clnsod-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not os.path.isdir(folder):
        raise BridgeError(f"{folder} must be a folder private to you (mode 0700); remove it and try again")
    return os.path.join(folder, f"core-{editor}-{editor_pid}.sock")


class CoreClient:
    """The plugin's end of the core that stays up for the editor session.

    ``call`` is blocking (the dialogs call it from a worker thread, ``BackgroundCore``): it starts the
    core on first use (or after a crash), sends one request and returns the final answer, handing
    progress lines to ``on_progress``. The core exits by itself when the editor process goes away.
    """

    def __init__(self, python: str, editor: str, editor_pid: int) -> None:
        self.python, self.editor, self.editor_pid = python, editor, editor_pid
        self.path = core_socket_path(editor, editor_pid)
        self.log = self.path[:-len(".sock")] + ".log"
        self._sock: Optional[Any] = None
        self._stream: Optional[Any] = None
        self._process: Optional["subprocess.Popen[bytes]"] = None
        self._ids = 0
        self._send_lock = threading.Lock()
        self.current: Optional[int] = None  # id of the request in flight
        self.starts = 0  # core processes this client started (1 for a whole editor session unless one crashed)

    def _connect(self) -> bool:
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            return False
        self._sock, self._stream = sock, sock.makefile("rb")
        return True

    def ensure(self) -> None:
        """Connected to a running core; starts one if none answers (``starts`` counts them)."""
        if self._sock is not None or self._connect():
            return
        if self._process is not None:
            self._process.poll()  # reap a core that died
        with open(self.log, "ab") as log:
            try:
                self._process = subprocess.Popen(
                    [self.python, "-m", SERVER_MODULE, "--socket", self.path, "--watch-pid", str(self.editor_pid)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=core_environment(),
                    start_new_session=True, close_fds=True)
            except OSError as exc:
                raise BridgeError(f"cannot start the CLN-SOD core {self.python}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + CORE_START_TIMEOUT_S
        while not self._connect():
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                raise BridgeError(failure_message(code, self.log_tail()))
            time.sleep(0.05)
        self.starts += 1

    def log_tail(self) -> str:
        try:
            with open(self.log, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 4000))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def call(self, op: str, on_progress: Optional[Callable[[Event], None]] = None,
             cancelled: Optional[threading.Event] = None, **fields: Any) -> Dict[str, Any]:
        """One request; the final answer (``done``, ``cancelled`` or ``superseded``). BridgeError for
        an ``error`` answer, CoreGone when the core dies meanwhile (the next call restarts it).
        ``cancelled``: set by the UI thread to stop this request, even before it is sent."""
        self.ensure()
        with self._send_lock:
            self._ids += 1
            request_id = self.current = self._ids
            self._send(dict(fields, op=op, id=request_id))
            if cancelled is not None and cancelled.is_set():
                self._send({"op": "cancel", "request": request_id})
        try:
            while True:
                try:
                    line = self._stream.readline() if self._stream is not None else b""
                except OSError:  # reset by a core that died
                    line = b""
                if not line:
                    self.disconnect()
                    raise CoreGone(failure_message(self._process.poll() if self._process else None, self.log_tail()))
                try:
                    answer = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(answer, dict) or answer.get("id") != request_id:
                    continue
                if "error" in answer:
                    raise BridgeError(str(answer["error"]))
                if "progress" in answer:
                    event = parse_event(json.dumps(answer))
                    if on_progress is not None and event is not None:
                        on_progress(event)
                    continue
                return answer
        finally:
            self.current = None

    def _send(self, message: Dict[str, Any]) -> None:
        try:
            assert self._sock is not None
            self._sock.sendall((json.dumps(message) + "\n").encode("utf-8"))
        except (OSError, AssertionError):
            self.disconnect()
            raise CoreGone(failure_message(self._process.poll() if self._process else None, self.log_tail())) from None

    def cancel(self) -> None:
        """Ask the core to stop the request in flight (it answers ``cancelled`` at its next stage)."""
        request_id = self.current
        if request_id is None or self._sock is None:
            return
        with self._send_lock:
            try:
                self._sock.sendall((json.dumps({"op": "cancel", "request": request_id}) + "\n").encode("utf-8"))
            except OSError:
                pass

    def disconnect(self) -> None:
        """Close this end; the core forgets this connection's sessions and deletes their job folders."""
        for closing in (self._stream, self._sock):
            try:
                if closing is not None:
                    closing.close()
            except OSError:
                pass
        self._sock = self._stream = None


@dataclass(frozen=True)
class Preview:
    """One preview answer: 8-bit sRGB RGB rows of ``width`` x ``height``."""

    width: int
    height: int
    rgb: bytes
    sky_found: bool
    recomputed: Tuple[str, ...] = ()
    seconds: float = 0.0


class PhotoSession:
    """One photo open in the dialog, held by the core: previews while settings change, then the
    full-resolution render with the last settings. Blocking calls (see BackgroundCore)."""

    def __init__(self, client: CoreClient, job: Job, preview_side: int = PREVIEW_SIDE) -> None:
        self.client, self.job, self.preview_side = client, job, preview_side
        self.id: Optional[str] = None
        self.original: Optional[Preview] = None  # the photo as previewed, for the before/after toggle
        self.notice = ""  # set when the core had to be restarted
        self.stop = threading.Event()  # set by cancel_render (UI thread)

    def open(self) -> Preview:
        """Hand the photo to the core; returns the photo as previewed (the "before" picture)."""
        answer = self.client.call("open", job=self.job.dir, preview_side=self.preview_side)
        self.id = str(answer["session"])
        self.original = Preview(int(answer["width"]), int(answer["height"]),
                                self._read("original.rgb", int(answer["width"]), int(answer["height"])), True)
        return self.original

    def _again(self, call: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        """``call``; if the core crashed, again after reopening the session in a restarted core. A core
        that is still dying may accept one more connection before it is gone, hence a few tries."""
        attempt = 0
        while True:
            try:
                if attempt:
                    time.sleep(0.2 * attempt)
                    self.open()
                    self.notice = RESTARTED_MESSAGE
                return call()
            except CoreGone:
                attempt += 1
                if attempt == RESTART_TRIES:
                    raise

    def preview(self, options: Mapping[str, object]) -> Optional[Preview]:
        """The result for ``options`` at preview size; None when a newer request superseded it."""
        if self.id is None:
            self.open()
        answer = self._again(lambda: self.client.call("preview", session=self.id, options=dict(options)))
        if answer.get("superseded") or answer.get("cancelled"):
            return None
        w, h = int(answer["width"]), int(answer["height"])
        return Preview(w, h, self._read("preview.rgb", w, h), answer.get("sky_found") is not False,
                       tuple(answer.get("recomputed") or ()), float(answer.get("seconds") or 0))

    def render(self, options: Mapping[str, object], on_progress: Callable[[Event], None]) -> Event:
        """The full-resolution layers written into the job folder: the ``done`` event (or
        ``cancelled`` as an error event with message "cancelled")."""
        if self.stop.is_set():
            return Event("error", message="cancelled")
        if self.id is None:
            self.open()
        answer = self._again(lambda: self.client.call("render", on_progress, self.stop, session=self.id,
                                                      options=dict(options)))
        if answer.get("cancelled"):
            return Event("error", message="cancelled")
        event = parse_event(json.dumps(answer))
        return event if event is not None else Event("error", message="the core gave no answer")

    def cancel_render(self) -> None:
        """From the UI thread: stop the render, whether it is running, queued or not sent yet."""
        self.stop.set()
        self.client.cancel()

    def close(self) -> None:
        """Forget the photo in the core and delete the job folder."""
        try:
            if self.id is not None and self.client._sock is not None:
                self.client.call("close", session=self.id)
        except BridgeError:
            pass
        self.id = None
        self.job.cleanup()

    def _read(self, name: str, width: int, height: int) -> bytes:
        return self.job.read_file(name, width * height * 3)  # 8-bit RGB rows


class BackgroundCore:
    """Runs a PhotoSession's blocking calls on one worker thread, so the editor never freezes.

    Results come back through ``post`` (the editor's way to run a function on its UI thread: a
    queued Qt signal in Krita, GLib.idle_add in GIMP). Previews coalesce: while one runs, further
    requests only replace the pending settings, and the newest settings are previewed next.
    """

    def __init__(self, post: Callable[[Callable[[], None]], None]) -> None:
        self._post = post
        self._tasks: List[Callable[[], None]] = []
        self._wake = threading.Condition()
        self._pending: Optional[Tuple[Mapping[str, object], Callable[..., None], Callable[[str], None]]] = None
        self._stopped = False
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name="clnsod-core-client", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], Any], on_done: Callable[[Any], None], on_error: Callable[[str], None]) -> None:
        """Run ``work`` in the background; ``on_done(result)`` or ``on_error(message)`` on the UI thread."""
        def task() -> None:
            try:
                result = work()
            except BridgeError as exc:
                message = str(exc)
                self._post(lambda: on_error(message))
                return
            except Exception as exc:  # noqa: BLE001 - a bug must reach the user, never kill the worker
                message = f"internal error in the plugin: {type(exc).__name__}: {exc}"
                self._post(lambda: on_error(message))
                return
            self._post(lambda: on_done(result))

        with self._wake:
            self._tasks.append(task)
            self._wake.notify()

    def preview(self, session: PhotoSession, options: Mapping[str, object], on_done: Callable[[Any], None],
                on_error: Callable[[str], None]) -> None:
        """Preview ``options``; only the newest of the requests made while one runs is computed."""
        with self._wake:
            queued = self._pending is not None
            self._pending = (dict(options), on_done, on_error)
        if not queued:
            self.submit(lambda: self._take_pending(session), self._deliver, lambda message: None)

    def _take_pending(self, session: PhotoSession) -> Any:
        with self._wake:
            pending, self._pending = self._pending, None
        if pending is None:
            return None
        options, on_done, on_error = pending
        try:
            return (session.preview(options), on_done)
        except BridgeError as exc:
            return (exc, on_error)

    @staticmethod
    def _deliver(result: Any) -> None:
        if result is None:
            return
        value, callback = result
        callback(str(value) if isinstance(value, BridgeError) else value)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._tasks and not self._stopped:
                    self._wake.wait()
                if self._stopped and not self._tasks:
                    return
                task = self._tasks.pop(0)
                self.busy = True
            try:
                task()
            finally:
                self.busy = False

    def stop(self, wait: bool = False) -> None:
        """No further tasks: queued ones and pending previews are dropped, the running one finishes
        (``wait``: until then, so the caller may use the session's connection itself)."""
        with self._wake:
            self._stopped = True
            self._pending = None
            self._tasks.clear()
            self._wake.notify()
        if wait:
            self._thread.join(timeout=120)


# -- looks: named settings the artist saves and picks again --------------------------------------------

def looks_from_text(text: Optional[str], table: OptionTable) -> Dict[str, Dict[str, Any]]:
    """Saved looks ({name: dialog options}) from their JSON; unusable entries and values are dropped
    key by key (looks saved by another version may hold options this core no longer has)."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    looks: Dict[str, Dict[str, Any]] = {}
    for name, values in data.items():
        if not isinstance(name, str) or not name.strip() or not isinstance(values, dict):
            continue
        kept: Dict[str, Any] = {}
        for key in table.dialog_keys:
            if key in values:
                try:
                    table.validate(dict(kept, **{key: values[key]}))
                except (BridgeError, TypeError, ValueError):
                    continue
                kept[key] = values[key]
        looks[name.strip()] = kept
    return looks


def looks_to_text(looks: Mapping[str, Mapping[str, Any]]) -> str:
    return json.dumps({name: dict(values) for name, values in sorted(looks.items())}, sort_keys=True)


def look_of(options: Mapping[str, object], table: OptionTable) -> Dict[str, Any]:
    """What a look keeps of the dialog's options: everything the dialog shows except the device."""
    return {key: options[key] for key in table.dialog_keys if key in options and key != "device"}
