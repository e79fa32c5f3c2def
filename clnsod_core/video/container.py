"""Reading and writing video files through PyAV (FFmpeg), keeping what a videographer's clip carries.

Frames are decoded to upright RGB (the rotation a phone stores is applied, so the network sees the
sky at the top) in the colour matrix and range the stream is tagged with (untagged: BT.709 from
720 lines up, else BT.601). The writer turns results back to the stored orientation and sets the
same rotation, so a portrait clip stays portrait at its stored size; it encodes H.264 yuv420p with
each frame's own timestamp (variable frame rate survives), the source's colour tags, and copies
audio packets untouched, interleaved by time. 10-bit sources are decoded at 16 bits and written at
8; HDR (PQ/HLG) is tone-mapped to SDR BT.709 (``hdr.py``), both with a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from clnsod_core.video.hdr import HDR_TRANSFERS, tone_map_to_sdr

MAX_SIDE = 8192  # 8K: larger frames are refused (H.264's largest level, and memory)
MAX_PIXELS = 8192 * 4352
STILL_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "tiff_pipe", "bmp_pipe", "gif"}
# Audio codecs an MP4 file can hold as they are; others are re-encoded to AAC (with a warning).
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"}
# FFmpeg's enum values (libavutil/pixfmt.h) for the tags read and written here.
BT709, UNSPECIFIED, BT601 = 1, 2, 6
RANGE_LIMITED, RANGE_FULL = 1, 2
BROKEN_SLACK_S = 0.5  # a stream that ends this much before its declared duration is broken


class VideoError(Exception):
    """A video cannot be used; ``str()`` is one line: '<path>: <reason>'."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class VideoBroken(VideoError):
    """The stream breaks part-way; ``frames`` decoded frames came before the break at ``at_s`` seconds."""

    def __init__(self, path: Path | str, reason: str, frames: int, at_s: float) -> None:
        super().__init__(path, reason)
        self.frames = frames
        self.at_s = at_s


def require_av() -> Any:
    """The ``av`` module, or a VideoError saying how to install it."""
    try:
        import av
    except ImportError:
        raise VideoError("clnsod video", "video needs PyAV, which is not installed here; "
                         "install CLN-SOD with the video extra: pip install -e '.[video]'") from None
    return av


@dataclass(frozen=True)
class ColourTags:
    """The stream's colour description (FFmpeg enum values): kept on the output."""

    primaries: int
    transfer: int
    matrix: int
    range: int

    @property
    def hdr(self) -> bool:
        return self.transfer in HDR_TRANSFERS

    @property
    def matrix_name(self) -> str:
        """The swscale colour matrix for YUV <-> RGB conversions of a stream with these tags."""
        return "itu709" if self.matrix == BT709 else "bt2020" if self.matrix in (9, 10) else "itu601"


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as stored (before rotation)
    height: int
    rotation: int  # degrees counter-clockwise that make a stored frame upright (0, 90, 180, 270)
    fps: Fraction  # average frame rate
    time_base: Fraction
    start_s: float  # time of the stream's first frame
    duration_s: float | None  # declared duration of the video stream (None: unknown)
    frames: int  # declared frame count (0: unknown)
    pixel_format: str
    bit_depth: int
    colour: ColourTags
    audio: tuple[str, ...]  # codec name of each audio stream

    @property
    def end_s(self) -> float | None:
        """When the file says the video stream ends (None: unknown)."""
        return None if self.duration_s is None else self.start_s + self.duration_s

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as the clip is shown."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)


@dataclass(frozen=True)
class Frame:
    index: int  # 0 = first frame of the processed part
    pts: int  # in the stream's time_base, as decoded
    time_s: float
    image: np.ndarray  # (H, W, 3) upright RGB, uint8 (uint16 for >8-bit SDR sources)


def _open(av: Any, path: Path) -> Any:
    if not path.exists():
        raise VideoError(path, "no such file")
    if path.is_dir():
        raise VideoError(path, "is a folder, not a video")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(path, f"not a video FFmpeg can read ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _rotation(av: Any, container: Any, stream: Any, path: Path) -> tuple[int, Any]:
    """The display rotation (from the first frame's display matrix) and that first frame (or None)."""
    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation / 90.0)) % 4 * 90, frame
    except av.error.FFmpegError as exc:
        raise VideoError(path, f"the video stream cannot be decoded ({_reason(exc)})") from None
    return 0, None


