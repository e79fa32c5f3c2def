"""Video quality on clips whose truth is known (``video_clips.py``): where the new sky sits, and how
steady and right the matte is.

1. Sky position: clips rendered by a virtual camera (pan, tilt, roll, zoom, hand-held) over the large
   photos of ../shared/data/photos, one of them with its sky replaced by a featureless gradient, and
   one whose real sky is a featureless dusk gradient. Reported: the mean distance (frame pixels)
   between where the new sky is shown and where it belongs, per frame, its mean over the clip, and
   the drift (the error at the clip's last frame) as a share of the frame width.
2. Matte flicker: static-camera clips (sensor noise, JPEG and H.264 loss): the mean absolute
   frame-to-frame change of the matte (where the scene does not change: away from moving objects),
   for each frame's own matte and for the steady one; their ratio.
3. Matte accuracy: moving-camera clips (hand-held, and a pan with a bird crossing the sky) over
   validation photos of ../shared/data/skyseg whose sky mask is known: the per-frame IoU of each
   frame's own matte and of the steady one against the truth, and around the bird (does the steady
   matte follow a moving object without lag?).

    python benchmarks/video_quality.py [--size 1920x1080] [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import video_clips as clips  # noqa: E402  (a benchmark helper beside this script)

from clnsod_core.masking.inference import SkyMasker  # noqa: E402
from clnsod_core.replace import SkyReplacer  # noqa: E402
from clnsod_core.runtime import tune_allocator  # noqa: E402
from clnsod_core.video.container import probe  # noqa: E402
from clnsod_core.video.pipeline import VideoReplacer, VideoSettings, analyse_camera  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTOS = DATA / "photos"
# (photo, the row its first frame looks at): photos whose frames show sky and land.
MOTION_PHOTOS = (("picosdeeuropa_by_Aitzol_Berasategi.jpg", 0.42), ("plasma_EveningGlow.jpg", 0.42),
                 ("plasma_summer_1am.jpg", 0.5), ("sunset_by_Aitzol_Berasategi.jpg", 0.45))
GRADIENT_PHOTO = ("picosdeeuropa_by_Aitzol_Berasategi.jpg", 0.42)  # its sky replaced by a gradient
STATIC_PHOTOS = (("picosdeeuropa_by_Aitzol_Berasategi.jpg", 0.42), ("Bridge_by_Sander_Klootwijk.jpg", 0.45),
                 ("plasma_EveningGlow.jpg", 0.42), ("sunset_by_Aitzol_Berasategi.jpg", 0.45))
MOVING_MARGIN = 0.02  # pixels this far (share of the long side) from a moving object count as changing


def position_errors(estimated: list[np.ndarray], truth: list[np.ndarray], width: int, height: int,
                    step: int = 16) -> np.ndarray:
    """Per frame: the mean distance between where a first-frame point is shown (the estimate) and where
    it belongs (the truth), over a grid of the frame."""
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    points = np.c_[xs.ravel(), ys.ravel(), np.ones(xs.size)]
    errors = []
    for est, true in zip(estimated, truth, strict=True):
        first = points @ np.linalg.inv(est).T  # the first-frame point shown at each frame point
        shown = first @ true.T
        errors.append(float(np.linalg.norm(shown[:, :2] / shown[:, 2:3] - points[:, :2], axis=1).mean()))
    return np.array(errors)


def flicker(mattes: list[np.ndarray], moving: list[np.ndarray]) -> float:
    """Mean absolute frame-to-frame change of the matte over pixels where the scene does not change
    (away from moving objects in either frame)."""
    import cv2

    changes = []
    for t in range(1, len(mattes)):
        busy = (moving[t] | moving[t - 1]).astype(np.uint8)
        radius = max(1, round(MOVING_MARGIN * max(busy.shape)))
        busy = cv2.dilate(busy, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)).astype(bool)
        still = ~busy
        changes.append(float(np.abs(mattes[t] - mattes[t - 1])[still].mean()))
    return float(np.mean(changes))


def iou(matte: np.ndarray, truth: np.ndarray) -> float:
    a, b = matte >= 0.5, truth >= 0.5
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def load_photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS / name).convert("RGB"))


def motion_case(photo: np.ndarray, look_at: float, motion: str, size: tuple[int, int], seconds: float,
                folder: Path, name: str) -> dict:
    """The sky-position error of one clip, through the real decoder and camera analysis."""
    clip = clips.render_clip(photo, size, motion, seconds=seconds, look_at=look_at, seed=len(name))
    path = folder / f"{name}.mp4"
    clips.write_clip(clip.frames, path, clip.fps)
    camera = analyse_camera(probe(path), VideoSettings())
    errors = position_errors(camera.smoothed, clip.truth, *size)
    return {"clip": name, "motion": motion, "frames": len(errors), "mean_px": float(errors.mean()),
            "max_px": float(errors.max()), "drift_px": float(errors[-1]),
            "drift_share_of_width": float(errors[-1] / size[0]), "tracked_share": float(np.mean(camera.tracked))}


def matte_case(video: VideoReplacer, clip: clips.Clip, folder: Path, name: str) -> dict:
    """Flicker and IoU of each frame's own matte and of the steady one, through the real pipeline."""
    path = folder / f"{name}.mp4"
    clips.write_clip(clip.frames, path, clip.fps)
    info = probe(path)
    settings = VideoSettings()
    camera = analyse_camera(info, settings)
    single, steady = [], []
    for item in video.mattes(info, camera, settings):
        single.append(item.single)
        steady.append(item.matte)
    row = {"clip": name, "frames": len(single), "flicker_single": flicker(single, clip.moving),
           "flicker_steady": flicker(steady, clip.moving)}
    row["flicker_ratio"] = row["flicker_single"] / max(row["flicker_steady"], 1e-9)
    if clip.masks is not None:
        row["iou_single"] = float(np.mean([iou(m, t) for m, t in zip(single, clip.masks, strict=True)]))
        row["iou_steady"] = float(np.mean([iou(m, t) for m, t in zip(steady, clip.masks, strict=True)]))
        moving = [t for t, m in enumerate(clip.moving) if m.any()]
        if moving:  # the bird: does the steady matte follow it without lag?
            row["bird_iou_single"] = float(np.mean([_local_iou(single[t], clip.masks[t], clip.moving[t]) for t in moving]))
            row["bird_iou_steady"] = float(np.mean([_local_iou(steady[t], clip.masks[t], clip.moving[t]) for t in moving]))
    return row


