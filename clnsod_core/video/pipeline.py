"""Video sky replacement: the clip is analysed (the camera's path), then rendered frame by frame
through the one replacement API (``SkyReplacer.replace``) with a matte and a sky kept steady in time.

Pass 1 decodes small grey frames and tracks the camera (``motion.py``); the path is smoothed and the
canvas that the new sky is placed on is sized to cover every frame's view (``sky_path.py``). Pass 2
decodes full frames, runs the network on several frames at once, refines each frame's matte, fuses
it with the previous one moved with the camera (``temporal.py``), shows the canvas through the
frame's homography, keeps the foreground's recolour/relight gain steady, and encodes. A clip that
breaks part-way fails in pass 1, before any output exists (or, when truncation is allowed, is
rendered up to the break).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from clnsod_core import __version__
from clnsod_core.arrays import as_u8, from_unit
from clnsod_core.compositing.compose import foreground_gain, lowest_sky_line, sky_region_height
from clnsod_core.compositing.disclosure import stamp_label
from clnsod_core.files import write_atomic
from clnsod_core.masking.matte import MatteModel, sky_matte_model
from clnsod_core.replace import PlacedSky, ReplaceOptions, SkyImage, SkyReplacer
from clnsod_core.video.container import (
    Encoding,
    Frame,
    VideoBroken,
    VideoInfo,
    VideoWriter,
    read_frames,
)
from clnsod_core.video.motion import CameraTracker, require_cv2, tracking_size
from clnsod_core.video.sky_path import SkyCanvas, sky_canvas, smooth_path
from clnsod_core.video.temporal import HISTORY_WEIGHT, MatteStabiliser, tracking_grey

NETWORK_BATCH = 4  # frames per network pass
# The matte's colour guide is at most this long (as in the editors' live preview): the full-resolution
# pass still follows every colour edge, and a 4K frame is refined in the time a photo preview takes.
VIDEO_GUIDE_SIDE = 640
GAIN_SAMPLE_STEP = 8  # the recolour/relight gain is measured on every 8th pixel (it is smoothed over frames)
FLOAT_CANVAS_BYTES = 256 * 2**20  # a larger sky canvas is kept as uint16
GAIN_SMOOTHING = 0.1  # share of each frame's own recolour/relight gain in the steady one
T = TypeVar("T")
Progress = Callable[[str, int, int | None], None]  # (stage, frames done, frames expected or None)


@dataclass(frozen=True)
class VideoSettings:
    options: ReplaceOptions = field(default_factory=ReplaceOptions)
    encoding: Encoding = field(default_factory=Encoding)
    start_s: float = 0.0
    end_s: float | None = None
    allow_truncated: bool = False
    label: str | None = None  # stamped on every frame
    matte_smoothing: float = HISTORY_WEIGHT  # share of the moved previous matte kept (0: each frame on its own)
    follow_camera: bool = True  # move the sky with the camera (False: fixed in the frame; the matte still follows)
    metadata: dict[str, str] = field(default_factory=dict)  # container tags (the disclosure)


@dataclass
class CameraPath:
    """Pass 1's answer: the homography first frame -> each frame, measured and smoothed."""

    measured: list[np.ndarray]
    smoothed: list[np.ndarray]
    tracked: list[bool]  # False where the motion was carried on (no features)
    broken: VideoBroken | None = None  # the break the clip was cut at (truncation allowed)

    @property
    def frames(self) -> int:
        return len(self.measured)

    def step(self, index: int) -> np.ndarray | None:
        """The camera's motion from frame index-1 to index (full-resolution pixels); None for the first."""
        if index == 0:
            return None
        return self.measured[index] @ np.linalg.inv(self.measured[index - 1])


@dataclass
class FrameMatte:
    frame: Frame
    single: np.ndarray  # this frame's own matte
    matte: np.ndarray  # the steady matte the frame is composited with


@dataclass
class VideoReport:
    frames: int
    seconds: float
    stage_seconds: dict[str, float]
    tracked_share: float  # frames whose camera motion was measured
    truncated_at_s: float | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def expected_frames(info: VideoInfo, settings: VideoSettings) -> int | None:
    """About how many frames the part to process has (for progress), None when unknown."""
    end = settings.end_s if settings.end_s is not None else info.end_s
    if end is None:
        return info.frames or None
    return max(1, round((end - max(settings.start_s, info.start_s)) * float(info.fps)))


