"""How the network should look at a photo that is not square: measured, not assumed.

The network's context map has a fixed number of positions (20 x 20 at 320 x 320, 24 x 24 at
384 x 384), so its input is one S x S square. Three ways to feed it a 4:3 or 3:2 photo, each scored
by the final matte (what ``clnsod mask`` writes) against the truth:

- ``squash``: the whole photo resized to S x S, aspect not kept (what the tool does);
- ``letterbox``: the long side resized to S, the short side padded by repeating the edge rows,
  the padding cropped away from the answer (aspect kept, fewer pixels of the photo seen);
- ``tiles``: the short side resized to S, overlapping S squares along the long side (two for
  4:3 and 3:2), their answers blended with weights that trust each square's middle (aspect kept,
  more pixels, at least twice the network cost).

Photos: the skyseg ``val`` photos that are not square (camvid 4:3, stanford ~4:3) and composites
of the fine-structure benchmark (3:2, exact alpha). Same photos and weights for every way.

``--sizes`` also scores the working resolution: the same weights moved to each size
(``trainer/input_size.py``: the context map resampled over its position grid, nothing retrained),
squashed, with each size's network latency as a ratio to the first size's (medians of alternating
runs in this process, timed as ``network_latency.py`` times them).

    python benchmarks/working_size.py [--weights W.pt] [--composites 48] [--sizes 320,352,384,416]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from clnsod_core.masking.inference import embedded_weights_path, predict_working_size  # noqa: E402
from clnsod_core.masking.matte import refine_matte  # noqa: E402
from clnsod_core.masking.metrics import MetricAccumulator  # noqa: E402
from clnsod_core.network.model import CLNSOD  # noqa: E402
from clnsod_core.runtime import tune_allocator  # noqa: E402
from clnsod_core.weights.format import load_model, save_weights  # noqa: E402
from fine_structure import Composite, make_composite, measures  # noqa: E402
from network_latency import make_clnsod, time_alternating  # noqa: E402
from trainer.data import Sample, index_data_dir, load_samples  # noqa: E402
from trainer.input_size import with_input_size  # noqa: E402
from val_report import boundary_band  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CPU = torch.device("cpu")


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))


def squash(model: CLNSOD, image: np.ndarray) -> torch.Tensor:
    return predict_working_size(model, [image], CPU)[0]  # the tool's own path


def letterbox(model: CLNSOD, image: np.ndarray) -> torch.Tensor:
    s = model.config.input_size
    h, w = image.shape[:2]
    nw, nh = (s, max(1, round(h * s / w))) if w >= h else (max(1, round(w * s / h)), s)
    small = _resize(image, nw, nh)
    top, left = (s - nh) // 2, (s - nw) // 2
    padded = np.pad(small, ((top, s - nh - top), (left, s - nw - left), (0, 0)), mode="edge")
    return predict_working_size(model, [padded], CPU)[0, top : top + nh, left : left + nw]


def tiles(model: CLNSOD, image: np.ndarray) -> torch.Tensor:
    s = model.config.input_size
    h, w = image.shape[:2]
    transpose = h > w
    if transpose:
        image = image.transpose(1, 0, 2)
        h, w = w, h
    nw = max(s, round(w * s / h))
    small = _resize(image, nw, s)
    count = max(2, -(-nw // s)) if nw > s else 1  # enough squares to cover the long side, overlapping
    lefts = np.linspace(0, nw - s, count).round().astype(int)
    probs = predict_working_size(model, [np.ascontiguousarray(small[:, x : x + s]) for x in lefts], CPU)
    tent = 1.0 + torch.minimum(torch.arange(s), torch.arange(s).flip(0)).float()  # trust a square's middle most
    total, weight = torch.zeros(s, nw), torch.zeros(1, nw)
    for prob, x in zip(probs, lefts):
        total[:, x : x + s] += prob * tent
        weight[:, x : x + s] += tent
    out = total / weight
    return out.T.contiguous() if transpose else out


WAYS: dict[str, Callable[[CLNSOD, np.ndarray], torch.Tensor]] = {
    "squash": squash, "letterbox": letterbox, "tiles": tiles,
}


def score(model: CLNSOD, way: Callable[[CLNSOD, np.ndarray], torch.Tensor], val: list[Sample],
          composites: list[Composite]) -> str:
    """Table cells: val IoU and band MAE, composites' IoU, MSE and 8-px band error (final matte)."""
    acc, band_err = MetricAccumulator(stretch=False), []
    for s in val:
        matte, gt = refine_matte(s.image, way(model, s.image)), s.mask > 127
        acc.add(matte, gt, s.void)
        band = boundary_band(gt, 8) & (~s.void if s.void is not None else True)
        if band.any():
            band_err.append(float(np.abs(matte[band] - gt[band]).mean()))
    rows = [measures(refine_matte(c.image, way(model, c.image)), c.sky_alpha) for c in composites]
    inter, union = sum(r["inter"] for r in rows), sum(r["union"] for r in rows)
    return (f"{acc.result()['iou']:.4f} | {np.mean(band_err):.4f} | {inter / union:.4f} | "
            f"{np.mean([r['mse'] for r in rows]):.5f} | {np.mean([r['band_err'] for r in rows]):.4f}")


def latency_ratios(models: list[CLNSOD], runs: int = 30) -> list[float]:
    """Each model's median network latency over the first's, timed in alternating rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        nets = []
        for i, model in enumerate(models):
            save_weights(model, Path(tmp) / f"{i}.pt")
            nets.append(make_clnsod(2, str(Path(tmp) / f"{i}.pt"))[0])
    medians = [statistics.median(t) for t in time_alternating(nets, runs, warmup=5)]
    return [m / medians[0] for m in medians]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(embedded_weights_path()))
    parser.add_argument("--composites", type=int, default=48, help="fine-structure composites to score")
    parser.add_argument("--limit", type=int, default=1, help="use every k-th non-square val photo")
    parser.add_argument("--sizes", default="", help="working sizes to move the weights to and score, e.g. 320,384")
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(2)
    model = load_model(Path(args.weights))
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    try:
        moved = [with_input_size(model, size) for size in sizes]
    except ValueError as exc:
        parser.error(f"--sizes: {exc}")
    val = [s for s in load_samples(index_data_dir(SHARED / "skyseg", "val")) if s.image.shape[0] != s.image.shape[1]][:: args.limit]
    print(f"weights {args.weights} ({model.config.input_size} px); {len(val)} non-square val photos, "
          f"{args.composites} composites at 1800x1200\n")
    composites = [make_composite(i) for i in range(args.composites)]
    print("| way | network runs | val IoU | val band MAE | composites IoU | composites MSE | composites 8-px band error |")
    print("|---|---|---|---|---|---|---|")
    for name, way in WAYS.items():
        print(f"| {name} | {'2+' if name == 'tiles' else 1} | {score(model, way, val, composites)} |", flush=True)
    if moved:
        print("\n| working size (squash) | network latency vs the first | val IoU | val band MAE | composites IoU | "
              "composites MSE | composites 8-px band error |")
        print("|---|---|---|---|---|---|---|")
        for size, net, ratio in zip(sizes, moved, latency_ratios(moved)):
            print(f"| {size}x{size} | {ratio:.2f}x | {score(net, squash, val, composites)} |", flush=True)


if __name__ == "__main__":
    main()
