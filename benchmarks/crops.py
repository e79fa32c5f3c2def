"""Look at it: full-size composites of the shared photos and 100 % crops at the sky line, before/after.

For every photo in ``../shared/data/photos`` (or the folders given) and every weights file, the
composite with a contrasting preset is written at full size, and a 100 % crop (no scaling) centred
on the most detailed stretch of the sky line is put side by side for all weights, with the mattes
below, so the before/after difference is seen at the pixel level.

    python benchmarks/crops.py --weights OLD.pt --weights clnsod_core/weights/clnsod-lite0-384-v6.pt --out /tmp/crops
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from clnsod_core.imaging.io import load_photo
from clnsod_core.masking.inference import SkyMasker
from clnsod_core.masking.matte import MatteOptions
from clnsod_core.replace import ReplaceOptions, SkyReplacer

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
CROP = 512


def detailed_sky_line_window(matte: np.ndarray, size: int = CROP) -> tuple[int, int]:
    """(top, left) of the ``size`` square where the matte has the most partial / changing values."""
    h, w = matte.shape
    edge = ((matte > 0.05) & (matte < 0.95)).astype(np.float32)
    edge[:, 1:] += np.abs(np.diff(matte, axis=1)) > 0.2
    step = max(1, size // 4)
    best, best_score = (0, 0), -1.0
    for top in range(0, max(1, h - size + 1), step):
        for left in range(0, max(1, w - size + 1), step):
            score = float(edge[top : top + size, left : left + size].sum())
            if score > best_score:
                best, best_score = (top, left), score
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", required=True)
    parser.add_argument("--photos", action="append", default=None, help="folder of photos (default: shared photos)")
    parser.add_argument("--sky", default="sunset", help="preset or sky file (a contrasting one shows the edges)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--refiner-too", action="store_true",
                        help="also show each weights file with the matte's learned refiner turned on (after it)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folders = [Path(p) for p in (args.photos or [str(PHOTOS)])]
    photos = sorted(p for folder in folders for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    replacers = {w: SkyReplacer(SkyMasker(w, device="cpu")) for w in args.weights}
    variants = []  # (label, weights, options), oldest first
    for w in args.weights:
        variants.append((Path(w).stem, w, ReplaceOptions()))
        if args.refiner_too:
            variants.append((f"{Path(w).stem}-refiner", w, ReplaceOptions(matte=MatteOptions(learned_refiner=True))))
    for photo_path in photos:
        photo = load_photo(photo_path)
        results = {label: replacers[w].replace(photo, args.sky, options) for label, w, options in variants}
        anchor = results[variants[-1][0]].matte  # crop where the newest variant sees the most detail
        top, left = detailed_sky_line_window(anchor)
        size = min(CROP, photo.shape[0], photo.shape[1])
        tiles = []
        for name, result in results.items():
            Image.fromarray(result.composite).save(out / f"{photo_path.stem}__{name}.jpg", quality=92)
            comp = result.composite[top : top + size, left : left + size]
            matte = (result.matte[top : top + size, left : left + size] * 255 + 0.5).astype(np.uint8)
            tiles.append(np.concatenate([comp, np.repeat(matte[..., None], 3, axis=2)], axis=0))
        original = photo[top : top + size, left : left + size]
        sheet = Image.fromarray(np.concatenate([np.concatenate([original, original], axis=0), *tiles], axis=1))
        draw = ImageDraw.Draw(sheet)
        for i, label in enumerate(["original", *results]):
            draw.text((i * size + 6, 6), label, fill=(255, 0, 255))
        sheet.save(out / f"{photo_path.stem}__crop100.png")
        print(f"{photo_path.name}: crop at ({left}, {top}); " + ", ".join(
            f"{name}: sky {100 * (r.matte >= 0.5).mean():.1f}%" for name, r in results.items()))


if __name__ == "__main__":
    main()
