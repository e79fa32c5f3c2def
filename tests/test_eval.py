"""``clnsod eval`` must agree with pysodmetrics on the same masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import py_sod_metrics
import pytest
from cli_runner import run_cli
from PIL import Image, ImageFilter

from clnsod_core.masking.metrics import MetricAccumulator


@pytest.fixture(scope="module")
def pred_gt(skyseg: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Real val ground truths and imperfect 'predictions' made from them (blurred, shifted, noisy)."""
    root = tmp_path_factory.mktemp("eval")
    (root / "gt").mkdir()
    (root / "pred").mkdir()
    rng = np.random.default_rng(0)
    rows = [json.loads(line) for line in (skyseg / "index.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "val"][::40]
    for i, row in enumerate(rows):
        with Image.open(skyseg / row["dataset"] / "masks" / f"{row['id']}.png") as im:
            gt = im.convert("L")
        gt.save(root / "gt" / f"{row['id']}.png")
        pred = np.asarray(gt.filter(ImageFilter.GaussianBlur(3 + i % 5))).astype(np.float64)
        pred = np.roll(pred, i % 7 - 3, axis=0) * rng.uniform(0.7, 1.0) + rng.normal(0, 12, pred.shape)
        Image.fromarray(np.clip(pred, 0, 255).astype(np.uint8)).save(root / "pred" / f"{row['id']}.png")
    return root / "pred", root / "gt"


@pytest.mark.filterwarnings("ignore:This class will be removed")
def test_metrics_agree_with_pysodmetrics(pred_gt: tuple[Path, Path]) -> None:
    pred_dir, gt_dir = pred_gt
    mae, fm, sm = py_sod_metrics.MAE(), py_sod_metrics.Fmeasure(), py_sod_metrics.Smeasure()
    ours = MetricAccumulator(with_s_measure=True)
    for gt_path in sorted(gt_dir.iterdir()):
        gt = np.asarray(Image.open(gt_path).convert("L"))
        pred = np.asarray(Image.open(pred_dir / gt_path.name).convert("L"))
        for metric in (mae, fm, sm):
            metric.step(pred=pred, gt=gt)
        ours.add(pred, gt)
    result = ours.result()
    assert result["images"] >= 20
    assert result["mae"] == pytest.approx(mae.get_results()["mae"], abs=1e-9)
    assert result["max_f"] == pytest.approx(fm.get_results()["fm"]["curve"].max(), abs=1e-9)
    assert result["s_measure"] == pytest.approx(sm.get_results()["sm"], abs=1e-9)

    cli = run_cli("eval", "--pred", pred_dir, "--gt", gt_dir, "--json")
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    for key in ("mae", "max_f", "s_measure", "iou"):
        assert printed[key] == pytest.approx(result[key], abs=1e-9)


def test_iou_and_void_handling() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[:5] = 255
    pred = np.zeros((10, 10), np.uint8)
    pred[:6] = 200  # one wrong row
    acc = MetricAccumulator(stretch=False)
    acc.add(pred, gt)
    assert acc.result()["iou"] == pytest.approx(50 / 60)
    void = np.zeros((10, 10), bool)
    void[5] = True  # the wrong row is unlabelled
    acc = MetricAccumulator(stretch=False)
    acc.add(pred, gt, void)
    assert acc.result()["iou"] == pytest.approx(1.0)
    assert acc.result()["mae"] == pytest.approx(np.abs(200 / 255 - 1) * 50 / 90)


def test_missing_prediction_is_a_clear_error(pred_gt: tuple[Path, Path], tmp_path: Path) -> None:
    pred_dir, gt_dir = pred_gt
    partial = tmp_path / "pred"
    partial.mkdir()
    first = sorted(pred_dir.iterdir())[0]
    (partial / first.name).write_bytes(first.read_bytes())
    cli = run_cli("eval", "--pred", partial, "--gt", gt_dir)
    assert cli.returncode == 1 and "have no prediction" in cli.stderr
