"""Photos per minute of ``clnsod batch --sky sunset`` with the local engine and with the Ray engine
(a local Ray started by the command) on this machine, end to end: each run is one fresh ``clnsod``
process into an empty output folder, so Ray's start-up and each worker's model load are included,
as a user pays them. Medians of repeated runs; the ratio is Ray's throughput over the local one's.
Two folder sizes also separate the two costs: the rate after start-up (photos/min from the time the
larger folder takes over the smaller) and the fixed start-up time; a cluster's throughput is about
that rate per worker, after one start-up.

    pip install -e '.[ray]'
    python benchmarks/ray_throughput.py [--photos 6,12] [--runs 3] [--ray 2x1,1x2]

``--ray WxC`` runs W workers with C CPUs each (``--workers W --cpus-per-worker C``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_throughput import make_folder, run_cli  # noqa: E402  (same photos, same way of running clnsod)


def timed_run(src: Path, out: Path, extra: list[str]) -> float:
    """Wall seconds of one ``clnsod batch`` into an empty ``out``; fails loudly unless every photo was written."""
    shutil.rmtree(out, ignore_errors=True)
    return run_cli(["batch", str(src), "-o", str(out), "--sky", "sunset", *extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="6,12",
                        help="folder sizes (12 MP photos), comma separated; two or more also give the rate "
                        "after start-up and the start-up time, from the smallest and the largest")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ray", default="2x1,1x2", help="Ray configurations WORKERSxCPUS, comma separated")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.photos.split(","))
    configs: dict[str, list[str]] = {"local": []}
    for spec in args.ray.split(","):
        workers, cpus = spec.split("x")
        configs[f"ray {workers}x{cpus}"] = ["--engine", "ray", "--workers", workers, "--cpus-per-worker", cpus]
    with tempfile.TemporaryDirectory(prefix="clnsod-ray-bench-") as tmp:
        make_folder(Path(tmp) / "all", sizes[-1], 12.0)
        all_photos = Path(tmp) / "all"
        folders = {}
        for n in sizes:
            folders[n] = Path(tmp) / f"in{n}"
            folders[n].mkdir()
            for photo in sorted(all_photos.iterdir())[:n]:
                os.link(photo, folders[n] / photo.name)
        times: dict[tuple[str, int], list[float]] = {(name, n): [] for name in configs for n in sizes}
        for _ in range(args.runs):  # interleaved, so a busier moment of the VM hits every engine alike
            for n in sizes:
                for name, extra in configs.items():
                    times[name, n].append(timed_run(folders[n], Path(tmp) / "out", extra))
    median = {key: statistics.median(samples) for key, samples in times.items()}
    big, small = sizes[-1], sizes[0]
    print(f"`clnsod batch --sky sunset` on 12 MP photos, median of {args.runs} runs, {os.cpu_count()} CPUs; "
          "wall time includes start-up (Ray, model load per worker)\n")
    header = ["engine", "workers × CPUs", *(f"{n} photos, s" for n in sizes), f"photos/min ({big})", "vs local"]
    if len(sizes) > 1:
        header += ["photos/min after start-up", "start-up s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in configs:
        shape = "1 process" if name == "local" else name.split()[1].replace("x", " × ")
        cells = [name.split()[0], shape, *(f"{median[name, n]:.1f}" for n in sizes),
                 f"{big / median[name, big] * 60:.1f}", f"{median['local', big] / median[name, big]:.2f}×"]
        if len(sizes) > 1:
            per_photo = (median[name, big] - median[name, small]) / (big - small)
            cells += [f"{60 / per_photo:.1f}", f"{median[name, small] - small * per_photo:.1f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
