"""Clips with known camera motion and known sky, for the video benchmarks and tests.

A virtual camera looks at a real photo as at the world seen from one point: the photo is the image
of a reference camera (70 degree field of view), and each frame is that world seen by a camera
rotated by yaw (pan), pitch (tilt) and roll and zoomed; frame = K_t R_t K_photo^-1 (photo), so the
true homography from the first frame to every frame is known, as it is for a sky at infinity. Each
frame gets sensor noise and a JPEG round trip; writing the clip with PyAV adds H.264's own loss.
The photo's sky can be replaced by a featureless gradient (then only the land has features), and a
dark "bird" can fly across the sky (a moving object the matte must follow without lag).
Deterministic for a seed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PHOTO_FOV_DEG = 70.0
VIEW_SHARE = 0.6  # at zoom 1 a frame shows this share of the photo's width
MOTIONS = ("static", "pan", "tilt", "roll", "zoom", "handheld")


@dataclass
class Clip:
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB
    truth: list[np.ndarray]  # homography first frame -> frame t (frame pixels)
    masks: list[np.ndarray] | None  # (H, W) float32 sky coverage, 1 = sky (when the photo's mask is known)
    moving: list[np.ndarray]  # (H, W) bool: pixels of moving objects in each frame
    fps: Fraction


def camera_angles(motion: str, count: int, fps: float, seed: int = 0) -> np.ndarray:
    """(count, 4): yaw, pitch, roll (degrees) and zoom of each frame for a named motion."""
    t = np.arange(count) / fps
    duration = max(t[-1], 1e-6) if count > 1 else 1.0
    ramp = 0.5 - 0.5 * np.cos(np.pi * t / duration)  # eases in and out
    angles = np.zeros((count, 4))
    angles[:, 3] = 1.0
    if motion == "pan":
        angles[:, 0] = 12.0 * ramp
    elif motion == "tilt":
        angles[:, 1] = -6.0 * ramp
    elif motion == "roll":
        angles[:, 2] = 8.0 * ramp
    elif motion == "zoom":
        angles[:, 3] = 1.0 + 0.35 * ramp
    elif motion == "handheld":
        rng = np.random.default_rng(seed)
        for axis, size in ((0, 1.5), (1, 1.0), (2, 0.8)):
            phases, freqs = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.2, 1.2, 3)
            angles[:, axis] = size * sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, phases)) / 3
        angles[:, 0] += 6.0 * ramp  # a slow pan under the shake
        angles[:, 3] = 1.0 + 0.1 * ramp
    elif motion != "static":
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    return angles


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _intrinsics(focal: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]], np.float64)


def gradient_sky(photo: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """The photo with its sky (coverage ``sky``, 1 = sky) replaced by a smooth, featureless blue gradient."""
    h, w = sky.shape
    rows = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top, horizon = np.array([70, 120, 200], np.float32), np.array([185, 210, 235], np.float32)
    gradient = np.broadcast_to(top + (horizon - top) * rows, (h, w, 3))
    out = gradient * sky[..., None] + photo.astype(np.float32) * (1 - sky[..., None])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_clip(photo: np.ndarray, size: tuple[int, int], motion: str, seconds: float = 2.0, fps: float = 30.0,
                sky: np.ndarray | None = None, bird: bool = False, noise: float = 2.0, jpeg: int = 85,
                seed: int = 0, look_at: float = 0.5, view_share: float = VIEW_SHARE) -> Clip:
    """A clip of ``size`` (width, height) over ``photo`` (uint8 RGB); ``sky``: the photo's sky coverage
    (1 = sky), which gives the true mask of every frame; ``look_at``: the photo row (as a share of its
    height) the first frame is centred on; ``view_share``: the share of the photo's width a frame shows."""
    width, height = size
    count = max(1, round(seconds * fps))
    # Resample the photo so that one frame pixel is about one photo pixel at zoom 1 (no aliasing).
    factor = width / (view_share * photo.shape[1])
    source = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    sky_source = None if sky is None else cv2.resize(sky.astype(np.float32), (source.shape[1], source.shape[0]),
                                                     interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    ph, pw = source.shape[:2]
    focal = pw / (2 * np.tan(np.radians(PHOTO_FOV_DEG) / 2))
    k_photo = _intrinsics(focal, pw / 2 - 0.5, look_at * ph - 0.5)
    rng = np.random.default_rng(seed)
    frames, truth, masks, moving = [], [], [], []
    first = None
    for yaw, pitch, roll, zoom in camera_angles(motion, count, fps, seed):
        k_frame = _intrinsics(focal * zoom, width / 2 - 0.5, height / 2 - 0.5)
        to_frame = k_frame @ _rotation(yaw, pitch, roll) @ np.linalg.inv(k_photo)
        first = to_frame if first is None else first
        truth.append(to_frame @ np.linalg.inv(first))
        frame = cv2.warpPerspective(source, to_frame, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = None if sky_source is None else cv2.warpPerspective(sky_source, to_frame, (width, height),
                                                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        occupied = np.zeros((height, width), bool)
        if bird:
            occupied = _draw_bird(frame, len(frames), count, width, height)
            if mask is not None:
                mask[occupied] = 0.0
        noisy = frame.astype(np.float32) + rng.normal(0, noise, frame.shape).astype(np.float32)
        frames.append(_jpeg(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), jpeg))
        if mask is not None:
            masks.append(mask)
        moving.append(occupied)
    return Clip(frames, truth, masks if sky is not None else None, moving, Fraction(fps).limit_denominator(1001))


def _draw_bird(frame: np.ndarray, index: int, count: int, width: int, height: int) -> np.ndarray:
    """A dark gliding shape crossing the upper sky left to right; returns its pixels."""
    x = int(width * (0.1 + 0.8 * index / max(1, count - 1)))
    y = int(height * 0.18)
    mask = np.zeros((height, width), np.uint8)
    size = max(4, width // 40)
    cv2.ellipse(mask, (x, y), (size, max(2, size // 3)), 0, 0, 360, 1, -1)
    cv2.ellipse(mask, (x - size // 2, y - size // 3), (size // 2, max(1, size // 6)), -30, 0, 360, 1, -1)
    cv2.ellipse(mask, (x + size // 2, y - size // 3), (size // 2, max(1, size // 6)), 30, 0, 360, 1, -1)
    occupied = mask.astype(bool)
    frame[occupied] = (35, 30, 30)
    return occupied


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def write_clip(frames: list[np.ndarray], path: Path, fps: Fraction, crf: int = 16, rotation: int = 0,
               audio_seconds: float = 0.0, timestamps: list[float] | None = None, audio_codec: str = "aac",
               audio_layout: str = "mono") -> None:
    """Encode ``frames`` (upright RGB) to H.264 with PyAV: ``rotation`` stores them turned so that a
    player (and the reader) rotates them back; ``audio_seconds`` adds a tone (``audio_codec``, e.g.
    "pcm_s16le" in a .mov as cameras record); ``timestamps`` (seconds) give a variable frame rate."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stored = [np.ascontiguousarray(np.rot90(f, -(rotation // 90))) for f in frames]
        stream.height, stream.width = stored[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        tick = Fraction(1, 90000)  # (the muxer may change stream.time_base once writing starts)
        stream.time_base = stream.codec_context.time_base = tick
        stream.codec_context.colorspace = 1
        stream.codec_context.color_primaries = 1
        stream.codec_context.color_trc = 1
        if rotation:
            stream.set_display_rotation(rotation)
        audio = None
        if audio_seconds > 0:
            audio = container.add_stream(audio_codec, rate=48000)
            audio.layout = audio_layout
        for index, image in enumerate(stored):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                format="yuv420p", dst_colorspace="itu709", dst_color_range="MPEG")
            seconds = timestamps[index] if timestamps is not None else index / float(fps)
            frame.pts, frame.time_base = round(seconds * 90000), tick
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio is not None:
            write_tone(container, audio, audio_seconds)


def write_tone(container, stream, seconds: float) -> None:  # noqa: ANN001 - PyAV output container and stream
    """``seconds`` of a 440 Hz tone into an open audio ``stream``, 1024 samples a frame, then flushed;
    as planar floats or packed 16-bit samples, whichever the stream's encoder takes."""
    import av

    ctx = stream.codec_context
    rate, layout = ctx.sample_rate, ctx.layout
    channels = layout.nb_channels
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * rate)) / rate)
    planar = ctx.format.name == "fltp"
    for start in range(0, len(tone), 1024):
        part = tone[start:start + 1024]
        if planar:
            data, fmt = np.repeat(part[None].astype(np.float32), channels, axis=0), "fltp"
        else:
            data, fmt = np.repeat((part * 32767).astype(np.int16), channels)[None], "s16"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout.name)
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
