"""Where reflections are found, and what they change: real photos with and without water.

For the skyseg ``val`` photos (siftflow by scene category: coast scenes often show water, forests,
streets and tall buildings none; sea_sky: open sea) and the large photos in ``../shared/data/photos``:
how many get a reflection, how much of the frame it covers, how far the reflected pixels moved
towards the mirrored new sky (mean RGB distance to it, before -> after, 0..255), and a check that no
pixel outside the reflection (land, boats, the sky itself) changed.

    python benchmarks/reflections.py [--sky blue-cumulus] [--limit N]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from clnsod_core.compositing.compose import Harmonisation
from clnsod_core.imaging.io import load_photo
from clnsod_core.masking.inference import SkyMasker
from clnsod_core.replace import ReplaceOptions, SkyReplacer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def photos(limit: int | None) -> list[tuple[str, Path]]:
    rows = [json.loads(line) for line in (SHARED / "skyseg" / "index.jsonl").read_text().splitlines()]
    found: list[tuple[str, Path]] = []
    for row in rows:
        if row["split"] != "val" or row["dataset"] not in ("siftflow", "sea_sky"):
            continue
        group = row["id"].split("_")[0] if row["dataset"] == "siftflow" else "sea_sky"
        found.append((group, SHARED / "skyseg" / row["dataset"] / "images" / f"{row['id']}.jpg"))
    if limit:
        by_group: dict[str, list[tuple[str, Path]]] = defaultdict(list)
        for item in found:
            by_group[item[0]].append(item)
        found = [item for items in by_group.values() for item in items[:limit]]
    return found + [("photos", p) for p in sorted((SHARED / "photos").glob("*.jpg"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sky", default="blue-cumulus")
    parser.add_argument("--limit", type=int, default=None, help="photos per group of the skyseg sets")
    args = parser.parse_args()
    torch.set_num_threads(2)
    replacer = SkyReplacer(SkyMasker())
    with_water = ReplaceOptions()
    without = ReplaceOptions(harmonisation=Harmonisation(reflection=0.0))
    stats: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    changed_outside = 0
    detected_photos = []
    for group, path in photos(args.limit):
        photo = load_photo(path)
        counts[group] += 1
        result = replacer.replace(photo, args.sky, with_water)
        if result.reflection is None:
            continue
        plain = replacer.replace(photo, args.sky, without).composite
        alpha = result.reflection_matte
        outside = alpha == 0
        changed_outside += int((result.composite[outside] != plain[outside]).any())
        layer = result.reflection[..., :3].astype(np.float32)
        water = alpha > 0.5
        if water.any():
            before = np.abs(plain[water].astype(np.float32) - layer[water]).sum(axis=-1).mean() / 3
            after = np.abs(result.composite[water].astype(np.float32) - layer[water]).sum(axis=-1).mean() / 3
            stats[group].append((float(alpha.mean()), float(before), float(after)))
        detected_photos.append(f"{group}/{path.name}")
    print(f"sky {args.sky}; reflection found in:")
    print("| photos | count | with reflection | mean share of the frame | distance to the mirrored new sky before -> after |")
    print("|---|---|---|---|---|")
    for group in sorted(counts):
        rows = stats[group]
        share = f"{np.mean([r[0] for r in rows]):.1%}" if rows else "-"
        moved = f"{np.mean([r[1] for r in rows]):.1f} -> {np.mean([r[2] for r in rows]):.1f}" if rows else "-"
        print(f"| {group} | {counts[group]} | {len(rows)} | {share} | {moved} |")
    print(f"photos where a pixel outside the reflection changed: {changed_outside}")
    print("with reflection:", ", ".join(detected_photos))


if __name__ == "__main__":
    main()
