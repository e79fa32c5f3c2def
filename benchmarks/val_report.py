"""Per-dataset validation metrics of one or more weight files, side by side (markdown).

Scores raw probabilities at each photo's original size on the fixed ``val`` split, void
excluded: IoU at 0.5, MAE, max F (beta^2 = 0.3), the two confusion rates (foreground
called sky, sky called foreground) and the mean absolute error inside a band around the
sky line. Three upsamplings of the same network output are scored: ``bilinear`` (plain),
``matte`` (the edge-aware matte that ``clnsod mask`` writes) and ``matte-no-colour`` (the same
without its colour model, to see what that adds); with ``--refiner-too`` also ``matte-refiner``
(the matte with its learned refiner turned on).

    python benchmarks/val_report.py --weights clnsod_core/weights/clnsod-lite0-384-v6.pt \\
        --weights /path/to/ablation/weights.pt --data ../shared/data/skyseg
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clnsod_core.masking.inference import predict_working_size, upsample_probability
from clnsod_core.masking.matte import MatteOptions, refine_matte
from clnsod_core.masking.metrics import MetricAccumulator
from clnsod_core.runtime import tune_allocator
from clnsod_core.weights.format import load_model
from trainer.data import index_data_dir, load_samples


def boundary_band(gt: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of the sky/foreground boundary."""
    t = torch.from_numpy(gt.astype(np.float32))[None, None]
    k = 2 * radius + 1
    dilated = F.max_pool2d(t, k, stride=1, padding=radius)
    eroded = -F.max_pool2d(-t, k, stride=1, padding=radius)
    return (dilated != eroded)[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", required=True)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/skyseg"))
    parser.add_argument("--band", type=int, default=8, help="band radius in pixels around the sky line")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    parser.add_argument("--refiner-too", action="store_true",
                        help="also score the matte with its learned refiner turned on (matte-refiner)")
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(2)
    samples = load_samples(index_data_dir(Path(args.data), "val"))
    report: dict[str, dict[str, dict[str, float]]] = {}
    for weights in args.weights:
        model = load_model(Path(weights))
        accs: dict[tuple[str, str], MetricAccumulator] = {}
        band_err: dict[tuple[str, str], list[float]] = {}
        for sample in samples:
            small = predict_working_size(model, [sample.image], torch.device("cpu"))[0]
            gt = sample.mask > 127
            band = boundary_band(gt, args.band)
            if sample.void is not None:
                band &= ~sample.void
            outputs = {
                "bilinear": upsample_probability(small, gt.shape),
                "matte": refine_matte(sample.image, small),
                "matte-no-colour": refine_matte(sample.image, small, MatteOptions(colour_zone=0)),
            }
            if args.refiner_too:
                outputs["matte-refiner"] = refine_matte(sample.image, small, MatteOptions(learned_refiner=True))
            for pipeline, prob in outputs.items():
                key = (sample.ref.dataset, pipeline)
                accs.setdefault(key, MetricAccumulator(stretch=False)).add(prob, gt, sample.void)
                if band.any():
                    band_err.setdefault(key, []).append(float(np.abs(prob[band] - gt[band]).mean()))
        report[weights] = {
            f"{name}/{pipeline}": {**acc.result(), "band_mae": float(np.mean(band_err.get((name, pipeline), [0.0])))}
            for (name, pipeline), acc in sorted(accs.items())
        }
    keys = ["iou", "mae", "max_f", "fg_as_sky", "sky_as_fg", "band_mae"]
    print(f"| weights | dataset/upsampling | images | {' | '.join(keys)} |")
    print("|" + "---|" * (len(keys) + 3))
    for weights, per in report.items():
        for name, m in per.items():
            cells = " | ".join(f"{m[k]:.4f}" for k in keys)
            print(f"| {Path(weights).parent.name}/{Path(weights).name} | {name} | {int(m['images'])} | {cells} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
