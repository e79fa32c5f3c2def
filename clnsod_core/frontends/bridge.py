"""Core side of the editor-plugin exchange (``plugin/PROTOCOL.md``).

Run as ``python -m clnsod_core.frontends.bridge JOB_DIR``. Reads ``request.json`` and ``input.raw``
from the plugin's private job folder, prints one JSON object per line on stdout (progress,
then ``done`` or ``error``) and writes its outputs into that folder under fixed names, so a
request can never make the core write anywhere else.

``python -m clnsod_core.frontends.bridge --print-options`` prints the option table of
``options.py`` (and the sky presets) as JSON: ``install_plugin.py`` stores it next to each plugin,
which builds its dialog, defaults and checks from it and sends its digest with every request.
``--list-skies`` prints every sky the dialogs can offer now (presets and the user's own library)
with thumbnail files; the dialogs ask for it each time they open.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from clnsod_core.files import write_atomic
from clnsod_core.options import BRIDGE, on

PROTOCOL = 3  # 2: options from the core's table (options_digest); 3: 16-bit and float pixels, ICC profile


@dataclass(frozen=True)
class PixelFormat:
    """How the editor's pixels are laid out: 4 channels, R, G, B at ``order``, alpha last."""

    order: tuple[int, int, int]
    dtype: str  # numpy dtype, little-endian

    @property
    def bytes_per_pixel(self) -> int:
        return 4 * np.dtype(self.dtype).itemsize


PIXEL_FORMATS = {
    "RGBA8": PixelFormat((0, 1, 2), "u1"), "BGRA8": PixelFormat((2, 1, 0), "u1"),  # BGRA: Krita's integer order
    "RGBA16": PixelFormat((0, 1, 2), "<u2"), "BGRA16": PixelFormat((2, 1, 0), "<u2"),
    "RGBAF16": PixelFormat((0, 1, 2), "<f2"), "RGBAF32": PixelFormat((0, 1, 2), "<f4"),
}
OUTPUT_NAMES = {"matte": "matte.raw", "sky": "sky.raw", "lighting": "lighting.raw", "reflection": "reflection.raw",
                "haze": "haze.raw"}  # reflection and haze only when the photo has them
PROFILE_NAME = "profile.icc"  # the image's ICC profile, in the job folder when the request says so
MAX_REQUEST_BYTES = 64 * 1024
MAX_PROFILE_BYTES = 4 * 1024 * 1024

_REQUIRED = {"protocol": int, "width": int, "height": int, "pixel_format": str, "options_digest": str}
_JSON_TYPES = {"float": float, "int": int, "bool": bool, "choice": str, "text": str}


class RequestError(Exception):
    """The request is malformed (a plugin bug or a tampered job folder): exit status 2."""


