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

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clnsod_core import __version__
from clnsod_core.arrays import as_u8
from clnsod_core.compositing.compose import foreground_gain, lowest_sky_line, sky_region_height
from clnsod_core.compositing.disclosure import stamp_label
from clnsod_core.files import write_atomic
from clnsod_core.masking.matte import sky_matte
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
GAIN_SMOOTHING = 0.1  # share of each frame's own recolour/relight gain in the steady one
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
        for frame in read_frames(info, settings.start_s, settings.end_s, grey_size=tracking_size(width, height)):
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
        self.cv2 = require_cv2()

    def run(self, info: VideoInfo, sky: SkyImage | np.ndarray | str, out_path: Path, settings: VideoSettings,
            progress: Progress | None = None) -> VideoReport:
        """Analyse, then render into ``out_path`` atomically (nothing is left there on any failure)."""
        started = time.perf_counter()
        path = analyse_camera(info, settings, progress)
        timings: dict[str, float] = {"analyse": time.perf_counter() - started}
        frames = 0

        def render(handle) -> None:  # noqa: ANN001 - a binary file
            nonlocal frames
            writer = VideoWriter(handle, info, settings.encoding, settings.start_s, settings.end_s, settings.metadata)
            try:
                for result, frame in self.frames(info, sky, path, settings, timings, progress):
                    tick = time.perf_counter()
                    writer.write(result, frame.pts)
                    timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - tick
                    frames += 1
                tick = time.perf_counter()
                writer.close()
                timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - tick
            except BaseException:
                writer.abandon()
                raise

        write_atomic(out_path, render)
        return VideoReport(frames, time.perf_counter() - started, timings,
                           sum(path.tracked) / max(1, path.frames),
                           path.broken.at_s if path.broken is not None else None)

    def mattes(self, info: VideoInfo, path: CameraPath, settings: VideoSettings,
               timings: dict[str, float] | None = None) -> Iterator[FrameMatte]:
        """Pass 2's first half: each frame with its own matte and the steady one, in order (the
        network runs on ``network_batch`` frames at a time)."""
        timings = timings if timings is not None else {}
        stabiliser = MatteStabiliser(settings.matte_smoothing)
        small = tracking_size(*info.upright_size)
        for chunk in _chunks(self._decoded(info, settings, path.frames, timings), self.network_batch):
            tick = time.perf_counter()
            guides = [as_u8(frame.image) for frame in chunk]
            probs = self.replacer.masker.predict_working_size(guides)
            tick = _timed(timings, "network", tick)
            for frame, guide, prob in zip(chunk, guides, probs, strict=True):
                single, _ = sky_matte(guide, prob, settings.options.matte)
                tick = _timed(timings, "matte", tick)
                steady = stabiliser.update(single, tracking_grey(guide, small), path.step(frame.index))
                tick = _timed(timings, "stabilise", tick)
                yield FrameMatte(frame, single, steady)

    def frames(self, info: VideoInfo, sky: SkyImage | np.ndarray | str, path: CameraPath, settings: VideoSettings,
               timings: dict[str, float], progress: Progress | None = None) -> Iterator[tuple[np.ndarray, Frame]]:
        """Pass 2: (result frame, source frame) in order, for the frames pass 1 analysed."""
        options = settings.options
        width, height = info.upright_size
        canvas: tuple[SkyCanvas, np.ndarray] | None = None
        gain: np.ndarray | None = None
        views = path.smoothed if settings.follow_camera else [np.eye(3)] * path.frames  # first frame -> frame
        for item in self.mattes(info, path, settings, timings):
            frame, matte = item.frame, item.matte
            tick = time.perf_counter()
            result = frame.image
            if matte.any():
                if canvas is None:
                    canvas = self._canvas(sky, views, frame.index, matte, width, height, options)
                placed = self._sky_for(canvas, views[frame.index], width, height)
                tick = _timed(timings, "sky", tick)
                own = foreground_gain(frame.image, matte, placed, options.harmonisation)
                gain = own if gain is None else (1 - GAIN_SMOOTHING) * gain + GAIN_SMOOTHING * own
                result = self.replacer.replace(frame.image, PlacedSky(placed), options, matte=matte, gain=gain).composite
                tick = _timed(timings, "composite", tick)
            if settings.label:
                result = stamp_label(result, settings.label)
            if progress:
                progress("replacing the sky", frame.index + 1, path.frames)
            yield result, frame

    def _decoded(self, info: VideoInfo, settings: VideoSettings, count: int,
                 timings: dict[str, float]) -> Iterator[Frame]:
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
            timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - tick
            if frame is None or frame.index >= count:
                return
            yield frame

    def _canvas(self, sky: SkyImage | np.ndarray | str, views: list[np.ndarray], index: int, matte: np.ndarray,
                width: int, height: int, options: ReplaceOptions) -> tuple[SkyCanvas, np.ndarray]:
        """The new sky placed once on a canvas covering the camera's whole path (uint16, to halve its
        memory), its horizon at the sky line of the first frame that shows sky, carried into the first
        frame's coordinates."""
        canvas = sky_canvas(views, width, height)
        bottom = lowest_sky_line(matte)
        to_first = np.linalg.inv(views[index])
        point = to_first @ np.array([width / 2, sky_region_height(height, bottom), 1.0])
        canvas_bottom = int(np.clip(point[1] / point[2] - canvas.y0, 1, canvas.height))
        placed = self.replacer.place(sky, canvas.height, canvas.width, canvas_bottom, options)
        pixels = np.empty(placed.shape, np.uint16)
        np.multiply(placed, 65535.0, out=placed)
        np.rint(placed, out=placed)
        pixels[...] = placed
        return canvas, pixels

    def _sky_for(self, canvas: tuple[SkyCanvas, np.ndarray], homography: np.ndarray, width: int,
                 height: int) -> np.ndarray:
        """The canvas as this frame sees it: (H, W, 3) float32 in [0, 1]."""
        cv2 = self.cv2
        geometry, pixels = canvas
        warped = cv2.warpPerspective(pixels, geometry.frame_to_canvas(homography), (width, height),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        return warped.astype(np.float32) * np.float32(1 / 65535)


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
