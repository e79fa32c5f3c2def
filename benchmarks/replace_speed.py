"""End-to-end sky replacement speed and memory on large photos (2 threads).

For each size: decode -> ``SkyReplacer.replace`` (mask: network and matte; sky: render and place;
blend: composite beside the reflection search and haze) -> encode, medians of repeated runs with a
stage breakdown, plus decode+encode of the same photo alone as the reference (and the ratio). Peak RSS is measured in a fresh child process per size (VmHWM).

    python benchmarks/replace_speed.py [--runs 5] [--sky sunset]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import queue as queues
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "data" / "photos" / "sunset_by_Aitzol_Berasategi.jpg"  # 4272x2848 = 12.2 MP


def make_photo(megapixels: float, folder: Path) -> Path:
    """The 12 MP test photo, resized to the requested size (Lanczos), saved as JPEG q92."""
    with Image.open(PHOTO) as im:
        scale = (megapixels * 1e6 / (im.width * im.height)) ** 0.5
        size = (round(im.width * scale), round(im.height * scale))
        out = folder / f"photo_{megapixels:g}mp.jpg"
        (im if size == im.size else im.resize(size, Image.Resampling.LANCZOS)).save(out, quality=92)
    return out


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


STAGE_STARTS = {"computing the sky matte": "mask", "placing the new sky": "sky", "blending the foreground": "blend"}


def run_once(replacer, path: Path, sky: str) -> dict[str, float]:
    """One photo through ``SkyReplacer.replace``, the path ``clnsod replace`` takes, timed by the
    stages it reports: mask (network and matte), sky (render and placement), blend (composite,
    reflection search and haze), between decode and encode."""
    from clnsod_core.imaging.io import load_photo_with_meta, save_image
    from clnsod_core.replace import ReplaceOptions

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    photo, meta = load_photo_with_meta(path)
    t["decode"] = time.perf_counter() - t0
    marks: list[tuple[str, float]] = []
    result = replacer.replace(photo, sky, ReplaceOptions(),
                              on_stage=lambda stage: marks.append((STAGE_STARTS[stage], time.perf_counter())))
    marks.append(("", time.perf_counter()))
    for (stage, start), (_, end) in itertools.pairwise(marks):
        t[stage] = end - start
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        save_image(result.composite, Path(tmp) / "out.jpg", meta, 92)
    t["encode"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    return t


def reference_once(path: Path) -> float:
    from clnsod_core.imaging.io import load_photo_with_meta, save_image

    t0 = time.perf_counter()
    photo, meta = load_photo_with_meta(path)
    with tempfile.TemporaryDirectory() as tmp:
        save_image(photo, Path(tmp) / "out.jpg", meta, 92)
    return time.perf_counter() - t0


def _child(path: str, sky: str, runs: int, queue: mp.Queue) -> None:
    import torch

    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import SkyReplacer
    from clnsod_core.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(2)
    replacer = SkyReplacer(SkyMasker(device="cpu"))
    run_once(replacer, Path(path), sky)  # warm-up
    stages = [run_once(replacer, Path(path), sky) for _ in range(runs)]
    refs = [reference_once(Path(path)) for _ in range(runs)]
    queue.put((stages, refs, vm_hwm_mib()))


def _answer(queue: mp.Queue, proc: mp.Process) -> tuple:
    """The child's measurements; a child that died (its traceback is on stderr) ends the benchmark."""
    while True:
        try:
            return queue.get(timeout=5)
        except queues.Empty:
            if not proc.is_alive():
                raise SystemExit(f"the measuring process failed (exit code {proc.exitcode})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sky", default="sunset")
    parser.add_argument("--sizes", default="12,24", help="megapixels, comma separated")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    keys = ["decode", "mask", "sky", "blend", "encode", "total"]
    print(f"median of {args.runs} runs (after 1 warm-up), seconds; 2 threads; preset sky '{args.sky}'")
    print(f"{'photo':<22}" + "".join(f"{k:>10}" for k in keys) + f"{'dec+enc':>10}{'ratio':>8}{'peak RSS':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for mp_size in (float(s) for s in args.sizes.split(",")):
            path = make_photo(mp_size, Path(tmp))
            with Image.open(path) as im:
                label = f"{im.width}x{im.height} ({im.width * im.height / 1e6:.1f} MP)"
            queue: mp.Queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(str(path), args.sky, args.runs, queue))
            proc.start()
            stages, refs, peak = _answer(queue, proc)
            proc.join()
            med = {k: statistics.median(s[k] for s in stages) for k in keys}
            ref = statistics.median(refs)
            print(f"{label:<22}" + "".join(f"{med[k]:>10.3f}" for k in keys)
                  + f"{ref:>10.3f}{med['total'] / ref:>7.1f}x{peak:>8.0f} MiB")


if __name__ == "__main__":
    main()