def probe(path: Path) -> VideoInfo:
    """What ``path`` holds; VideoError when it is not a video this tool can process."""
    av = require_av()
    container = _open(av, path)
    try:
        if container.format.name in STILL_FORMATS or not container.streams.video:
            still = container.format.name in STILL_FORMATS
            raise VideoError(path, "is a still image, not a video; use clnsod replace" if still
                             else "has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if width <= 0 or height <= 0:
            raise VideoError(path, "the video stream has no frame size")
        if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
            raise VideoError(path, f"frames of {width}x{height} are larger than this tool handles "
                             f"(at most {MAX_SIDE} px a side and {MAX_PIXELS / 1e6:.0f} MP)")
        rotation, first = _rotation(av, container, stream, path)
        if first is None:
            raise VideoError(path, "has no video frames (zero-length clip)")
        fmt = first.format
        depth = max((c.bits for c in fmt.components), default=8)
        tags = ColourTags(int(first.color_primaries), int(first.color_trc), int(first.colorspace),
                          int(first.color_range) or (RANGE_FULL if fmt.name.startswith("yuvj") else RANGE_LIMITED))
        if tags.matrix in (UNSPECIFIED, 0) or tags.matrix > 14:
            tags = ColourTags(tags.primaries, tags.transfer, BT709 if max(width, height) >= 1280 else BT601, tags.range)
        time_base = stream.time_base or Fraction(1, 90000)
        duration = float(stream.duration * time_base) if stream.duration else (
            container.duration / 1e6 if container.duration else None)
        fps = stream.average_rate or stream.guessed_rate or Fraction(30)
        audio = tuple(s.codec_context.name for s in container.streams.audio)
        start = float(first.pts * time_base) if first.pts is not None else 0.0
        return VideoInfo(path, width, height, rotation, Fraction(fps), Fraction(time_base), start, duration,
                         int(stream.frames or 0), fmt.name, depth, tags, audio)
    finally:
        container.close()


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, rotation // 90)) if rotation else image


def _stored(image: np.ndarray, rotation: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, -(rotation // 90))) if rotation else image


def read_frames(info: VideoInfo, start_s: float = 0.0, end_s: float | None = None,
                grey_size: tuple[int, int] | None = None) -> Iterator[Frame]:
    """Upright RGB frames whose time lies in [start_s, end_s), in order; with ``grey_size`` (upright
    width, height), small grey frames instead (scaled by FFmpeg, for tracking the camera). Raises
    VideoBroken when the stream breaks (a decoding error, or frames ending well before the declared
    duration)."""
    av = require_av()
    container = _open(av, info.path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    deep_source = info.bit_depth > 8
    to_rgb: dict[str, Any] = {"src_colorspace": info.colour.matrix_name,
                              "src_color_range": "JPEG" if info.colour.range == RANGE_FULL else "MPEG"}
    index, last_time = 0, None
    try:
        if start_s > 0:
            container.seek(int(start_s / info.time_base), stream=stream, backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                time_s = float(frame.pts * info.time_base)
                if time_s < start_s - 1e-6:
                    continue
                if end_s is not None and time_s >= end_s - 1e-6:
                    break
                image = (_to_rgb(frame, info, deep_source, to_rgb) if grey_size is None
                         else _to_grey(frame, info, grey_size))
                yield Frame(index, frame.pts, time_s, _upright(image, info.rotation))
                index += 1
                last_time = time_s
        except av.error.FFmpegError as exc:
            at = last_time if last_time is not None else start_s
            raise VideoBroken(info.path, f"the video stream breaks after {_clock(at)} (frame {index}): "
                              f"{_reason(exc)}", index, at) from None
        if index == 0:
            raise VideoError(info.path, "no video frames in the chosen part of the clip" if start_s > 0 or end_s
                             else "has no video frames (zero-length clip)")
        end = info.end_s if end_s is None or info.end_s is None else min(end_s, info.end_s)
        if end is not None and last_time is not None and last_time + BROKEN_SLACK_S < end - float(1 / info.fps):
            raise VideoBroken(info.path, f"the video stream breaks after {_clock(last_time)} (frame {index}); "
                              f"the file says it lasts until {_clock(end)}", index, last_time)
    finally:
        container.close()


def _to_rgb(frame: Any, info: VideoInfo, deep_source: bool, to_rgb: dict[str, Any]) -> np.ndarray:
    if info.colour.hdr:
        return tone_map_to_sdr(frame.to_ndarray(format="rgb48le", **to_rgb), info.colour.transfer)
    return frame.to_ndarray(format="rgb48le" if deep_source else "rgb24", **to_rgb)


def _to_grey(frame: Any, info: VideoInfo, size: tuple[int, int]) -> np.ndarray:
    width, height = (size[1], size[0]) if info.rotation % 180 else size
    return frame.to_ndarray(width=width, height=height, format="gray", interpolation="AREA")


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


def source_warnings(info: VideoInfo) -> list[str]:
    """What the user should know before the clip is processed (said once, as warnings)."""
    said = []
    if info.colour.hdr:
        said.append(f"{info.path}: HDR video ({'PQ' if info.colour.transfer == 16 else 'HLG'}) is tone-mapped "
                    "to SDR BT.709 and written as 8-bit H.264")
    elif info.bit_depth > 8:
        said.append(f"{info.path}: {info.bit_depth}-bit video is processed at 16 bits and written as 8-bit "
                    "H.264 (yuv420p)")
    for codec in info.audio:
        if codec not in MP4_AUDIO:
            said.append(f"{info.path}: {codec} audio cannot go into MP4 as it is; it is re-encoded to AAC 256 kb/s")
    w, h = info.width, info.height
    if w % 2 or h % 2:
        said.append(f"{info.path}: frames of {w}x{h} are padded to {w + w % 2}x{h + h % 2} "
                    "(H.264 yuv420p needs even sizes); the added edge repeats the last row/column")
    return said


@dataclass(frozen=True)
class Encoding:
    crf: int = 18  # x264 constant rate factor: 0 lossless, 18 visually lossless, 23 x264's default
    # x264 speed preset. "faster" matched "fast" in quality per bit on our clips (PSNR at equal bitrate
    # within 0.15 dB either way, CRF 16-20) for ~35 % less encoding time, the largest single cost here.
    preset: str = "faster"


class VideoWriter:
    """H.264 yuv420p MP4 into an open binary file (the caller makes it atomic), with the source's
    timing, rotation, colour tags and audio. Frames are given upright, with their source pts."""

    def __init__(self, handle: IO[bytes], info: VideoInfo, encoding: Encoding, start_s: float = 0.0,
                 end_s: float | None = None, metadata: dict[str, str] | None = None) -> None:
        av = self._av = require_av()
        self.info = info
        self.output = av.open(handle, mode="w", format="mp4")
        for key, value in (metadata or {}).items():
            self.output.metadata[key] = value
        stream = self.output.add_stream("libx264", rate=info.fps)
        w, h = info.width, info.height
        stream.width, stream.height = w + w % 2, h + h % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        stream.thread_type = "AUTO"
        stream.options = {"crf": str(encoding.crf), "preset": encoding.preset}
        tags = self.tags = self._output_tags()
        ctx = stream.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = (
            tags.primaries, tags.transfer, tags.matrix, tags.range)
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        self.video = stream
        self.offset = int(round(start_s / info.time_base)) if start_s > 0 else 0
        self.last_pts: int | None = None
        self._audio = _AudioCopy(av, info, self.output, start_s, end_s)

    def _output_tags(self) -> ColourTags:
        tags = self.info.colour
        if tags.hdr:  # tone-mapped to SDR
            return ColourTags(BT709, BT709, BT709, RANGE_LIMITED)
        return ColourTags(tags.primaries, tags.transfer, tags.matrix, RANGE_LIMITED)

    def write(self, image: np.ndarray, pts: int) -> None:
        """One upright RGB result (uint8 or uint16) with its source pts."""
        av = self._av
        stored = _stored(image, self.info.rotation)
        h, w = stored.shape[:2]
        if w % 2 or h % 2:
            stored = np.pad(stored, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        fmt = "rgb24" if stored.dtype == np.uint8 else "rgb48le"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(stored), format=fmt)
        frame = frame.reformat(format="yuv420p", dst_colorspace=self.tags.matrix_name, dst_color_range="MPEG")
        out_pts = pts - self.offset
        if self.last_pts is not None and out_pts <= self.last_pts:
            out_pts = self.last_pts + 1  # the encoder needs strictly increasing timestamps
        self.last_pts = out_pts
        frame.pts, frame.time_base = out_pts, self.info.time_base
        for packet in self.video.encode(frame):
            self._mux_video(packet)

    def _mux_video(self, packet: Any) -> None:
        if packet.dts is not None:
            self._audio.mux_until(float(packet.dts * packet.time_base))
        self.output.mux(packet)

    def close(self) -> None:
        """Flush the encoder, the rest of the audio, and the file's index."""
        for packet in self.video.encode(None):
            self._mux_video(packet)
        self._audio.mux_until(None)
        self._audio.flush()
        self._audio.close()
        self.output.close()

    def abandon(self) -> None:
        """Close without finishing (the caller deletes the temp file)."""
        self._audio.close()
        try:
            self.output.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass


class _AudioCopy:
    """The source's audio streams demuxed from a second handle on the file and muxed beside the
    video in time order: packets are copied untouched (re-encoded to AAC only when MP4 cannot hold
    the codec). Packets outside [start_s, end_s) are dropped, the rest shifted by start_s."""

    def __init__(self, av: Any, info: VideoInfo, output: Any, start_s: float, end_s: float | None) -> None:
        self.start_s, self.end_s = start_s, end_s
        self.source = av.open(str(info.path), metadata_errors="ignore") if info.audio else None
        self.streams: dict[int, tuple[Any, Any]] = {}  # source index -> (output stream, re-encoder or None)
        self.pending: Any = None
        self.output = output
        if self.source is None:
            return
        for stream in self.source.streams.audio:
            if stream.codec_context.name in MP4_AUDIO:
                self.streams[stream.index] = (output.add_stream_from_template(stream), None)
            else:  # (said by source_warnings)
                out = output.add_stream("aac", rate=stream.codec_context.sample_rate)
                out.bit_rate = 256_000
                if stream.codec_context.layout is not None:
                    out.layout = stream.codec_context.layout
                self.streams[stream.index] = (out, stream)
        if start_s > 0:
            self.source.seek(int(start_s * 1_000_000), backward=True)
        self.packets = self.source.demux(*self.source.streams.audio)

    def mux_until(self, until_s: float | None) -> None:
        """Mux every audio packet up to ``until_s`` seconds of output time (None: all that is left)."""
        if self.source is None:
            return
        while True:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                return
            if packet.dts is None or packet.pts is None:
                continue  # a demuxer's flush packet
            time_s = float(packet.pts * packet.time_base)
            if self.start_s > 0 and time_s < self.start_s - 1e-6:  # (without --start, priming packets stay)
                continue
            if self.end_s is not None and time_s >= self.end_s - 1e-6:
                continue
            if until_s is not None and time_s - self.start_s > until_s:
                self.pending = packet
                return
            self._mux(packet)

    def _mux(self, packet: Any) -> None:
        out, decoder = self.streams[packet.stream.index]
        shift = int(round(self.start_s / packet.time_base)) if self.start_s > 0 else 0
        if decoder is None:
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = out
            self.output.mux(packet)
            return
        for frame in decoder.decode(packet):
            frame.pts = None
            for encoded in out.encode(frame):
                self.output.mux(encoded)

    def flush(self) -> None:
        """What the re-encoders still hold."""
        for out, decoder in self.streams.values():
            if decoder is not None:
                for encoded in out.encode(None):
                    self.output.mux(encoded)

    def close(self) -> None:
        """Close the second handle on the source (the output is the writer's)."""
        if self.source is not None:
            self.source.close()
            self.source = None
