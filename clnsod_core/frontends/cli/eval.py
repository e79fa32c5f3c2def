"""``clnsod eval``: score predicted masks against ground truth (IoU, MAE, max F, S-measure)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
from PIL import Image

from clnsod_core.imaging.io import IMAGE_SUFFIXES
from clnsod_core.masking.metrics import MetricAccumulator


def _by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def _read_gray(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: cannot read mask ({exc})") from None


@click.command("eval")
@click.option("--pred", "pred_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Predicted masks (8-bit, sky = 255), matched to --gt by file stem.")
@click.option("--gt", "gt_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Ground-truth masks (sky > 128).")
@click.option("--void", "void_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Optional void masks (255 = unlabelled, excluded).")
@click.option("--raw", is_flag=True, help="Score raw values instead of pysodmetrics' per-image min-max stretch.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_command(pred_dir: Path, gt_dir: Path, void_dir: Path | None, raw: bool, as_json: bool) -> None:
    """IoU at 0.5, MAE, max F-measure (beta^2 = 0.3) and S-measure of PRED against GT."""
    preds, gts = _by_stem(pred_dir), _by_stem(gt_dir)
    voids = _by_stem(void_dir) if void_dir else {}
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise click.ClickException(f"{len(missing)} ground-truth mask(s) have no prediction in {pred_dir}, e.g. {missing[:3]}")
    if not gts:
        raise click.ClickException(f"no masks found in {gt_dir}")
    acc = MetricAccumulator(with_s_measure=True, stretch=not raw)
    for stem, gt_path in gts.items():
        pred, gt = _read_gray(preds[stem]), _read_gray(gt_path)
        void = _read_gray(voids[stem]) > 127 if stem in voids else None
        if pred.shape != gt.shape:
            raise click.ClickException(f"{preds[stem]}: size {pred.shape[1]}x{pred.shape[0]} differs from {gt_path} ({gt.shape[1]}x{gt.shape[0]})")
        acc.add(pred, gt, void)
    result = acc.result()
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"images     {int(result['images'])}")
        for key in ("iou", "mae", "max_f", "s_measure"):
            click.echo(f"{key:<10} {result[key]:.4f}")
