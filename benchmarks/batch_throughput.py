"""Batch throughput: photos per minute for ``clnsod batch --sky PRESET`` over a folder of 12 MP photos,
side by side with Pillow's decode + encode of the same folder, and the per-photo cost in a batch
next to one ``clnsod replace`` of one of those photos (start-up and model loading included).

Every number is a median of ``--runs`` runs, measured in this one process's run, so the ratios
compare like with like on a machine whose speed drifts:

    python benchmarks/batch_throughput.py [--photos 8] [--runs 3] [--megapixels 12] [--sky sunset]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "photos" / "sunset_by_Aitzol_Berasategi.jpg"  # 4272x2848
CLI = [sys.executable, "-m", "clnsod_core.frontends.cli"]


def make_folder(folder: Path, count: int, megapixels: float) -> list[Path]:
    """``count`` different photos of ``megapixels`` (crops and mirrors of one real photo, JPEG q92)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with Image.open(SOURCE) as im:
        im = im.convert("RGB")
        scale = (megapixels * 1e6 / (im.width * im.height)) ** 0.5
        base = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    for n in range(count):
        photo = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if n % 2 else base
        shift = (n // 2) * 16  # each photo differs, so nothing can be cached between them
        photo = photo.crop((shift, 0, photo.width, photo.height)).resize(base.size, Image.Resampling.BILINEAR)
        path = folder / f"photo_{n:03d}.jpg"
        photo.save(path, quality=92)
        paths.append(path)
    return paths


def decode_encode(paths: list[Path], out: Path) -> float:
    """Seconds for Pillow alone to decode each photo and write it again as JPEG q92."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as im:
            im.convert("RGB").save(out / path.name, quality=92, subsampling=0)
    return time.perf_counter() - start


def run_cli(args: list[str]) -> float:
    env = {**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "10000000000"}
    start = time.perf_counter()
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"clnsod {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--sky", default="sunset")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_folder(root / "in", args.photos, args.megapixels)
        reference, batch, single = [], [], []
        for run in range(args.runs):
            reference.append(decode_encode(paths, root / f"ref{run}"))
            batch.append(run_cli(["batch", str(root / "in"), "-o", str(root / f"out{run}"), "--sky", args.sky]))
            single.append(run_cli(["replace", str(paths[0]), "--sky", args.sky, "-o", str(root / f"one{run}.jpg")]))
        n = args.photos
        ref, total, one = statistics.median(reference), statistics.median(batch), statistics.median(single)
        with Image.open(paths[0]) as im:
            size = f"{im.width}x{im.height}"
    print(f"{n} photos of {size}, preset sky '{args.sky}', medians of {args.runs} runs, {os.cpu_count()} CPUs\n")
    print("| what | seconds | per photo | photos/min | vs decode+encode |")
    print("|---|---|---|---|---|")
    print(f"| Pillow decode + encode | {ref:.2f} | {ref / n:.3f} | {60 * n / ref:.0f} | 1.0× |")
    print(f"| `clnsod batch --sky {args.sky}` (start-up included) | {total:.2f} | {total / n:.3f} | "
          f"{60 * n / total:.0f} | {total / ref:.1f}× |")
    print(f"| one `clnsod replace` (start-up included) | {one:.2f} | {one:.3f} | {60 / one:.0f} | "
          f"{one / (ref / n):.1f}× |")


if __name__ == "__main__":
    main()
