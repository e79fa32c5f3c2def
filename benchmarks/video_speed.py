"""How fast ``clnsod video`` is: frames per second at 1080p and 4K on 2 threads, beside decoding and
encoding the same clip alone (same reader, same writer, same settings), and where the time goes.

The clips are rendered by a virtual hand-held camera over a real photo (``video_clips.py``) and
encoded with PyAV. Both runs happen in this process, one after the other, each twice (the faster
run counts: timings here drift between runs).

    python benchmarks/video_speed.py [--seconds 3] [--sizes 1920x1080,3840x2160] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import video_clips as clips  # noqa: E402

from clnsod_core.files import write_atomic  # noqa: E402
from clnsod_core.masking.inference import SkyMasker  # noqa: E402
from clnsod_core.replace import SkyReplacer  # noqa: E402
from clnsod_core.runtime import tune_allocator  # noqa: E402
from clnsod_core.video.container import Encoding, VideoWriter, probe, read_frames  # noqa: E402
from clnsod_core.video.pipeline import VideoReplacer, VideoSettings  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos" / "sunset_by_Aitzol_Berasategi.jpg"


def decode_and_encode(source: Path, out: Path, encoding: Encoding) -> tuple[float, int]:
    """Seconds to decode every frame to RGB and encode it again, as the pipeline does; frames."""
    info = probe(source)
    count = 0
    started = time.perf_counter()

    def copy(handle) -> None:  # noqa: ANN001
        nonlocal count
        writer = VideoWriter(handle, info, encoding)
        for frame in read_frames(info):
            writer.write(frame.image, frame.pts)
            count += 1
        writer.close()

    write_atomic(out, copy)
    return time.perf_counter() - started, count


def measure(video: VideoReplacer, size: tuple[int, int], seconds: float, folder: Path, runs: int) -> dict:
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    clip = clips.render_clip(photo, size, "handheld", seconds=seconds, look_at=0.45, view_share=0.8)
    source = folder / f"clip-{size[0]}x{size[1]}.mp4"
    clips.write_clip(clip.frames, source, clip.fps)
    info = probe(source)
    settings = VideoSettings()
    best = None
    for _ in range(runs):
        report = video.run(info, "sunset", folder / "out.mp4", settings)
        copy_seconds, frames = decode_and_encode(source, folder / "copy.mp4", settings.encoding)
        if best is None or report.seconds < best[0].seconds:
            best = (report, copy_seconds)
    report, copy_seconds = best  # type: ignore[misc]
    row = {
        "size": f"{size[0]}x{size[1]}", "frames": report.frames,
        "frames_per_second": report.frames_per_second,
        "decode_encode_frames_per_second": report.frames / copy_seconds,
        "ratio_to_decode_encode": report.seconds / copy_seconds,
        "stage_seconds_per_frame": {k: v / report.frames for k, v in report.stage_seconds.items()},
    }
    stages = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in row["stage_seconds_per_frame"].items())
    print(f"{row['size']}: {row['frames_per_second']:.2f} frames/s; decode+encode alone "
          f"{row['decode_encode_frames_per_second']:.1f} frames/s; ratio {row['ratio_to_decode_encode']:.1f}x\n"
          f"  per frame: {stages}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", default="1920x1080,3840x2160")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    video = VideoReplacer(SkyReplacer(SkyMasker()))
    print(f"device: {video.replacer.masker.device}, torch threads: {torch.get_num_threads()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.sizes.split(","):
            size = tuple(int(v) for v in text.split("x"))
            rows.append(measure(video, size, args.seconds, Path(tmp), args.runs))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
