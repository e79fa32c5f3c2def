"""Colour management and 16-bit output, measured on a real photo (2 threads).

1. The same scene stored in sRGB, Display P3, Adobe RGB (8-bit) and ProPhoto RGB (16-bit), pixels
   converted with LittleCMS and tagged with the profiles in tests/data/icc: CIEDE2000 of the replaced
   sky against the sRGB run after converting each result to sRGB, and what pasting sRGB numbers
   without conversion would give.
2. Banding: a smooth 16-bit sky gradient replaced into a 16-bit photo, written as 16-bit PNG and as
   8-bit: distinct levels and largest step along a sky column (in 16-bit units).
3. Time of a 12 MP replacement (median of --runs, interleaved): 8-bit sRGB, 8-bit Display P3,
   16-bit sRGB, and the 16-bit PNG / TIFF encode against 8-bit PNG.

    python benchmarks/colour_depth.py [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from colour_metrics import delta_e00, srgb_to_lab  # noqa: E402

from clnsod_core.imaging.colour import SRGB, SRGB_ICC, ColourSpace, convert  # noqa: E402
from clnsod_core.imaging.io import PhotoMeta, save_image  # noqa: E402
from clnsod_core.masking.inference import SkyMasker  # noqa: E402
from clnsod_core.replace import ReplaceOptions, SkyImage, SkyReplacer  # noqa: E402

PHOTO = REPO.parent / "shared" / "data" / "photos" / "sunset_by_Aitzol_Berasategi.jpg"  # 4272x2848
ICC = REPO / "tests" / "data" / "icc"
SPACES = [("Display P3", "DisplayP3-v4.icc", 8), ("Adobe RGB", "AdobeRGB1998.icc", 8),
          ("ProPhoto RGB", "ProPhotoRGB.icc", 16)]


def to_space(rgb: np.ndarray, icc: bytes, bits: int) -> np.ndarray:
    pixels = rgb if bits == 8 else rgb.astype(np.uint16) * 257
    return convert(pixels, SRGB, ColourSpace(icc))


def as_srgb_u8(pixels: np.ndarray, space: ColourSpace) -> np.ndarray:
    srgb = convert(pixels, space, SRGB)
    return srgb if srgb.dtype == np.uint8 else ((srgb.astype(np.uint32) + 128) // 257).astype(np.uint8)


def colour_report(replacer: SkyReplacer, rgb: np.ndarray) -> None:
    print(f"1. same scene, other colour spaces ({rgb.shape[1]}x{rgb.shape[0]}, preset clear-blue; ΔE00 in the sky)")
    reference = replacer.replace(rgb, "clear-blue")
    srgb_profile = ImageCms.ImageCmsProfile(io.BytesIO(SRGB_ICC))
    print("   space          bits  mean ΔE00  p95 ΔE00  max   | without conversion: mean  p95")
    for name, file, bits in SPACES:
        icc = (ICC / file).read_bytes()
        space = ColourSpace(icc)
        result = replacer.replace(to_space(rgb, icc, bits), "clear-blue", space=space)
        sky = (reference.matte > 0.99) & (result.matte > 0.99)
        ref_lab = srgb_to_lab(reference.composite[sky])
        diff = delta_e00(ref_lab, srgb_to_lab(as_srgb_u8(result.composite, space)[sky]))
        naive = np.asarray(ImageCms.profileToProfile(Image.fromarray(reference.composite),
                                                     ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb_profile))
        naive_diff = delta_e00(ref_lab, srgb_to_lab(naive[sky]))
        print(f"   {name:<14} {bits:>4}  {diff.mean():9.3f}  {np.percentile(diff, 95):8.3f}  {diff.max():5.2f} |"
              f"  {naive_diff.mean():22.2f}  {np.percentile(naive_diff, 95):4.2f}")


def levels(column: np.ndarray) -> tuple[int, int]:
    return len(np.unique(column)), int(np.abs(np.diff(column.astype(np.int64))).max())


def banding_report(replacer: SkyReplacer, rgb: np.ndarray) -> None:
    photo16 = rgb.astype(np.uint16) * 257
    h, w = rgb.shape[:2]
    t = np.linspace(0, 1, h)[:, None, None]
    gradient = (np.array([0.10, 0.25, 0.55]) + np.array([0.35, 0.37, 0.30]) * t) * np.ones((1, w, 1))
    sky = SkyImage(np.ascontiguousarray((gradient * 65535 + 0.5).astype(np.uint16)))
    result = replacer.replace(photo16, sky, ReplaceOptions())
    rows = np.nonzero((result.matte >= 1.0).all(axis=1))[0]
    column16 = result.composite[rows[2] : rows[-2], w // 2, 2]
    column8 = ((column16.astype(np.uint32) + 128) // 257 * 257).astype(np.uint16)
    print(f"2. banding: smooth 16-bit sky gradient, {len(column16)} sky rows, blue channel, 16-bit units")
    for label, column in (("16-bit output", column16), ("8-bit output ", column8)):
        distinct, step = levels(column)
        print(f"   {label}: {distinct} distinct levels, largest step {step}")


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed_report(replacer: SkyReplacer, big: np.ndarray, runs: int) -> None:
    p3 = (ICC / "DisplayP3-v4.icc").read_bytes()
    cases = {"8-bit sRGB": (big, None), "8-bit Display P3": (to_space(big, p3, 8), ColourSpace(p3)),
             "16-bit sRGB": (big.astype(np.uint16) * 257, None)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved: drift hits every case alike
        for name, (pixels, space) in cases.items():
            times[name].append(median_time(lambda p=pixels, s=space: replacer.replace(p, "sunset", space=s), 1))
    print(f"3. 12 MP replace ({big.shape[1]}x{big.shape[0]}), median of {runs}, without decode/encode")
    base = statistics.median(times["8-bit sRGB"])
    for name, values in times.items():
        print(f"   {name:<17} {statistics.median(values):6.3f} s  ({statistics.median(values) / base:.2f}x)")
    with tempfile.TemporaryDirectory() as tmp:
        for label, pixels, suffix in (("8-bit PNG ", big, ".png"), ("16-bit PNG", cases["16-bit sRGB"][0], ".png"),
                                      ("16-bit TIFF", cases["16-bit sRGB"][0], ".tif")):
            seconds = median_time(lambda p=pixels, s=suffix: save_image(p, Path(tmp) / f"x{s}", PhotoMeta()), runs)
            print(f"   encode {label:<11} {seconds:6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with Image.open(PHOTO) as im:
        big = np.asarray(im.convert("RGB"))
        small = np.asarray(im.convert("RGB").resize((1500, 1000), Image.Resampling.LANCZOS))
    replacer = SkyReplacer(SkyMasker())
    colour_report(replacer, small)
    banding_report(replacer, small)
    speed_report(replacer, big, args.runs)


if __name__ == "__main__":
    main()