def analyse_camera(info: VideoInfo, settings: VideoSettings, progress: Progress | None = None) -> CameraPath:
    """Pass 1: the camera's path over the part of the clip to process."""
    width, height = info.upright_size
    tracker = CameraTracker(width, height)
    measured: list[np.ndarray] = []
    tracked: list[bool] = []
    broken = None
    total = expected_frames(info, settings)
    try:
        frames = read_frames(info, settings.start_s, settings.end_s, grey_size=tracking_size(width, height))
        for frame in _read_ahead(frames):  # decoding overlaps the tracking
            homography, ok = tracker.update(frame.image)
            measured.append(homography)
            tracked.append(ok)
            if progress:
                progress("analysing the camera's motion", frame.index + 1, total)
    except VideoBroken as exc:
        if not settings.allow_truncated or exc.frames == 0:
            raise
        broken = exc
    return CameraPath(measured, smooth_path(measured, width, height), tracked, broken)


class VideoReplacer:
    """Replaces the sky of a clip; the replacer's network and options are those of ``replace``."""

    def __init__(self, replacer: SkyReplacer, network_batch: int = NETWORK_BATCH) -> None:
        self.replacer = replacer
        self.network_batch = network_batch
        require_cv2()

    def run(self, info: VideoInfo, sky: SkyImage | np.ndarray | str, out_path: Path, settings: VideoSettings,
            progress: Progress | None = None) -> VideoReport:
        """Analyse, then render into ``out_path`` atomically (nothing is left there on any failure).
        Rendering runs on two threads of about equal work: the network and each frame's matte model on
        this one; the matte's full-resolution pass, the steady matte, compositing and encoding of the
        frame before on the other (numpy's, OpenCV's and x264's work overlaps torch's); a third decodes
        ahead of them."""
        started = time.perf_counter()
        path = analyse_camera(info, settings, progress)
        timings: dict[str, float] = {"analyse": time.perf_counter() - started}
        frames = 0

        def render(handle) -> None:  # noqa: ANN001 - a binary file
            writer = VideoWriter(handle, info, settings.encoding, settings.start_s, settings.end_s, settings.metadata)
            steady = self._steadier(info, path, settings, timings)
            compositor = Compositor(self.replacer, info, sky, path, settings, timings)

            def finish(item: tuple[Frame, np.ndarray, MatteModel | None]) -> None:
                nonlocal frames
                result = compositor(steady(*item))
                tick = time.perf_counter()
                writer.write(result, item[0].pts)
                _timed(timings, "encode", tick)
                frames += 1
                if progress:
                    progress("replacing the sky", frames, path.frames)

            try:
                with _cores_split(compositor.cv2):
                    _pipelined(self._matte_models(info, path, settings, timings), finish)
                tick = time.perf_counter()
                writer.close()
                _timed(timings, "encode", tick)
            except BaseException:
                writer.abandon()
                raise

        write_atomic(out_path, render)
        return VideoReport(frames, time.perf_counter() - started, timings,
                           sum(path.tracked) / max(1, path.frames),
                           path.broken.at_s if path.broken is not None else None)

    def mattes(self, info: VideoInfo, path: CameraPath, settings: VideoSettings,
               timings: dict[str, float] | None = None) -> Iterator[FrameMatte]:
        """Pass 2's first half on one thread: each frame with its own matte and the steady one, in order."""
        timings = timings if timings is not None else {}
        steady = self._steadier(info, path, settings, timings)
        for frame, guide, model in self._matte_models(info, path, settings, timings):
            yield steady(frame, guide, model)

    def _matte_models(self, info: VideoInfo, path: CameraPath, settings: VideoSettings,
                      timings: dict[str, float]) -> Iterator[tuple[Frame, np.ndarray, MatteModel | None]]:
        """Each frame with its 8-bit guide and its matte's model (None: no sky), in order; the network
        runs on ``network_batch`` frames at a time."""
        matte_options = replace_fields(settings.options.matte,
                                       guide_side=min(settings.options.matte.guide_side, VIDEO_GUIDE_SIDE))
        frames = _read_ahead(_decoded(info, settings, path.frames, timings), depth=self.network_batch)
        for chunk in _chunks(frames, self.network_batch):  # (decoded on a third thread)
            tick = time.perf_counter()
            guides = [as_u8(frame.image) for frame in chunk]
            probs = self.replacer.masker.predict_working_size(guides)
            tick = _timed(timings, "network", tick)
            for frame, guide, prob in zip(chunk, guides, probs, strict=True):
                model = sky_matte_model(guide, prob, matte_options)
                _timed(timings, "matte", tick)
                yield frame, guide, model
                tick = time.perf_counter()  # (not counting the wait for the other thread)

    @staticmethod
    def _steadier(info: VideoInfo, path: CameraPath, settings: VideoSettings,
                  timings: dict[str, float]) -> Callable[[Frame, np.ndarray, MatteModel | None], FrameMatte]:
        """A function that takes the frames' matte models in order and gives each frame its own matte
        (the model's full-resolution pass) and its steady one."""
        stabiliser = MatteStabiliser(settings.matte_smoothing)
        small = tracking_size(*info.upright_size)

        def steady(frame: Frame, guide: np.ndarray, model: MatteModel | None) -> FrameMatte:
            tick = time.perf_counter()
            single = model.apply(guide) if model is not None else np.zeros(guide.shape[:2], np.float32)
            tick = _timed(timings, "matte full size", tick)  # (a key of its own: the threads share the dict)
            matte = stabiliser.update(single, tracking_grey(guide, small), path.step(frame.index))
            _timed(timings, "stabilise", tick)
            return FrameMatte(frame, single, matte)

        return steady


