"""What each stage of the full-resolution matte costs: the matte with its learned refiner turned on, as
by default (without it), and without the colour model too, timed in alternating rounds in one process on the large shared
photos resized to each size, from the same network answer (2 threads, medians).

    python benchmarks/matte_speed.py [--sizes 12,24] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from network_latency import time_alternating  # noqa: E402  (a sibling benchmark script)

from clnsod_core.masking.inference import SkyMasker  # noqa: E402
from clnsod_core.masking.matte import MatteOptions, matte_guide, sky_matte  # noqa: E402
from clnsod_core.runtime import tune_allocator  # noqa: E402

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "sunset_by_Aitzol_Berasategi.jpg"
VARIANTS = {
    "with the learned refiner": MatteOptions(learned_refiner=True),
    "matte (default)": MatteOptions(),
    "no colour model": MatteOptions(colour_zone=0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="12,24", help="megapixels, comma separated")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--photo", default=str(PHOTO))
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(2)
    masker = SkyMasker(device="cpu")
    with Image.open(args.photo) as im:
        source = im.convert("RGB")
    print("| MP | " + " | ".join(VARIANTS) + " | refiner's share |")
    print("|---|" + "---|" * (len(VARIANTS) + 1))
    for mp in (float(v) for v in args.sizes.split(",")):
        scale = (mp * 1e6 / (source.width * source.height)) ** 0.5
        photo = np.asarray(source.resize((round(source.width * scale), round(source.height * scale)), Image.Resampling.BILINEAR))
        prob = masker.predict_working_size([photo])[0]
        guide = matte_guide(photo)
        runs = [lambda o=options: sky_matte(photo, prob, o, guide) for options in VARIANTS.values()]
        medians = [statistics.median(t) for t in time_alternating(runs, args.rounds, warmup=1)]
        cells = " | ".join(f"{m:.0f} ms" for m in medians)
        print(f"| {mp:g} | {cells} | {medians[0] - medians[1]:.0f} ms ({medians[0] / medians[1]:.2f}x) |")


if __name__ == "__main__":
    main()