def _local_iou(matte: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """IoU of the foreground (1 - sky) in the bounding box of ``region``, grown by its own size."""
    ys, xs = np.nonzero(region)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    box = (slice(max(0, ys.min() - h), ys.max() + h + 1), slice(max(0, xs.min() - w), xs.max() + w + 1))
    return iou(1 - matte[box], 1 - truth[box])


def skyseg_val(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation photos with sky masks (horizon_uav, camvid, stanford, in index order), sky 15-70 %."""
    rows = [json.loads(line) for line in (DATA / "skyseg" / "index.jsonl").read_text().splitlines()]
    chosen = []
    for dataset in ("horizon_uav", "camvid", "stanford"):
        picked = [r for r in rows if r["dataset"] == dataset and r["split"] == "val" and 0.15 <= r["sky_frac"] <= 0.7]
        chosen += picked[: (count + 2) // 3]
    out = []
    for row in chosen[:count]:
        folder = DATA / "skyseg" / row["dataset"]
        image = next((folder / "images").glob(row["id"] + ".*"))
        mask = np.asarray(Image.open(folder / "masks" / f"{row['id']}.png").convert("L"), np.float32) / 255
        out.append((np.asarray(Image.open(image).convert("RGB")), mask))
    return out


def gradient_version(replacer: SkyReplacer, photo: np.ndarray) -> np.ndarray:
    """The photo with its sky (as the model sees it) replaced by a featureless gradient."""
    return clips.gradient_sky(photo, replacer.matte(photo))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1920x1080", help="frame size of the motion clips")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the motion clips")
    parser.add_argument("--matte-size", default="960x540", help="frame size of the matte clips")
    parser.add_argument("--matte-seconds", type=float, default=3.0)
    parser.add_argument("--gt-photos", type=int, default=6, help="skyseg validation photos for the IoU clips")
    parser.add_argument("--parts", default="position,flicker,iou", help="which measures to run (comma-separated)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tune_allocator()
    size = tuple(int(v) for v in args.size.split("x"))
    matte_size = tuple(int(v) for v in args.matte_size.split("x"))
    replacer = SkyReplacer(SkyMasker())
    video = VideoReplacer(replacer)
    parts = set(args.parts.split(","))
    report: dict[str, list[dict]] = {"position": [], "flicker": [], "iou": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [(name, look, motion) for name, look in MOTION_PHOTOS for motion in clips.MOTIONS[1:]
                 if "position" in parts]
        for name, look, motion in cases:
            row = motion_case(load_photo(name), look, motion, size, args.seconds, folder, f"{Path(name).stem}-{motion}")
            report["position"].append(row)
            print(f"position {row['clip']:45s} mean {row['mean_px']:.3f} px  max {row['max_px']:.3f} px  "
                  f"drift {100 * row['drift_share_of_width']:.3f} % of width", flush=True)
        name, look = GRADIENT_PHOTO
        flat = gradient_version(replacer, load_photo(name)) if "position" in parts else None
        for motion in clips.MOTIONS[1:] if "position" in parts else ():
            row = motion_case(flat, look, motion, size, args.seconds, folder, f"gradient-sky-{motion}")
            report["position"].append(row)
            print(f"position {row['clip']:45s} mean {row['mean_px']:.3f} px  max {row['max_px']:.3f} px  "
                  f"drift {100 * row['drift_share_of_width']:.3f} % of width", flush=True)
        for name, look in STATIC_PHOTOS if "flicker" in parts else ():
            clip = clips.render_clip(load_photo(name), matte_size, "static", seconds=args.matte_seconds,
                                     look_at=look, seed=1)
            row = matte_case(video, clip, folder, f"static-{Path(name).stem}")
            report["flicker"].append(row)
            print(f"flicker  {row['clip']:45s} single {row['flicker_single']:.5f}  steady {row['flicker_steady']:.5f}  "
                  f"ratio {row['flicker_ratio']:.1f}", flush=True)
        for index, (photo, mask) in enumerate(skyseg_val(args.gt_photos) if "iou" in parts else ()):
            for motion in ("handheld", "pan"):
                clip = clips.render_clip(photo, (384, 216), motion, seconds=args.matte_seconds, sky=mask,
                                         bird=motion == "pan", seed=index, view_share=0.75)
                row = matte_case(video, clip, folder, f"skyseg-{index}-{motion}")
                report["iou"].append(row)
                print(f"iou      {row['clip']:45s} single {row['iou_single']:.4f}  steady {row['iou_steady']:.4f}  "
                      f"flicker ratio {row['flicker_ratio']:.1f}", flush=True)
    position = report["position"]
    summary: dict[str, float] = {"seconds": time.perf_counter() - started}
    if position:
        summary["position_mean_px"] = float(np.mean([r["mean_px"] for r in position]))
        summary["position_worst_clip_mean_px"] = float(max(r["mean_px"] for r in position))
        summary["drift_worst_share_of_width"] = float(max(r["drift_share_of_width"] for r in position))
    if report["flicker"]:
        summary["flicker_ratio_median"] = float(np.median([r["flicker_ratio"] for r in report["flicker"]]))
        summary["flicker_ratio_min"] = float(min(r["flicker_ratio"] for r in report["flicker"]))
    if report["iou"]:
        summary["iou_single_mean"] = float(np.mean([r["iou_single"] for r in report["iou"]]))
        summary["iou_steady_mean"] = float(np.mean([r["iou_steady"] for r in report["iou"]]))
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, **report}, indent=1))


if __name__ == "__main__":
    main()