class Compositor:
    """Pass 2's second half: the new sky, placed once on a canvas covering the camera's whole path and
    shown through each frame's smoothed homography, composited over each frame through the one
    replacement API with the steady matte and a steady recolour/relight gain."""

    def __init__(self, replacer: SkyReplacer, info: VideoInfo, sky: SkyImage | np.ndarray | str, path: CameraPath,
                 settings: VideoSettings, timings: dict[str, float] | None = None) -> None:
        self.cv2 = require_cv2()
        self.replacer, self.sky, self.settings = replacer, sky, settings
        self.width, self.height = info.upright_size
        # First frame -> each frame; a fixed sky stays where the first frame has it.
        self.views = path.smoothed if settings.follow_camera else [np.eye(3)] * path.frames
        self.timings = timings if timings is not None else {}
        self.canvas: tuple[SkyCanvas, np.ndarray] | None = None
        self.gain: np.ndarray | None = None

    def __call__(self, item: FrameMatte) -> np.ndarray:
        """The finished frame (the source frame itself where it shows no sky)."""
        frame, matte, options = item.frame, item.matte, self.settings.options
        tick = time.perf_counter()
        result = frame.image
        if matte.any():
            if self.canvas is None:
                self.canvas = self._canvas(frame.index, matte)
            placed = self._sky_for(self.views[frame.index])
            tick = _timed(self.timings, "sky", tick)
            step = GAIN_SAMPLE_STEP
            own = foreground_gain(frame.image[::step, ::step], matte[::step, ::step], placed[::step, ::step],
                                  options.harmonisation)
            self.gain = own if self.gain is None else (1 - GAIN_SMOOTHING) * self.gain + GAIN_SMOOTHING * own
            result = self.replacer.replace(frame.image, PlacedSky(placed), options, matte=matte, gain=self.gain).composite
            _timed(self.timings, "composite", tick)
        if self.settings.label:
            result = stamp_label(result, self.settings.label)
        return result

    def _canvas(self, index: int, matte: np.ndarray) -> tuple[SkyCanvas, np.ndarray]:
        """The new sky placed once on a canvas covering every view, its horizon at the sky line of the
        first frame that shows sky, carried into the first frame's coordinates. Kept as float32 up to
        ``FLOAT_CANVAS_BYTES`` (OpenCV warps it ~1.5x faster than uint16, and the frames need no
        conversion), as uint16 beyond (half the memory)."""
        width, height = self.width, self.height
        canvas = sky_canvas(self.views, width, height)
        bottom = lowest_sky_line(matte)
        point = np.linalg.inv(self.views[index]) @ np.array([width / 2, sky_region_height(height, bottom), 1.0])
        canvas_bottom = int(np.clip(point[1] / point[2] - canvas.y0, 1, canvas.height))
        placed = self.replacer.place(self.sky, canvas.height, canvas.width, canvas_bottom, self.settings.options)
        return canvas, placed if placed.nbytes <= FLOAT_CANVAS_BYTES else from_unit(placed, np.dtype(np.uint16))

    def _sky_for(self, view: np.ndarray) -> np.ndarray:
        """The canvas as a frame with this view sees it: (H, W, 3) float32 in [0, 1]."""
        cv2 = self.cv2
        geometry, pixels = self.canvas  # type: ignore[misc]
        warped = cv2.warpPerspective(pixels, geometry.frame_to_canvas(view), (self.width, self.height),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        if warped.dtype == np.float32:
            return warped
        return np.multiply(warped, np.float32(1 / 65535), dtype=np.float32)  # one pass, no uint16 -> float copy


def _decoded(info: VideoInfo, settings: VideoSettings, count: int, timings: dict[str, float]) -> Iterator[Frame]:
    """The frames pass 1 analysed (a truncated clip stops at its break), with decoding timed."""
    frames = read_frames(info, settings.start_s, settings.end_s)
    while True:
        tick = time.perf_counter()
        try:
            frame = next(frames, None)
        except VideoBroken as exc:
            if exc.frames < count:  # pass 1 read further than this: the file changed under us
                raise
            frame = None
        _timed(timings, "decode", tick)
        if frame is None or frame.index >= count:
            return
        yield frame


_DONE = object()


def _pipelined(items: Iterator[T], work: Callable[[T], None], depth: int = 2) -> None:
    """``work(item)`` for each item, in order, on a second thread while this one produces the next
    items (at most ``depth`` waiting); the first failure on either thread is raised here."""
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    failures: list[BaseException] = []

    def worker() -> None:
        while True:
            item = waiting.get()
            if item is _DONE:
                return
            if not failures:
                try:
                    work(item)  # type: ignore[arg-type]
                except BaseException as exc:  # noqa: BLE001 - handed to the producing thread
                    failures.append(exc)

    thread = threading.Thread(target=worker, name="clnsod-video-compositor", daemon=True)
    thread.start()
    try:
        for item in items:
            if failures:
                break
            waiting.put(item)
    finally:
        waiting.put(_DONE)
        thread.join()
    if failures:
        raise failures[0]


@contextmanager
def _cores_split(cv2) -> Iterator[None]:  # noqa: ANN001 - the cv2 module
    """Half the threads to PyTorch (the network and matte models on this thread), the rest to OpenCV
    (the other thread's warps): more threads than cores leave each pool waiting on the other's cores
    (measured at 2 cores: the matte took 1.8x as long with both pools at 2 threads)."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    half = max(1, torch_threads // 2)
    torch.set_num_threads(half)
    cv2.setNumThreads(max(1, torch_threads - half))
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


def _read_ahead(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """``items`` produced on a second thread, at most ``depth`` ahead of the caller; an exception
    they raise reaches the caller after the items before it, as it would without the thread."""
    waiting: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                waiting.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        end: tuple[bool, object] = (False, None)
        try:
            for item in items:
                if not hand_over((True, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            end = (False, exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        hand_over(end)

    thread = threading.Thread(target=produce, name="clnsod-video-reader", daemon=True)
    thread.start()
    try:
        while True:
            more, value = waiting.get()
            if not more:
                if value is not None:
                    raise value  # type: ignore[misc]
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def _timed(timings: dict[str, float], stage: str, start: float) -> float:
    """Add the time since ``start`` to ``stage``; returns now."""
    now = time.perf_counter()
    timings[stage] = timings.get(stage, 0.0) + now - start
    return now


def _chunks(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    chunk: list[Frame] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def disclosure_metadata(sky_name: str, when: str, label: str | None) -> dict[str, str]:
    """MP4 tags saying the sky was replaced (the video counterpart of the photos' XMP)."""
    text = f"Sky replaced by CLN-SOD {__version__} (sky: {sky_name}) at {when}"
    return {"comment": text + (f"; label: {label}" if label else ""), "encoder": f"CLN-SOD {__version__}"}
