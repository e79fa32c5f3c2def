"""The core that stays up for an editor session: model loaded once, live previews, full renders.

A plugin (``bridge_client.CoreClient``) starts it on first use as
``python -m clnsod_core.frontends.core_server --socket PATH --watch-pid EDITOR_PID``. It listens on a
Unix-domain socket in a folder only this user can open (no network listener; peers of another user
are refused), answers one JSON object per line (``plugin/PROTOCOL.md``, "The core that stays up"),
works on one request at a time, and exits as soon as the editor process is gone, deleting the job
folders of the sessions still open (they hold copies of the user's photos).

A session is one photo (a job folder as in the one-shot exchange). Its network answer is computed
once, on the full photo, and remembered by the photo's content, so reopening the dialog on an
unchanged layer skips the network; previews run the replacement on a copy about ``PREVIEW_SIDE``
pixels long with a ``StageCache``, so a moved slider recomputes only the stages it reaches; a render
runs the same replacement on the full photo with the remembered network answer, which is exactly
what ``clnsod replace`` computes for those settings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import stat
import struct
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from pathlib import Path
from typing import Any

import numpy as np

from clnsod_core.files import write_atomic
from clnsod_core.frontends.bridge import (
    PROTOCOL,
    REPLACE_STAGES,
    LoadedJob,
    RequestError,
    load_job,
    options_digest,
    parse_options,
    write_matte,
    write_results,
)

PREVIEW_SIDE = 1000  # long side of the previewed copy (screen resolution)
PREVIEW_SIDES = (128, 4096)  # what an open request may ask for instead
# The preview's matte guide is at most this long: the dialogs show the preview about 700 px wide, and a
# finer guide (up to 1000 px for photos under 1.3 MP) would triple the time of an edge update.
PREVIEW_GUIDE_MAX = 640
PREVIEW_NAME, ORIGINAL_NAME = "preview.rgb", "original.rgb"  # 8-bit sRGB RGB, written into the job folder
MASK_TINT = np.array([0.25, 0.5, 1.0], np.float32)  # mask mode's preview: the sky tinted blue, as a quick mask
REMEMBERED_NETWORKS = 32  # network answers kept by photo content (each 400 KB)
REMEMBERED_SKIES = 4  # reduced copies of sky files kept for previews (a user trying skies goes back and forth)
WATCH_INTERVAL_S = 0.5
MAX_LINE_BYTES = 1 << 20
INTERNAL_OPS = ("warm-up", "disconnected")  # queued by the server itself, never accepted from a plugin


class Cancelled(Exception):
    """The plugin cancelled this request (or went away)."""


def preview_copy(photo: np.ndarray, side: int) -> np.ndarray:
    """``photo`` at ``side`` pixels on its long side (or as is when smaller): box means by a whole factor
    first (exact at 8 and 16 bits; edge rows that do not fill a box are dropped), then an antialiased
    resize of that small copy to the exact size."""
    import torch
    import torch.nn.functional as F

    h, w = photo.shape[:2]
    factor = max(1, min(max(h, w) // side, h, w))
    if factor > 1:
        hk, wk = h // factor, w // factor
        reduced = np.empty((hk, wk, 3), photo.dtype)
        rows = max(1, 2_000_000 // (w * factor))  # bands of output rows keep the uint32 sums small
        for y0 in range(0, hk, rows):
            y1 = min(hk, y0 + rows)
            block = photo[y0 * factor:y1 * factor, :wk * factor].reshape(y1 - y0, factor, wk, factor, 3)
            reduced[y0:y1] = (block.sum(axis=(1, 3), dtype=np.uint32) + factor * factor // 2) // (factor * factor)
        photo, h, w = reduced, hk, wk
    if max(h, w) <= side:
        return photo
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = torch.from_numpy(photo.astype(np.float32)).permute(2, 0, 1)[None]
    resized = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    top = float(np.iinfo(photo.dtype).max)
    return resized.clamp_(0, top).round_().permute(1, 2, 0).numpy().astype(photo.dtype)


def preview_options(options: Any, scale: float, photo_side: int) -> Any:
    """The replacement options for a copy ``scale`` times the photo's size that look as the photo's
    will, reduced: pixel distances scaled, and the matte's guide reduced as the photo's is (its guide
    is at most ``guide_side`` long; the preview's at most PREVIEW_GUIDE_MAX), so fine structure
    resolves as it will at full size."""
    matte = options.matte
    guide = max(64, min(PREVIEW_GUIDE_MAX, round(min(matte.guide_side, photo_side) * scale)))
    return replace_fields(options, matte=replace_fields(matte, edge_shift=matte.edge_shift * scale,
                                                        edge_fade=matte.edge_fade * scale, guide_side=guide))


def srgb_bytes(pixels: np.ndarray, space: Any) -> bytes:
    """What the dialogs display: 8-bit sRGB RGB rows."""
    from clnsod_core.arrays import as_u8
    from clnsod_core.imaging.colour import SRGB, convert

    return np.ascontiguousarray(convert(as_u8(pixels), space, SRGB)).tobytes()


@dataclass
class Session:
    """One photo open in an editor's dialog."""

    id: str
    job_dir: Path
    job: LoadedJob
    space: Any  # ColourSpace
    preview: np.ndarray  # the reduced copy previews are computed on
    owner: Connection
    network_key: tuple[Any, ...] | None = None  # (weights, device) the cache's network answer is from
    cache: Any = None  # StageCache of the previews

    @property
    def scale(self) -> float:
        return self.preview.shape[1] / self.job.photo.shape[1]


@dataclass
class Connection:
    """One plugin connected to the core; replies are written whole lines at a time."""

    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: set[Any] = field(default_factory=set)  # request ids the plugin cancelled
    closed: bool = False

    def send(self, **message: Any) -> None:
        data = (json.dumps(message) + "\n").encode("utf-8")
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True


class Core:
    """Sessions, remembered network answers and skies, and the models; used by one worker thread."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.sessions: dict[str, Session] = {}
        self.networks: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.skies: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.maskers: dict[tuple[Any, ...], Any] = {}
        self._ids = itertools.count(1)

    # -- requests ----------------------------------------------------------------------------------

    def handle(self, request: dict[str, Any], connection: Connection,
               progress: Callable[..., None]) -> dict[str, Any]:
        """The final answer to one request (without its id); progress events go to ``progress``."""
        op = request.get("op")
        if op == "hello":
            return {"done": True, "protocol": PROTOCOL, "options_digest": options_digest(), "pid": os.getpid(),
                    "uptime_s": round(time.monotonic() - self.started, 3), "sessions": len(self.sessions)}
        if op == "open":
            return self.open(request, connection)
        session = self.sessions.get(str(request.get("session")))
        if session is None or session.owner is not connection:
            raise RequestError(f"no open session {request.get('session')!r}")
        if op == "close":
            del self.sessions[session.id]
            return {"done": True}
        options = request.get("options")
        if not isinstance(options, dict):
            raise RequestError("options must be a JSON object")
        if op == "preview":
            return self.preview(session, parse_options(options), progress)
        if op == "render":
            return self.render(session, parse_options(options), progress)
        raise RequestError(f"unknown op {op!r}")

    def open(self, request: dict[str, Any], connection: Connection) -> dict[str, Any]:
        from clnsod_core.imaging.colour import ColourSpace

        job_dir = Path(str(request.get("job")))
        if not job_dir.is_absolute():
            raise RequestError("job must be an absolute path")
        side = request.get("preview_side", PREVIEW_SIDE)
        if isinstance(side, bool) or not isinstance(side, int) or not PREVIEW_SIDES[0] <= side <= PREVIEW_SIDES[1]:
            raise RequestError(f"preview_side must be a whole number from {PREVIEW_SIDES[0]} to {PREVIEW_SIDES[1]}")
        job = load_job(job_dir, with_digest=True)
        space = ColourSpace(job.icc)
        session = Session(f"s{next(self._ids)}", job_dir, job, space, preview_copy(job.photo, side), connection)
        write_atomic(job_dir / ORIGINAL_NAME, lambda handle: handle.write(srgb_bytes(session.preview, space)))
        self.sessions[session.id] = session
        h, w = session.preview.shape[:2]
        remembered = any(key[0] == job.digest for key in self.networks)
        return {"done": True, "session": session.id, "width": w, "height": h, "files": {"original": ORIGINAL_NAME},
                "network_remembered": remembered}

    def preview(self, session: Session, opts: dict[str, Any], progress: Callable[..., None]) -> dict[str, Any]:
        from clnsod_core.arrays import from_unit, unit_scale
        from clnsod_core.replace import ReplaceOptions, StageCache

        start = time.monotonic()
        options = ReplaceOptions.from_flat(opts)
        options.validate()
        replacer, key = self._replacer(session, opts)
        if session.network_key != key:  # another model: nothing the cache holds is valid
            session.cache = StageCache()
            session.cache.seed("network", (), self._network(session, replacer, key))
            session.network_key = key
        cache = session.cache
        cache.clear_log()
        scaled = preview_options(options, session.scale, max(session.job.photo.shape[:2]))
        if opts["mode"] == "mask":
            matte, sky_found = replacer.mask(session.preview, scaled.matte, session.space, cache)
            photo = session.preview.astype(np.float32) / np.float32(unit_scale(session.preview.dtype))
            m = (0.6 * matte)[..., None]
            shown = photo * (1 - m) + MASK_TINT * m
        else:
            sky = self._sky(opts["sky"], session.job.max_pixels, small=True)
            result = replacer.replace(session.preview, sky, scaled, space=session.space, cache=cache,
                                      on_stage=lambda _stage: progress(None))
            sky_found, shown = result.sky_found, result.composite
        if shown.dtype == np.float32:
            shown = from_unit(np.clip(shown, 0, 1), np.dtype(np.uint8))
        write_atomic(session.job_dir / PREVIEW_NAME, lambda handle: handle.write(srgb_bytes(shown, session.space)))
        h, w = session.preview.shape[:2]
        return {"done": True, "sky_found": sky_found, "files": {"preview": PREVIEW_NAME}, "width": w, "height": h,
                "recomputed": list(cache.recomputed), "seconds": round(time.monotonic() - start, 3)}

    def render(self, session: Session, opts: dict[str, Any], progress: Callable[..., None]) -> dict[str, Any]:
        """The full-resolution layers, as the one-shot exchange writes them, reusing the network answer."""
        from clnsod_core.replace import ReplaceOptions, StageCache

        start = time.monotonic()
        options = ReplaceOptions.from_flat(opts)
        options.validate()
        progress(progress=0.02, stage="loading the CLN-SOD model")
        replacer, key = self._replacer(session, opts)
        cache = StageCache(keep=())
        cache.seed("network", (), self._network(session, replacer, key))
        job = session.job
        if opts["mode"] == "mask":
            progress(progress=0.2, stage="computing the sky matte")
            done = write_matte(session.job_dir, *replacer.mask(job.photo, options.matte, session.space, cache))
        else:
            sky = self._sky(opts["sky"], job.max_pixels, small=False)
            result = replacer.replace(job.photo, sky, options, space=session.space, cache=cache,
                                      on_stage=lambda stage: progress(progress=REPLACE_STAGES[stage], stage=stage))
            progress(None)
            done = write_results(session.job_dir, job.request.pixel_format, result,
                                 report=lambda **event: progress(**event))
        return dict(done, seconds=round(time.monotonic() - start, 3))

    # -- what is remembered --------------------------------------------------------------------------

    def _replacer(self, session: Session, opts: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
        from clnsod_core.masking.inference import SkyMasker
        from clnsod_core.replace import SkyReplacer

        key = (opts["weights"], opts["device"])
        if key not in self.maskers:
            self.maskers[key] = SkyMasker(opts["weights"], device=opts["device"])
        masker = self.maskers[key]
        masker.max_pixels = session.job.max_pixels
        return SkyReplacer(masker), key

    def _network(self, session: Session, replacer: Any, key: tuple[Any, ...]) -> Any:
        """The network's answer for the session's full photo, remembered by content and model."""
        from clnsod_core.arrays import as_u8

        memory_key = (session.job.digest, *key)  # by content: an unchanged layer skips the network
        if memory_key not in self.networks:
            self.networks[memory_key] = replacer.network(as_u8(session.job.photo), session.space)
            while len(self.networks) > REMEMBERED_NETWORKS:
                self.networks.popitem(last=False)
        self.networks.move_to_end(memory_key)
        return self.networks[memory_key]

    def _sky(self, spec: str, max_pixels: int, small: bool) -> Any:
        """A preset's name, or the decoded sky file. Previews get a copy reduced to what a preview can
        show, remembered (trying a 40 MP sky stays quick, going back to one costs nothing); a render
        decodes the file again and keeps nothing (a full-size 16-bit sky can be hundreds of MB)."""
        from clnsod_core.compositing.skies import PRESETS
        from clnsod_core.replace import SkyImage, load_sky

        if spec in PRESETS:
            return spec
        if not small:
            return load_sky(spec, max_pixels)
        try:
            info = os.stat(spec)
            key: tuple[Any, ...] = (spec, info.st_mtime_ns, info.st_size)
        except OSError:
            key = (spec, None, None)
        if key not in self.skies:
            sky = load_sky(spec, max_pixels)
            if isinstance(sky, SkyImage):
                sky = SkyImage(preview_copy(sky.pixels, 2 * PREVIEW_SIDE), sky.space)
            self.skies[key] = sky
            while len(self.skies) > REMEMBERED_SKIES:
                self.skies.popitem(last=False)
        self.skies.move_to_end(key)
        return self.skies[key]

    def warm_up(self) -> None:
        """Load the default model and the replacement's modules while the plugin prepares its job, so
        the first preview does not wait for them (a failure here is reported when a request needs it)."""
        try:
            from clnsod_core.masking.inference import SkyMasker
            from clnsod_core.replace import SkyReplacer  # noqa: F401 - imported for its start-up cost

            self.maskers.setdefault((None, "auto"), SkyMasker(None, device="auto"))
        except Exception:  # noqa: BLE001 - reported by the request that needs the model
            traceback.print_exc(file=sys.stderr)

    def forget(self, connection: Connection) -> None:
        """A plugin went away: its sessions end and their job folders (copies of photos) are deleted."""
        for session in [s for s in self.sessions.values() if s.owner is connection]:
            del self.sessions[session.id]
            shutil.rmtree(session.job_dir, ignore_errors=True)

    def abandon(self) -> None:
        """The editor is gone: delete every open session's job folder."""
        for session in list(self.sessions.values()):
            shutil.rmtree(session.job_dir, ignore_errors=True)


class Server:
    """Accepts plugins; their requests run one at a time on one worker thread, in order, except that a
    preview superseded by a newer one of the same session is answered ``superseded`` without work."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._queue: list[tuple[Connection, dict[str, Any]]] = []
        self._ready = threading.Condition()

    def serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._work, name="clnsod-core-worker", daemon=True).start()
        self._put(None, {"op": "warm-up"})  # type: ignore[arg-type]
        while True:
            sock, _ = listener.accept()
            if not same_user(sock):
                sock.close()
                continue
            threading.Thread(target=self._read, args=(Connection(sock),), daemon=True).start()

    def _read(self, connection: Connection) -> None:
        stream = connection.sock.makefile("rb")
        try:
            for line in stream:
                if len(line) > MAX_LINE_BYTES:
                    connection.send(error="bad request from the plugin: request line too long")
                    break
                try:
                    request = json.loads(line)
                except (ValueError, UnicodeDecodeError):
                    connection.send(error="bad request from the plugin: not a JSON line")
                    continue
                if not isinstance(request, dict):
                    connection.send(error="bad request from the plugin: not a JSON object")
                elif request.get("op") == "cancel":
                    connection.cancelled.add(request.get("request"))
                elif request.get("op") in INTERNAL_OPS:
                    connection.send(id=request.get("id"),
                                    error=f"bad request from the plugin: unknown op {request['op']!r}")
                else:
                    self._put(connection, request)
        except OSError:
            pass
        connection.closed = True
        self._put(connection, {"op": "disconnected"})

    def _put(self, connection: Connection, request: dict[str, Any]) -> None:
        with self._ready:
            self._queue.append((connection, request))
            self._ready.notify()

    def _next(self) -> tuple[Connection, dict[str, Any]]:
        with self._ready:
            while not self._queue:
                self._ready.wait()
            connection, request = self._queue.pop(0)
            session = request.get("session")
            if request.get("op") == "preview" and any(
                    other is connection and later.get("op") == "preview" and later.get("session") == session
                    for other, later in self._queue):
                connection.send(id=request.get("id"), superseded=True)
                return self._next()
            return connection, request

    def _work(self) -> None:
        while True:
            connection, request = self._next()
            if request.get("op") == "disconnected":
                self.core.forget(connection)
                continue
            if request.get("op") == "warm-up":
                self.core.warm_up()
                continue
            request_id = request.get("id")

            def progress(_event: dict[str, Any] | None = None, **event: Any) -> None:
                """Between stages: stop if cancelled, else pass progress on (None: only the check)."""
                if connection.closed or request_id in connection.cancelled:
                    raise Cancelled
                if event:
                    connection.send(id=request_id, **event)

            try:
                if request_id in connection.cancelled:
                    raise Cancelled
                answer = self.core.handle(request, connection, progress)
            except Cancelled:
                answer = {"cancelled": True}
            except RequestError as exc:
                answer = {"error": f"bad request from the plugin: {exc}"}
            except MemoryError:
                answer = {"error": "not enough memory for this image; try a smaller image or close other programs"}
            except Exception as exc:  # noqa: BLE001 - every failure must reach the editor as one line
                answer = {"error": user_message(exc)}
            connection.cancelled.discard(request_id)
            connection.send(id=request_id, **answer)


def user_message(exc: Exception) -> str:
    from clnsod_core.imaging.io import PhotoError
    from clnsod_core.weights.download import DownloadError
    from clnsod_core.weights.format import WeightsError

    if isinstance(exc, (PhotoError, WeightsError, DownloadError, ValueError, OSError)):
        return str(exc)
    traceback.print_exc(file=sys.stderr)
    return f"internal error in the CLN-SOD core: {type(exc).__name__}: {exc}"


def same_user(sock: socket.socket) -> bool:
    """Only processes of this user may talk to the core (Linux tells the peer's uid; elsewhere the
    socket's private folder is the guard)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def private_folder(path: Path) -> None:
    """The socket's folder must be this user's alone (the client creates it 0700)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SystemExit(f"error: {path} must be a folder private to this user (mode 0700)")


def listen(path: Path) -> socket.socket | None:
    """A listening socket at ``path``; None when a live core already answers there."""
    private_folder(path.parent)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            return None
        except OSError:
            path.unlink()  # a dead core's socket
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(8)
    return listener


def exit_with_editor(pid: int, core: Core, path: Path) -> None:
    """Poll the editor's process; when it is gone, clean up and exit at once."""
    def watch() -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                continue
        core.abandon()
        try:
            path.unlink()
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch, name="clnsod-editor-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clnsod_core.frontends.core_server",
                                     description="The CLN-SOD core for an editor session (started by the plugins).")
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket path, in a folder private to the user")
    parser.add_argument("--watch-pid", required=True, type=int, help="exit when this process (the editor) is gone")
    args = parser.parse_args(argv)
    from clnsod_core.runtime import tune_allocator

    tune_allocator()
    listener = listen(args.socket)
    if listener is None:
        print("a CLN-SOD core already serves this socket", file=sys.stderr)
        return 0
    core = Core()
    exit_with_editor(args.watch_pid, core, args.socket)
    print(f"CLN-SOD core {os.getpid()} serving {args.socket} for process {args.watch_pid}", file=sys.stderr, flush=True)
    Server(core).serve(listener)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
