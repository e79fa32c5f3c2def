"""Batch throughput: photos per minute for ``clnsod batch --sky PRESET`` over a folder of 12 MP photos,
side by side with Pillow's decode + encode of the same photos, and the per-photo cost in a batch
next to one ``clnsod replace`` of one of those photos.

Start-up (importing PyTorch, loading the model) is paid once per run, so the batch runs twice, over
N and 2N photos: the difference is the steady cost of N photos (what a long batch costs per photo),
and the rest is the start-up. Every number is a median of ``--runs`` runs, measured in this one
process's run, so the ratios compare like with like on a machine whose speed drifts:

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
        n = args.photos
        paths = make_folder(root / "in", 2 * n, args.megapixels)
        (root / "half").mkdir()
        for path in paths[:n]:
            os.link(path, root / "half" / path.name)
        tiny = root / "tiny.jpg"  # a replace of this costs its start-up and next to nothing else
        with Image.open(paths[0]) as im:
            im.resize((320, 213)).save(tiny, quality=92)
        reference, half, full, single, startup_only = [], [], [], [], []
        for run in range(args.runs):
            reference.append(decode_encode(paths, root / f"ref{run}") / len(paths))
            half.append(run_cli(["batch", str(root / "half"), "-o", str(root / f"half{run}"), "--sky", args.sky]))
            full.append(run_cli(["batch", str(root / "in"), "-o", str(root / f"out{run}"), "--sky", args.sky]))
            single.append(run_cli(["replace", str(paths[0]), "--sky", args.sky, "-o", str(root / f"one{run}.jpg")]))
            startup_only.append(run_cli(["replace", str(tiny), "--sky", args.sky, "-o", str(root / f"tiny{run}.jpg")]))
        ref = statistics.median(reference)
        steady = statistics.median((b - a) / n for a, b in zip(half, full, strict=True))
        startup = statistics.median(a - n * steady for a in half)
        total = statistics.median(full)
        one = statistics.median(single)
        one_startup = statistics.median(startup_only)
        with Image.open(paths[0]) as im:
            size = f"{im.width}x{im.height}"
    print(f"batches of {n} and {2 * n} photos of {size}, preset sky '{args.sky}', medians of {args.runs} runs, "
          f"{os.cpu_count()} CPUs\n")
    print("| what | per photo (s) | photos/min | vs decode+encode |")
    print("|---|---|---|---|")
    print(f"| Pillow decode + encode | {ref:.3f} | {60 / ref:.0f} | 1.0× |")
    print(f"| `clnsod batch --sky {args.sky}`, steady (start-up {startup:.1f} s once per run) | {steady:.3f} | "
          f"{60 / steady:.0f} | {steady / ref:.1f}× |")
    print(f"| `clnsod batch` of {2 * n} photos, start-up included | {total / (2 * n):.3f} | "
          f"{60 * 2 * n / total:.0f} | {total / (2 * n) / ref:.1f}× |")
    print(f"| one `clnsod replace`, start-up included | {one:.3f} | {60 / one:.0f} | {one / ref:.1f}× |")
    print(f"| one `clnsod replace` less its start-up ({one_startup:.1f} s: a replace of a 320x213 photo) | "
          f"{one - one_startup:.3f} | {60 / (one - one_startup):.0f} | {(one - one_startup) / ref:.1f}× |")


if __name__ == "__main__":
    main()