@dataclass(frozen=True)
class Request:
    width: int
    height: int
    pixel_format: str
    options: dict[str, Any]
    icc_profile: bool = False  # the job folder holds the image's profile.icc


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _typed(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RequestError(f"request field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def check_job_dir(job_dir: Path) -> None:
    """The job folder must be a real folder that only this user can use (tempfile.mkdtemp makes one)."""
    try:
        info = os.lstat(job_dir)
    except OSError as exc:
        raise RequestError(f"job folder {job_dir} is not accessible ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RequestError(f"job folder {job_dir} is not a folder (or is a symlink)")
    if os.name == "posix" and (info.st_uid != os.getuid() or info.st_mode & 0o077):
        raise RequestError(f"job folder {job_dir} must be private to this user (mode 0700)")


def _read_private(path: Path, limit: int | None = None) -> bytes:
    """Read a file in the job folder without following symlinks."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise RequestError(f"cannot read {path.name} in the job folder ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1 if limit else -1)
    if limit and len(data) > limit:
        raise RequestError(f"{path.name} is larger than {limit} bytes")
    return data


def parse_request(raw: bytes) -> Request:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"request.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError("request.json must hold a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise RequestError(f"request field {key!r} is missing")
        _typed(key, data[key], kind)
    if data["protocol"] != PROTOCOL:
        raise RequestError(f"protocol {data['protocol']} not supported (this core speaks {PROTOCOL}); "
                           "reinstall the plugin from this CLN-SOD version")
    if data["pixel_format"] not in PIXEL_FORMATS:
        raise RequestError(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}")
    if not (1 <= data["width"] <= 1_000_000 and 1 <= data["height"] <= 1_000_000):
        raise RequestError(f"image size {data['width']}x{data['height']} is out of range")
    if data["options_digest"] != options_digest():
        raise RequestError("the plugin was installed from another CLN-SOD version (its option table differs); "
                           "reinstall it with install_plugin.py from this CLN-SOD")
    icc_profile = _typed("icc_profile", data.get("icc_profile", False), bool)
    unknown = set(data) - set(_REQUIRED) - set(_OFFERED_BY_NAME) - {"icc_profile"}
    if unknown:
        raise RequestError(f"unknown request field(s): {', '.join(sorted(unknown))}")
    options = parse_options({key: value for key, value in data.items() if key in _OFFERED_BY_NAME})
    return Request(data["width"], data["height"], data["pixel_format"], options, icc_profile)


def parse_options(data: dict[str, Any]) -> dict[str, Any]:
    """Every option a request may carry, type-checked, with the table's defaults for those not given;
    RequestError for an unknown key or a value of the wrong type."""
    unknown = set(data) - set(_OFFERED_BY_NAME)
    if unknown:
        raise RequestError(f"unknown option(s): {', '.join(sorted(unknown))}")
    options = {}
    for name, opt in _OFFERED_BY_NAME.items():
        value = data.get(name, opt.default)
        options[name] = value if value is None and opt.default is None else _typed(name, value, _JSON_TYPES[opt.kind])
        if opt.kind == "choice" and options[name] not in opt.choices:
            raise RequestError(f"{name} must be one of {', '.join(opt.choices)}")
    return options


def decode_pixels(raw: bytes, request: Request) -> np.ndarray:
    """input.raw -> (H, W, 3) RGB: uint8 from 8-bit formats, uint16 from 16-bit and float ones (floats
    clipped to [0, 1]); alpha is ignored: the photo's colours are what count."""
    fmt = PIXEL_FORMATS[request.pixel_format]
    expected = request.width * request.height * fmt.bytes_per_pixel
    if len(raw) != expected:
        raise RequestError(f"input.raw holds {len(raw)} bytes; {request.width}x{request.height} "
                           f"{request.pixel_format} needs {expected}")
    pixels = np.frombuffer(raw, fmt.dtype).reshape(request.height, request.width, 4)[..., list(fmt.order)]
    if pixels.dtype.kind == "f":
        from clnsod_core.arrays import to_u16

        return to_u16(pixels.astype(np.float32))
    return np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))


def encode_pixels(rgb: np.ndarray, alpha: np.ndarray | None, pixel_format: str) -> bytes:
    """(H, W, 3) RGB + optional (H, W) alpha (uint8 or uint16, the same) -> ``pixel_format`` bytes."""
    fmt = PIXEL_FORMATS[pixel_format]
    h, w = rgb.shape[:2]
    top = float(np.iinfo(rgb.dtype).max)
    out = np.empty((h, w, 4), fmt.dtype)
    target = np.dtype(fmt.dtype)
    if target.kind == "f":
        convert = lambda values: values.astype(np.float32) / np.float32(top)  # noqa: E731
    elif target.itemsize == rgb.dtype.itemsize:
        convert = lambda values: values  # noqa: E731
    else:
        raise ValueError(f"{pixel_format} layers need {target.itemsize * 8}-bit values, got {rgb.dtype}")
    for channel, position in enumerate(fmt.order):
        out[..., position] = convert(rgb[..., channel])
    out[..., 3] = convert(np.full((h, w), top, rgb.dtype) if alpha is None else alpha)
    return out.tobytes()


def read_profile(job_dir: Path, request: Request) -> bytes | None:
    """The image's ICC profile from the job folder (an RGB profile LittleCMS can use), or None."""
    if not request.icc_profile:
        return None
    from clnsod_core.imaging.colour import ColourError, colour_kind

    icc = _read_private(job_dir / PROFILE_NAME, MAX_PROFILE_BYTES)
    try:
        kind = colour_kind(icc)
    except ColourError as exc:
        raise ValueError(f"the image's colour profile cannot be used: {exc}") from None
    if kind != "RGB":
        raise ValueError(f"the image's colour profile is {kind}, not RGB")
    return icc


def _write(job_dir: Path, key: str, data: bytes) -> str:
    name = OUTPUT_NAMES[key]
    write_atomic(job_dir / name, lambda handle: handle.write(data))
    return name


# The answer for a photo without sky: no output files; the plugins show a message, add no layers.
NO_SKY_DONE: dict[str, Any] = {"done": True, "sky_found": False, "files": {}}


@dataclass(frozen=True)
class LoadedJob:
    """A job folder's request, photo (RGB, 8 or 16 bits) and colour space, checked."""

    request: Request
    photo: np.ndarray
    icc: bytes | None
    digest: str = ""  # of input.raw, when asked for: the core server remembers network answers by it

    @property
    def max_pixels(self) -> int:
        return int(self.request.options["max_megapixels"] * 1e6)


def load_job(job_dir: Path, with_digest: bool = False) -> LoadedJob:
    """Read and check a job folder; RequestError for a malformed one, ValueError for an unusable image."""
    check_job_dir(job_dir)
    request = parse_request(_read_private(job_dir / "request.json", MAX_REQUEST_BYTES))
    opts = request.options
    if request.width * request.height > int(opts["max_megapixels"] * 1e6):
        raise ValueError(f"image too large ({request.width}x{request.height}); limit {opts['max_megapixels']:g} MP")
    raw = _read_private(job_dir / "input.raw")
    digest = hashlib.blake2b(raw, digest_size=20).hexdigest() if with_digest else ""
    return LoadedJob(request, decode_pixels(raw, request), read_profile(job_dir, request), digest)


REPLACE_STAGES = {"computing the sky matte": 0.2, "placing the new sky": 0.55,
                  "blending the foreground": 0.65}  # progress reported when each stage starts


def write_results(job_dir: Path, pixel_format: str, result: Any, report: Callable[..., None] = emit) -> dict[str, Any]:
    """The layers of a ``ReplaceResult`` written into the job folder; returns the ``done`` event.
    ``report`` gets the progress event (stdout here, the connection in the core server)."""
    from clnsod_core.compositing.compose import lowest_sky_line

    if not result.sky_found:
        return NO_SKY_DONE
    report(progress=0.8, stage="building the layers")
    layers = result.editor_layers()
    lighting = layers.lighting
    files = {
        "matte": _write(job_dir, "matte", layers.matte.tobytes()),
        "sky": _write(job_dir, "sky", encode_pixels(layers.sky, None, pixel_format)),
        "lighting": _write(job_dir, "lighting", encode_pixels(lighting[..., :3], lighting[..., 3], pixel_format)),
    }
    for name, layer in layers.overlays().items():  # reflection, haze: only when the photo has them
        files[name] = _write(job_dir, name, encode_pixels(layer[..., :3], layer[..., 3], pixel_format))
    return {"done": True, "sky_found": True, "files": files, "sky_line": lowest_sky_line(result.matte)}


def write_matte(job_dir: Path, matte: np.ndarray, sky_found: bool) -> dict[str, Any]:
    """Mask mode's one output; returns the ``done`` event."""
    from clnsod_core.arrays import to_u8

    if not sky_found:
        return NO_SKY_DONE
    return {"done": True, "sky_found": True, "files": {"matte": _write(job_dir, "matte", to_u8(matte).tobytes())}}


def run_job(job_dir: Path) -> dict[str, Any]:
    """Do the work; returns the ``done`` event. Raises RequestError or a user-facing error."""
    job = load_job(job_dir)
    opts = job.request.options
    emit(progress=0.02, stage="loading the CLN-SOD model")
    # Heavy imports after the request is known to be sane: a bad request fails in well under a second.
    from clnsod_core.imaging.colour import ColourSpace
    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer, load_sky
    from clnsod_core.runtime import tune_allocator

    tune_allocator()
    options = ReplaceOptions.from_flat(opts)
    options.validate()
    sky = load_sky(opts["sky"], job.max_pixels) if opts["mode"] == "replace" else None
    replacer = SkyReplacer(SkyMasker(opts["weights"], device=opts["device"], max_pixels=job.max_pixels))
    space = ColourSpace(job.icc)
    if sky is None:
        emit(progress=0.2, stage="computing the sky matte")
        return write_matte(job_dir, *replacer.mask(job.photo, options.matte, space))
    result = replacer.replace(job.photo, sky, options, space=space,
                              on_stage=lambda stage: emit(progress=REPLACE_STAGES[stage], stage=stage))
    return write_results(job_dir, job.request.pixel_format, result)


def option_table() -> dict[str, Any]:
    """What the plugins build their dialogs from: the bridge's options, the sky presets, the digest."""
    from clnsod_core.compositing.preset_names import PRESET_DESCRIPTIONS

    return {"protocol": PROTOCOL, "options_digest": options_digest(), "options": _OFFERED,
            "presets": list(PRESET_DESCRIPTIONS)}


def options_digest() -> str:
    """sha256 of the bridge's option table: a plugin installed from another version is told to reinstall."""
    return _DIGEST


_OFFERED_BY_NAME = {o.name: o for o in on(BRIDGE)}
_OFFERED = [o.to_data() for o in on(BRIDGE)]  # the table is fixed for the process: described and hashed once
_DIGEST = hashlib.sha256(json.dumps(_OFFERED, sort_keys=True).encode("utf-8")).hexdigest()


def sky_list() -> dict[str, Any]:
    """Every sky the dialogs can offer now (presets and the user's library), with thumbnail files."""
    from clnsod_core.compositing.catalogue import sky_catalogue

    return {"protocol": PROTOCOL, "skies": [entry.to_data() for entry in sky_catalogue(thumbnails=True)]}


STOP_FLAG = "--stop-on-stdin-eof"
PRINT_OPTIONS_FLAG = "--print-options"
LIST_SKIES_FLAG = "--list-skies"
EXIT_ORPHANED = 3


def stop_when_parent_goes(stream: IO[bytes], job_dir: Path) -> None:
    """Exit as soon as ``stream`` (the plugin's pipe) reaches end of file.

    The plugin never writes to it; it closes when the plugin exits or is killed (GIMP kills a
    plug-in whose progress the user cancels). Then nobody will read the results or delete the job
    folder, which holds a copy of the user's photo: remove it and stop computing.
    """
    def watch() -> None:
        while stream.read(4096):
            pass
        shutil.rmtree(job_dir, ignore_errors=True)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="clnsod-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == [PRINT_OPTIONS_FLAG]:
        sys.stdout.write(json.dumps(option_table(), indent=1) + "\n")
        return 0
    if args == [LIST_SKIES_FLAG]:
        sys.stdout.write(json.dumps(sky_list()) + "\n")
        return 0
    watch_parent = bool(args) and args[0] == STOP_FLAG
    args = args[1:] if watch_parent else args
    if len(args) != 1:
        emit(error=f"usage: python -m clnsod_core.frontends.bridge [{STOP_FLAG}] JOB_DIR | {PRINT_OPTIONS_FLAG} | "
                   f"{LIST_SKIES_FLAG}")
        return 2
    if watch_parent:
        stop_when_parent_goes(sys.stdin.buffer, Path(args[0]))
    start = time.monotonic()
    try:
        done = run_job(Path(args[0]))
    except RequestError as exc:
        emit(error=f"bad request from the plugin: {exc}")
        return 2
    except MemoryError:
        emit(error="not enough memory for this image; try a smaller image or close other programs")
        return 1
    except Exception as exc:  # every failure must reach the editor as one readable line
        from clnsod_core.imaging.io import PhotoError
        from clnsod_core.weights.download import DownloadError
        from clnsod_core.weights.format import WeightsError

        if isinstance(exc, (PhotoError, WeightsError, DownloadError, ValueError, OSError)):
            emit(error=str(exc))
        else:
            traceback.print_exc(file=sys.stderr)
            emit(error=f"internal error in the CLN-SOD core: {type(exc).__name__}: {exc}")
        return 1
    done["seconds"] = round(time.monotonic() - start, 3)
    emit(**done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
