"""``clnsod video``: one clip, a new sky that stays at infinity, an MP4 with the source's timing and audio."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from clnsod_core.frontends.cli.common import ensure_writable_dir
from clnsod_core.frontends.cli.options import REPLACE_GROUPS, cli_options
from clnsod_core.frontends.cli.runners import (
    REPLACED_AT,
    disclosure_flags,
    load_replacer,
    load_sky_or_fail,
    sky_label,
)
from clnsod_core.video.container import (
    Encoding,
    VideoBroken,
    VideoError,
    probe,
    require_av,
    source_warnings,
)
from clnsod_core.video.motion import require_cv2
from clnsod_core.video.temporal import HISTORY_WEIGHT

VIDEO_SUFFIXES = (".mp4", ".m4v")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
_CLOCK = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)$")


def parse_time(text: str | None) -> float | None:
    """Seconds from '12.5', '1:02.5' or '1:02:03'."""
    if text is None:
        return None
    match = _CLOCK.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a time (seconds, mm:ss or hh:mm:ss)")
    parts = [float(p) for p in match.groups() if p is not None]
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


class FrameProgress:
    """'replacing the sky: 120/300 frames, 4.2 frames/s, ETA 0:43' on stderr: redrawn in place a few
    times a second on a terminal, a line every 10 s otherwise."""

    def __init__(self) -> None:
        self.stage = ""
        self.started = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if stage != self.stage:
            if self.stage and self.tty:
                sys.stderr.write("\n")
            self.stage, self.started, self.last = stage, now, 0.0
        finished = total is not None and done >= total
        if now - self.last < (0.25 if self.tty else 10.0) and not finished:
            return
        self.last = now
        elapsed = now - self.started
        count = f"{done}/{total}" if total else f"{done}"
        line = f"{stage}: {count} frames"
        if elapsed >= 0.5:  # a rate from the first instants would be noise
            rate = done / elapsed
            eta = f", ETA {_duration((total - done) / rate)}" if total and not finished else ""
            line += f", {rate:.1f} frames/s{eta}"
        sys.stderr.write(f"\r{line}\033[K" if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.stage and self.tty:
            sys.stderr.write("\n")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


@click.command("video")
@click.argument("clip", type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file: MP4 (H.264, yuv420p) with the source's audio.")
@cli_options(*REPLACE_GROUPS, exclude=("quality",))
@click.option("--crf", type=click.IntRange(0, 51), default=Encoding.crf, show_default=True,
              help="H.264 quality: 0 = lossless, 18 = visually lossless, 23 = x264's default; lower = larger file.")
@click.option("--encoder-preset", type=click.Choice(X264_PRESETS), default=Encoding.preset, show_default=True,
              help="x264 speed preset: slower presets make smaller files at the same quality.")
@click.option("--start", "start", metavar="TIME", help="Process from this time (seconds, mm:ss or hh:mm:ss).")
@click.option("--end", "end", metavar="TIME", help="Process up to this time (seconds, mm:ss or hh:mm:ss).")
@click.option("--matte-smoothing", type=click.FloatRange(0, 0.95), default=HISTORY_WEIGHT, show_default=True,
              help="How much of the previous frames' matte (moved with the camera) each frame keeps where nothing "
                   "moved; 0 = every frame on its own.")
@click.option("--sky-motion", type=click.Choice(("camera", "fixed")), default="camera", show_default=True,
              help="camera: the new sky stays at infinity as the camera pans, tilts, rolls and zooms; "
                   "fixed: the sky stays still in the frame (tripod shots).")
@click.option("--allow-truncated", is_flag=True,
              help="If the video stream breaks part-way, keep the frames before the break instead of failing.")
def video_command(clip: Path, out_path: Path, **flags: Any) -> None:
    """Replace the sky of the video CLIP with --sky and write an MP4 to OUT."""
    if flags["sky"] is None:
        raise click.UsageError("--sky PRESET|NAME|FILE is required")
    if out_path.resolve() == clip.resolve():
        raise click.UsageError("the output would overwrite the input clip; choose another file")
    if out_path.suffix.lower() not in VIDEO_SUFFIXES:
        raise click.UsageError(f"the output must be an MP4 file ({' or '.join(VIDEO_SUFFIXES)}), got {out_path.name}")
    start, end = parse_time(flags["start"]) or 0.0, parse_time(flags["end"])
    if end is not None and end <= start:
        raise click.UsageError(f"--end ({end:g} s) must come after --start ({start:g} s)")
    try:
        require_av()
        require_cv2()
        info = probe(clip)
    except VideoError as exc:
        raise click.ClickException(str(exc)) from None
    if info.end_s is not None and start >= info.end_s:
        raise click.ClickException(f"{clip}: --start {start:g} s is past the end of the clip ({info.end_s:.2f} s)")
    for line in source_warnings(info):
        click.echo(f"warning: {line}", err=True)
    flags = disclosure_flags(flags)
    ensure_writable_dir(out_path.parent)
    sky = load_sky_or_fail(flags["sky"], flags["max_megapixels"])
    from clnsod_core.replace import ReplaceOptions  # torch: imported once the clip and the sky are known good
    from clnsod_core.video.pipeline import VideoReplacer, VideoSettings, disclosure_metadata, expected_frames

    settings = VideoSettings(
        options=ReplaceOptions.from_flat(flags), encoding=Encoding(flags["crf"], flags["encoder_preset"]),
        start_s=start, end_s=end, allow_truncated=flags["allow_truncated"], label=flags["label"],
        matte_smoothing=flags["matte_smoothing"], follow_camera=flags["sky_motion"] == "camera",
        metadata=disclosure_metadata(sky_label(flags["sky"], sky), flags[REPLACED_AT], flags["label"]))
    width, height = info.upright_size
    frames = expected_frames(info, settings)
    click.echo(f"{clip}: {width}x{height}, {float(info.fps):.3f} frames/s"
               f"{f', about {frames} frames' if frames else ''}{', audio kept' if info.audio else ''}", err=True)
    progress = FrameProgress()
    try:
        report = VideoReplacer(load_replacer(flags)).run(info, sky, out_path, settings, progress)
    except VideoBroken as exc:
        hint = "" if settings.allow_truncated else "; --allow-truncated keeps the frames before the break"
        raise click.ClickException(f"{exc}{hint}") from None
    except VideoError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    if report.truncated_at_s is not None:
        click.echo(f"warning: {clip}: the video stream breaks after {report.truncated_at_s:.2f} s; "
                   f"kept the {report.frames} frames before the break", err=True)
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.stage_seconds.items())
    click.echo(f"wrote {out_path}: {report.frames} frames in {report.seconds:.1f} s "
               f"({report.frames_per_second:.1f} frames/s; {stages})", err=True)
