"""Live preview speed of the editor dialogs, through the plugins' own client and the core that stays up.

For each photo (the bundled examples and large shared photos, sent at full size as the plugins send a
layer): time to the first preview with a core started from scratch ("cold": core start-up, open,
network, preview) and with the core already running ("warm"), then the time of each update after a
single setting changes (medians and maxima per setting). The reference for the first preview is the
issue's: one full `clnsod mask` of the preview-sized photo (a process of its own) plus the core's
start-up (process start to answering "hello").

    python benchmarks/editor_preview.py [--updates 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin" / "common"))
import bridge_client as bc  # noqa: E402

PHOTOS = [REPO / "examples" / name for name in ("sunset.jpg", "aitzgorri.jpg", "picosdeeuropa.jpg")] + [
    REPO.parent / "shared" / "data" / "photos" / name for name in ("sunset_by_Aitzol_Berasategi.jpg", "Storm.jpg",
                                                                   "plasma_summer_1am.jpg")]
# One change at a time, from the defaults: what an artist moves in the dialog.
CHANGES = {"edge_shift": (8.0, -8.0), "edge_fade": (12.0, 4.0), "sky": ("stormy", "golden-hour"),
           "sky_scale": (1.4, 1.8), "sky_shift_x": (0.1, -0.1), "sky_brightness": (0.5, -0.5),
           "sky_temperature": (0.4, -0.4), "recolour": (0.8, 0.1), "relight": (0.9, 0.1), "halo": (0.5, 0.2),
           "reflection": (0.5, 0.0), "haze": (0.5, 0.8)}


def option_table() -> bc.OptionTable:
    printed = subprocess.run([sys.executable, "-m", "clnsod_core.frontends.bridge", "--print-options"],
                             capture_output=True, text=True, check=True)
    return bc.OptionTable.from_data(json.loads(printed.stdout))


def job_for(path: Path, table: bc.OptionTable) -> bc.Job:
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    return bc.Job(rgba.width, rgba.height, "RGBA8", rgba.tobytes(), {}, table)


def cli_mask_seconds(path: Path, side: int, folder: Path) -> float:
    """One `clnsod mask` process on the preview-sized photo, start to exit."""
    small = folder / f"{path.stem}_preview.png"
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        im.save(small)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clnsod_core.frontends.cli", "mask", str(small), "-o", str(folder / "masks"),
                    "--device", "cpu"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=3, help="updates per setting and photo (alternating values)")
    args = parser.parse_args()
    table = option_table()
    base = dict(table.validate({"device": "cpu", "sky": "blue-cumulus"}))
    per_change: dict[str, list[float]] = {key: [] for key in CHANGES}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_RUNTIME_DIR"] = tmp
        os.chmod(tmp, 0o700)
        print(f"{'photo':34s} {'MP':>5s} {'cold 1st':>9s} {'= start':>8s} {'warm 1st':>9s} "
              f"{'target':>7s} {'mask cli':>9s}")
        for path in PHOTOS:
            if not path.is_file():
                continue
            editor = subprocess.Popen(["sleep", "3600"])  # a fresh "editor": a fresh core
            try:
                job = job_for(path, table)
                start = time.perf_counter()
                client = bc.CoreClient(sys.executable, "bench", editor.pid)
                client.call("hello")
                startup = time.perf_counter() - start
                session = bc.PhotoSession(client, job)
                session.open()
                session.preview(base)
                cold = time.perf_counter() - start
                session.close()
                job = job_for(path, table)  # the same photo again, the core running: a second Replace Sky
                start = time.perf_counter()
                session = bc.PhotoSession(client, job)
                session.open()
                session.preview(dict(base, relight=0.5))
                warm = time.perf_counter() - start
                for key, values in CHANGES.items():
                    for index in range(args.updates):
                        options = dict(base, **{key: values[index % 2]})
                        began = time.perf_counter()
                        session.preview(options)
                        per_change[key].append(time.perf_counter() - began)
                        session.preview(base)  # back to the defaults (not timed)
                session.close()
                mask_s = cli_mask_seconds(path, bc.PREVIEW_SIDE, Path(tmp))
                megapixels = job.width * job.height / 1e6
                print(f"{path.name:34s} {megapixels:5.1f} {cold:8.2f}s {startup:7.2f}s {warm:8.2f}s "
                      f"{mask_s + startup:6.2f}s {mask_s:8.2f}s")
            finally:
                editor.kill()
                editor.wait()
    print("\nupdate after one setting changes (preview ~1000 px; all photos):")
    print(f"{'setting':16s} {'median':>8s} {'max':>7s}")
    everything = []
    for key, times in per_change.items():
        everything += times
        print(f"{key:16s} {statistics.median(times):7.3f}s {max(times):6.3f}s")
    print(f"{'all':16s} {statistics.median(everything):7.3f}s {max(everything):6.3f}s  "
          f"(share <= 0.3 s: {np.mean(np.array(everything) <= 0.3):.0%})")


if __name__ == "__main__":
    main()
