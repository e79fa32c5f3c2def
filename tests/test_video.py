"""``clnsod video`` on clips made in the test from real photos (PyAV encodes them): what a clip carries
survives (frames, frame rate, variable timestamps, rotation, colour tags, audio packets), the new sky
stays at infinity while the camera moves, the matte holds still on a static camera without losing
accuracy on a moving one, and bad inputs fail clearly with nothing left behind."""

from __future__ import annotations

import hashlib
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import video_clips as clips  # noqa: E402  (the benchmarks' clip generator)
import video_quality as quality  # noqa: E402

from cli_runner import run_cli  # noqa: E402
from conftest import PHOTOS  # noqa: E402

from clnsod_core.masking.inference import SkyMasker  # noqa: E402
from clnsod_core.replace import ReplaceOptions, SkyReplacer  # noqa: E402
from clnsod_core.video.container import VideoError, probe  # noqa: E402
from clnsod_core.video.pipeline import VideoReplacer, VideoSettings, analyse_camera  # noqa: E402

SIZE = (320, 180)


@pytest.fixture(scope="module")
def picos() -> np.ndarray:
    """A real mountain photo with a clouded sky, reduced (the clips need only a few hundred pixels)."""
    with Image.open(PHOTOS / "picosdeeuropa_by_Aitzol_Berasategi.jpg") as im:
        return np.asarray(im.convert("RGB").resize((1088, 816), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def video_replacer() -> VideoReplacer:
    return VideoReplacer(SkyReplacer(SkyMasker()))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _decoded(path: Path) -> tuple[list[float], list[np.ndarray], int]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [float(f.time) for f in frames], [f.to_ndarray(format="rgb24") for f in frames], frames[0].rotation


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def test_clip_round_trip_keeps_timing_rotation_colour_and_audio(tmp_path: Path, picos: np.ndarray) -> None:
    """A portrait phone clip (stored turned, played upright) at a variable frame rate with sound."""
    clip = clips.render_clip(picos, (180, 320), "pan", seconds=1.0, fps=24, look_at=0.4)
    times = np.cumsum([0.0] + [1 / 24 if i % 3 else 1 / 12 for i in range(len(clip.frames) - 1)]).tolist()
    source = tmp_path / "portrait.mp4"
    clips.write_clip(clip.frames, source, clip.fps, rotation=90, audio_seconds=times[-1] + 0.1, timestamps=times)
    before = _sha(source)
    out = tmp_path / "out" / "replaced.mp4"
    result = run_cli("video", source, "-o", out, "--sky", "sunset", "--crf", "12")
    assert result.returncode == 0, result.stderr
    assert _sha(source) == before  # the input is never touched
    info_in, info_out = probe(source), probe(out)
    assert (info_out.width, info_out.height, info_out.rotation) == (info_in.width, info_in.height, 90)
    assert info_out.upright_size == (180, 320)  # portrait stays portrait
    assert info_out.colour.matrix == 1 and info_out.colour.primaries == 1 and info_out.colour.transfer == 1
    in_times, in_frames, _ = _decoded(source)
    out_times, out_frames, rotation = _decoded(out)
    assert rotation == 90
    assert len(out_times) == len(in_times)
    np.testing.assert_allclose(out_times, in_times, atol=1e-3)  # variable frame rate survives
    assert _audio_packets(out) == _audio_packets(source)  # audio copied untouched
    with av.open(str(out)) as container:
        assert "Sky replaced by CLN-SOD" in container.metadata.get("comment", "")
    # Upright, the sky (top) is new and the land (bottom) is the old land, recoloured a little.
    first_in, first_out = np.rot90(in_frames[0], 1), np.rot90(out_frames[0], 1)
    top = slice(0, 40)
    assert np.abs(first_in[top].astype(int) - first_out[top]).mean() > 25
    bottom = slice(280, 320)
    assert np.abs(first_in[bottom].astype(int) - first_out[bottom]).mean() < 25


def test_part_of_a_clip_with_start_and_end(tmp_path: Path, picos: np.ndarray) -> None:
    clip = clips.render_clip(picos, SIZE, "static", seconds=2.0, fps=25, look_at=0.4)
    source = tmp_path / "clip.mp4"
    clips.write_clip(clip.frames, source, clip.fps, audio_seconds=2.0)
    out = tmp_path / "part.mp4"
    result = run_cli("video", source, "-o", out, "--sky", "clear-blue", "--start", "0.4", "--end", "0:01.2")
    assert result.returncode == 0, result.stderr
    times, _, _ = _decoded(out)
    assert len(times) == 20  # frames at 0.40 .. 1.16 s
    assert times[0] == pytest.approx(0.0, abs=1e-3)
    with av.open(str(out)) as container:
        audio = [float(p.pts * p.time_base) for p in container.demux(audio=0) if p.size]
    assert 0.7 < audio[-1] < 0.85 and audio[0] < 0.05  # the same part of the sound, starting at 0


def test_sky_stays_at_infinity_while_the_camera_moves(tmp_path: Path, picos: np.ndarray) -> None:
    """Known camera motion (virtual camera over a real photo, noise, JPEG and H.264): the sky is shown
    within a fraction of a pixel of where it belongs, including over a featureless gradient sky."""
    replacer = SkyReplacer(SkyMasker())
    flat = clips.gradient_sky(picos, replacer.matte(picos))
    for photo, motion in ((picos, "handheld"), (flat, "pan"), (picos, "roll"), (flat, "zoom")):
        clip = clips.render_clip(photo, (480, 270), motion, seconds=2.0, look_at=0.42, seed=3)
        path = tmp_path / f"{motion}.mp4"
        clips.write_clip(clip.frames, path, clip.fps)
        camera = analyse_camera(probe(path), VideoSettings())
        errors = quality.position_errors(camera.smoothed, clip.truth, 480, 270)
        assert errors.mean() <= 0.5, (motion, errors.mean())
        assert errors[-1] <= 0.005 * 480, (motion, errors[-1])
        fixed = quality.position_errors([np.eye(3)] * len(clip.truth), clip.truth, 480, 270)
        assert fixed.mean() > 10 * max(errors.mean(), 0.3)  # the motion is real: a fixed sky would be far off


def test_matte_holds_still_on_a_static_camera(tmp_path: Path, picos: np.ndarray,
                                              video_replacer: VideoReplacer) -> None:
    clip = clips.render_clip(picos, (480, 270), "static", seconds=1.2, look_at=0.42, seed=1)
    row = quality.matte_case(video_replacer, clip, tmp_path, "static")
    assert row["flicker_single"] > 0  # per-frame mattes do shimmer on this clip
    assert row["flicker_ratio"] >= 5, row


def test_steady_matte_is_as_accurate_on_moving_cameras(tmp_path: Path, skyseg: Path,
                                                       video_replacer: VideoReplacer) -> None:
    """Validation photos with known sky masks, a hand-held camera and a pan with a bird crossing."""
    single, steady, bird_single, bird_steady = [], [], [], []
    for index, (photo, mask) in enumerate(quality.skyseg_val(2)):
        for motion in ("handheld", "pan"):
            clip = clips.render_clip(photo, (384, 216), motion, seconds=1.0, sky=mask, bird=motion == "pan",
                                     seed=index, view_share=0.75)
            row = quality.matte_case(video_replacer, clip, tmp_path, f"{index}-{motion}")
            single.append(row["iou_single"])
            steady.append(row["iou_steady"])
            if "bird_iou_single" in row:
                bird_single.append(row["bird_iou_single"])
                bird_steady.append(row["bird_iou_steady"])
    assert np.mean(steady) >= np.mean(single) - 0.002, (single, steady)
    assert np.mean(bird_steady) >= np.mean(bird_single) - 0.01, (bird_single, bird_steady)  # no lag behind the bird


def test_interrupted_run_leaves_nothing(tmp_path: Path, picos: np.ndarray, video_replacer: VideoReplacer) -> None:
    clip = clips.render_clip(picos, SIZE, "static", seconds=1.0, look_at=0.4)
    source = tmp_path / "clip.mp4"
    clips.write_clip(clip.frames, source, clip.fps)
    out = tmp_path / "out" / "replaced.mp4"
    out.parent.mkdir()

    def stop(stage: str, done: int, total: int | None) -> None:
        if stage == "replacing the sky" and done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video_replacer.run(probe(source), "sunset", out, VideoSettings(ReplaceOptions()), stop)
    assert list(out.parent.iterdir()) == []


def _encode(path: Path, codec: str, pix_fmt: str, width: int, height: int, frames: int, **tags: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for key, value in tags.items():
            setattr(stream.codec_context, key, value)
        photo = np.asarray(Image.open(PHOTOS / "Storm.jpg").convert("RGB").resize((width, height)))
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(photo, format="rgb24").reformat(format=pix_fmt)
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _audio_only(path: Path, with_video_stream: bool) -> None:
    """An AAC file; ``with_video_stream``: also a declared video stream that never gets a frame."""
    with av.open(str(path), "w") as container:
        if with_video_stream:
            video = container.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        clips.write_tone(container, container.add_stream("aac", rate=48000), 1.0)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, picos: np.ndarray) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    made = {"text": folder / "notes.mp4", "still": folder / "photo.jpg", "audio": folder / "sound.m4a",
            "empty": folder / "empty.mkv", "huge": folder / "huge.mkv", "broken": folder / "broken.mkv"}
    made["text"].write_text("not a video at all\n")
    Image.fromarray(picos).save(made["still"], quality=90)
    _audio_only(made["audio"], with_video_stream=False)
    _audio_only(made["empty"], with_video_stream=True)
    _encode(made["huge"], "ffv1", "yuv420p", 9000, 16, 1)
    whole = folder / "whole.mkv"
    clip = clips.render_clip(picos, SIZE, "pan", seconds=2.0, look_at=0.4)
    clips.write_clip(clip.frames, whole, clip.fps)
    data = whole.read_bytes()
    made["broken"].write_bytes(data[: len(data) * 55 // 100])  # the stream stops a little after 1 s
    return made


@pytest.mark.parametrize(("kind", "message"), [
    ("text", "not a video FFmpeg can read"),
    ("still", "is a still image, not a video"),
    ("audio", "has no video stream"),
    ("empty", "has no video frames"),
    ("huge", "larger than this tool handles"),
    ("broken", "the video stream breaks after 00:0"),
    ("missing", "no such file"),
])
def test_bad_input_fails_clearly_and_leaves_nothing(tmp_path: Path, bad_inputs: dict[str, Path], kind: str,
                                                    message: str) -> None:
    source = bad_inputs.get(kind, tmp_path / "missing.mp4")
    before = _sha(source) if source.exists() else None
    out = tmp_path / "out" / "result.mp4"
    result = run_cli("video", source, "-o", out, "--sky", "sunset")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and message in lines[0] and str(source) in lines[0], result.stderr
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no partial file either
    if before is not None:
        assert _sha(source) == before


def test_broken_stream_keeps_frames_before_the_break_when_allowed(tmp_path: Path, bad_inputs: dict[str, Path]) -> None:
    out = tmp_path / "kept.mp4"
    result = run_cli("video", bad_inputs["broken"], "-o", out, "--sky", "sunset", "--allow-truncated")
    assert result.returncode == 0, result.stderr
    assert "breaks after" in result.stderr and "kept the" in result.stderr
    times, _, _ = _decoded(out)
    assert 20 <= len(times) < 60 and times == sorted(times)


def test_deep_hdr_and_odd_sized_sources_are_converted_with_a_warning(tmp_path: Path) -> None:
    cases = {
        "deep.mp4": (("libx264", "yuv420p10le", 64, 48), {}, "10-bit video is processed at 16 bits"),
        "hdr.mp4": (("libx264", "yuv420p10le", 64, 48), {"color_trc": 16, "color_primaries": 9, "colorspace": 9},
                    "HDR video (PQ) is tone-mapped to SDR BT.709"),
        "odd.mp4": (("libx264", "yuv444p", 65, 47), {}, "are padded to 66x48"),
    }
    for name, ((codec, pix_fmt, width, height), tags, warning) in cases.items():
        source = tmp_path / name
        _encode(source, codec, pix_fmt, width, height, 6, **tags)
        out = tmp_path / f"out-{name}"
        result = run_cli("video", source, "-o", out, "--sky", "sunset")
        assert result.returncode == 0, result.stderr
        assert warning in result.stderr, result.stderr
        info = probe(out)
        assert info.pixel_format == "yuv420p" and info.bit_depth == 8
        assert (info.width, info.height) == (width + width % 2, height + height % 2)
        if "color_trc" in tags:
            assert (info.colour.primaries, info.colour.transfer, info.colour.matrix) == (1, 1, 1)
        assert len(_decoded(out)[0]) == 6


def test_usage_errors(tmp_path: Path, bad_inputs: dict[str, Path]) -> None:
    source = bad_inputs["broken"]
    for args, text in (((source, "-o", tmp_path / "x.mp4"), "--sky"),
                       ((source, "-o", tmp_path / "x.mov", "--sky", "sunset"), "must be an MP4"),
                       ((source, "-o", source, "--sky", "sunset"), "would overwrite the input"),
                       ((source, "-o", tmp_path / "x.mp4", "--sky", "sunset", "--start", "2", "--end", "1"), "must come after"),
                       ((source, "-o", tmp_path / "x.mp4", "--sky", "sunset", "--start", "soon"), "is not a time")):
        result = run_cli("video", *args)
        assert result.returncode == 2 and text in result.stderr, result.stderr


def test_missing_pyav_says_how_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['av'] = None; from clnsod_core.frontends.cli import main; "
            f"main(['video', '{tmp_path / 'a.mp4'}', '-o', '{tmp_path / 'b.mp4'}', '--sky', 'sunset'])")
    result = run_cli(launcher=(sys.executable, "-c", code))
    assert result.returncode == 1
    assert "pip install -e '.[video]'" in result.stderr


def test_probe_reads_what_a_clip_declares(tmp_path: Path, picos: np.ndarray) -> None:
    clip = clips.render_clip(picos, SIZE, "static", seconds=0.5, fps=30)
    path = tmp_path / "c.mp4"
    clips.write_clip(clip.frames, path, Fraction(30000, 1001))
    info = probe(path)
    assert info.upright_size == SIZE and info.fps == Fraction(30000, 1001) and info.rotation == 0
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "nothing.mp4")


def test_audio_mp4_cannot_hold_is_re_encoded_with_a_warning(tmp_path: Path, picos: np.ndarray) -> None:
    """A camera's MOV with PCM sound: the sound is kept (as AAC, same rate, channels and length)."""
    clip = clips.render_clip(picos, SIZE, "static", seconds=0.5, look_at=0.4)
    source = tmp_path / "camera.mov"
    clips.write_clip(clip.frames, source, clip.fps, audio_seconds=0.5, audio_codec="pcm_s16le", audio_layout="stereo")
    out = tmp_path / "out.mp4"
    result = run_cli("video", source, "-o", out, "--sky", "sunset")
    assert result.returncode == 0, result.stderr
    assert "pcm_s16le audio cannot go into MP4 as it is; it is re-encoded to AAC" in result.stderr
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.codec_context.sample_rate, stream.codec_context.channels) == ("aac", 48000, 2)
        assert float(stream.duration * stream.time_base) == pytest.approx(0.5, abs=0.05)
