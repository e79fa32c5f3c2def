"""Detail at 100 %: the presets' high-frequency energy per octave against real skies.

Real skies: 256 px windows lying wholly inside the sky (the project's matte, eroded) of the large
photos in ``../shared/data/photos``, at full resolution. Presets: the same windows of each preset
rendered at that photo's sky size, once as ``replace`` renders them now (at the photo's resolution)
and once as before (long side 1280 px, upscaled), the "before".

Per octave k (k = 0: 1-2 px detail, 1: 2-4 px, ...), the RMS of the Laplacian-pyramid band of
luminance (0..1), median over windows. A preset whose fine octaves are far below the real skies'
looks soft at 100 %.

    python benchmarks/sky_detail.py [--photos DIR] [--windows 6] [--octaves 6]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clnsod_core.compositing.compose import lowest_sky_line, sky_region_height
from clnsod_core.compositing.skies import PRESETS, render_preset_float
from clnsod_core.imaging.io import load_photo
from clnsod_core.masking.inference import SkyMasker
from clnsod_core.replace import SkyReplacer

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
WINDOW = 256
OLD_RENDER_SIDE = 1280  # how presets were rendered before they were rendered at the photo's size
LUMA = torch.tensor([0.2126, 0.7152, 0.0722])


def band_energy(rgb: np.ndarray, octaves: int) -> np.ndarray:
    """RMS of each Laplacian-pyramid band of the window's luminance, finest first, (octaves,)."""
    level = (torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)) @ LUMA)[None, None]
    energy = []
    for _ in range(octaves):
        coarse = F.avg_pool2d(level, 2)
        band = level - F.interpolate(coarse, size=level.shape[-2:], mode="bilinear", align_corners=False)
        energy.append(float(band[..., 2:-2, 2:-2].pow(2).mean().sqrt()))
        level = coarse
    return np.array(energy)


def sky_windows(matte: np.ndarray, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to ``count`` (top, left) corners of windows wholly inside the sky (with a 16 px margin)."""
    h, w = matte.shape
    sky = torch.from_numpy((matte > 0.98).astype(np.float32))[None, None]
    inside = -F.max_pool2d(-sky, 33, stride=1, padding=16)[0, 0].numpy() > 0.5  # eroded by 16 px
    candidates = [(t, l) for t in range(0, h - WINDOW, WINDOW // 2) for l in range(0, w - WINDOW, WINDOW // 2)
                  if inside[t : t + WINDOW, l : l + WINDOW].all()]
    if len(candidates) > count:
        candidates = [candidates[i] for i in sorted(rng.choice(len(candidates), count, replace=False))]
    return candidates


def old_render(name: str, width: int, height: int) -> np.ndarray:
    scale = min(1.0, OLD_RENDER_SIDE / max(width, height))
    small = render_preset_float(name, max(8, round(width * scale)), max(8, round(height * scale)), 0)
    tensor = torch.from_numpy(small).permute(2, 0, 1)[None]
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--windows", type=int, default=6, help="sky windows per photo")
    parser.add_argument("--octaves", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    replacer = SkyReplacer(SkyMasker())
    real: list[np.ndarray] = []
    now: dict[str, list[np.ndarray]] = {name: [] for name in PRESETS}
    before: dict[str, list[np.ndarray]] = {name: [] for name in PRESETS}
    for path in sorted(args.photos.glob("*.jpg")):
        photo = load_photo(path)
        matte = replacer.matte(photo)
        windows = sky_windows(matte, args.windows, rng)
        print(f"{path.name}: {photo.shape[1]}x{photo.shape[0]}, {len(windows)} sky windows", flush=True)
        if not windows:
            continue
        h, w = matte.shape
        region_h = sky_region_height(h, lowest_sky_line(matte))
        windows = [(t, l) for t, l in windows if t + WINDOW <= region_h]
        for t, l in windows:
            real.append(band_energy(photo[t : t + WINDOW, l : l + WINDOW] / 255.0, args.octaves))
        for name in PRESETS:
            for renders, sky in ((now, render_preset_float(name, w, region_h, 0)), (before, old_render(name, w, region_h))):
                renders[name].extend(band_energy(sky[t : t + WINDOW, l : l + WINDOW], args.octaves) for t, l in windows)
    real_median = np.median(real, axis=0)
    header = " | ".join(f"{2**k}-{2**(k + 1)} px" for k in range(args.octaves))
    print(f"\nRMS of each octave's luminance band (x1000), median over {len(real)} sky windows of {WINDOW} px")
    print(f"| sky | {header} |\n|---|" + "---|" * args.octaves)
    print("| real skies (photos) | " + " | ".join(f"{1000 * e:.2f}" for e in real_median) + " |")
    for name in PRESETS:
        for label, renders in (("now", now), ("before", before)):
            median = np.median(renders[name], axis=0)
            cells = " | ".join(f"{1000 * e:.2f} ({e / max(r, 1e-9):.2f}x)" for e, r in zip(median, real_median))
            print(f"| {name} ({label}) | {cells} |")


if __name__ == "__main__":
    main()
