"""``clnsod train`` on real photos: a few steps, exact resume, DDP with 2 CPU processes, and ``train()``
reporting through its callback instead of printing."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli

from clnsod_core.options import DEVICES
from clnsod_core.weights.format import load_model

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def train(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli("train", *args, env=ONE_THREAD, timeout=600)


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def indexed_copy(tiny_dataset: Path, root: Path, train_count: int, val_count: int) -> Path:
    """``tiny_dataset`` as an index.jsonl dataset with a validation split (the folder layout has none)."""
    root.mkdir()
    (root / "mine").symlink_to(tiny_dataset, target_is_directory=True)
    ids = sorted(p.stem for p in (tiny_dataset / "images").iterdir())[: train_count + val_count]
    rows = [{"dataset": "mine", "id": sid, "split": "train" if n < train_count else "val",
             "void": (tiny_dataset / "void" / f"{sid}.png").is_file()} for n, sid in enumerate(ids)]
    (root / "index.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def test_resume_continues_exactly(tiny_dataset: Path, tmp_path: Path) -> None:
    common = ["--data", tiny_dataset, "--batch-size", "2", "--epochs", "2", "--checkpoint-every", "2", "--threads", "1"]
    straight = train(*common, "--out", tmp_path / "a", "--max-steps", "4")
    assert straight.returncode == 0, straight.stderr
    assert "loaded 12 train / 0 val samples" in straight.stderr and "epoch 1/2 loss " in straight.stderr
    assert "Warning" not in straight.stderr and "Traceback" not in straight.stderr
    first = train(*common, "--out", tmp_path / "b", "--max-steps", "2")
    assert first.returncode == 0, first.stderr
    resumed = train(*common, "--out", tmp_path / "b", "--max-steps", "4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "at step 2" in resumed.stderr
    a, b = state(tmp_path / "a" / "weights.pt"), state(tmp_path / "b" / "weights.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = torch.load(tmp_path / "b" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["scheduler"]["last_epoch"] == 4
    model = load_model(tmp_path / "b" / "weights.pt")  # the final file loads as a model
    assert model.config.input_size == 384  # the default weights' size, kept when fine-tuning


def test_train_at_another_size(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train("--data", tiny_dataset, "--out", tmp_path / "run", "--input-size", "352", "--batch-size", "2",
                   "--max-steps", "1", "--threads", "1", "--no-validate")
    assert result.returncode == 0, result.stderr
    assert load_model(tmp_path / "run" / "weights.pt").config.input_size == 352


@pytest.mark.parametrize("size", ["350", "32"])
def test_train_refuses_a_size_the_network_cannot_take(tiny_dataset: Path, tmp_path: Path, size: str) -> None:
    result = train("--data", tiny_dataset, "--out", tmp_path / "run", "--input-size", size, "--max-steps", "1")
    assert result.returncode == 2 and "--input-size" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_truncated_checkpoint_is_detected(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    result = train("--data", tiny_dataset, "--out", out, "--resume", "--max-steps", "1")
    assert result.returncode == 1
    assert "checkpoint is unreadable or truncated" in result.stderr and "Traceback" not in result.stderr


def test_ddp_two_cpu_processes(tiny_dataset: Path, tmp_path: Path) -> None:
    # torchrun starts the same ``-m clnsod_core.frontends.cli`` that cli_runner runs, once per process.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = run_cli("train", "--data", tiny_dataset, "--out", tmp_path / "ddp", "--batch-size", "2", "--max-steps", "3",
                     "--threads", "1", "--init", "imagenet", "--no-context", launcher=torchrun, env=ONE_THREAD,
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("loaded 12 train") == 1  # only the main process reports
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "2 process(es) on cpu" in log
    ckpt = torch.load(tmp_path / "ddp" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert load_model(tmp_path / "ddp" / "weights.pt").context is None


def test_no_context_conflicts_with_context_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train("--data", tiny_dataset, "--out", tmp_path / "x", "--no-context", "--max-steps", "1")
    assert result.returncode == 1
    assert "these weights have the context-aware map" in result.stderr and "Traceback" not in result.stderr


def test_no_affinity_loss_keeps_the_map_but_not_its_loss(tiny_dataset: Path, tmp_path: Path) -> None:
    """The second ablation: the same first step with and without the affinity loss (same weights, seed
    and batch) differs by exactly that loss; the context-aware map stays in the network, and the
    checkpoint records the setting, which ``--resume`` replays."""
    losses = {}
    for name, extra in (("with", ()), ("without", ("--no-affinity-loss",))):
        result = train("--data", tiny_dataset, "--out", tmp_path / name, "--batch-size", "2", "--max-steps", "1",
                       "--threads", "1", "--no-validate", *extra)
        assert result.returncode == 0, result.stderr
        losses[name] = float(re.findall(r"loss (\d+\.\d+)", result.stderr)[-1])
    assert losses["with"] - losses["without"] > 0.1  # the affinity loss of an untuned 400 x 400 map is ~1
    saved = torch.load(tmp_path / "without" / "last.pt", map_location="cpu", weights_only=True)
    assert saved["train_config"]["affinity_weight"] == 0.0
    assert load_model(tmp_path / "without" / "weights.pt").context is not None


def test_device_choices_are_the_cores(tiny_dataset: Path, tmp_path: Path) -> None:
    shown = run_cli("train", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "|".join(DEVICES) in shown.stdout
    if not torch.cuda.is_available():
        missing = train("--data", tiny_dataset, "--out", tmp_path / "x", "--device", "cuda")
        assert missing.returncode == 2 and "no CUDA GPU" in missing.stderr


def test_train_reports_through_the_callback_and_prints_nothing(
    tiny_dataset: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """In-process ``train()``: one epoch of two steps, then validation; every event reaches the callback
    in order, nothing reaches stdout/stderr, train.log and metrics.jsonl are still written."""
    from clnsod_core.masking.inference import embedded_weights_path
    from trainer.train import TrainConfig, TrainEvent
    from trainer.train import train as train_in_process

    data = indexed_copy(tiny_dataset, tmp_path / "indexed", train_count=4, val_count=2)
    out = tmp_path / "run"
    cfg = TrainConfig(data=[str(data)], out=str(out), epochs=1, batch_size=2, imagenet_init=False,
                      init_weights=str(embedded_weights_path()))
    events: list[TrainEvent] = []
    capfd.readouterr()
    metrics = train_in_process(cfg, on_event=events.append)
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""

    assert [e.kind for e in events] == ["loaded", "step", "step", "validation", "checkpoint", "done"]
    loaded, first, second, validation, _, done = events
    assert loaded.message.startswith("loaded 4 train / 2 val samples") and loaded.step == 0
    assert [first.step, second.step] == [1, 2] and all(e.total_steps == 2 and e.epochs == 1 for e in events)
    assert all(e.loss is not None and math.isfinite(e.loss) for e in (first, second))
    assert validation.metrics is not None and set(validation.metrics) == {"mine"}
    assert validation.message.startswith("validation epoch 1: mine: IoU=")
    assert done.metrics == metrics == validation.metrics and str(out / "weights.pt") in done.message
    assert "loaded 4 train / 2 val samples" in (out / "train.log").read_text()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_freeze_norm_keeps_the_start_weights_batchnorm_statistics(landscape_photo: Path) -> None:
    """One real training step on a real photo: with --freeze-norm the BatchNorm running statistics
    of the embedded weights stay as they were; without it they move."""
    import numpy as np
    from PIL import Image

    from clnsod_core.weights.registry import resolve_weights
    from trainer.data import Sample, SampleRef
    from trainer.train import set_training_mode, validate

    size = load_model(resolve_weights(None)).config.input_size
    with Image.open(landscape_photo) as im:
        photo = np.asarray(im.convert("RGB").resize((size, size)))
    batch = torch.from_numpy(photo.copy()).permute(2, 0, 1).float()[None] / 255
    sky = np.zeros(photo.shape[:2], np.uint8)
    sky[: int(0.4 * size)] = 255  # the fixture's top 40 % is sky
    photo_sample = Sample(SampleRef("storm", "storm", landscape_photo, None, None), photo, sky, None)
    moved = {}
    for freeze in (True, False):
        model = load_model(resolve_weights(None)).float()
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        before = bn.running_mean.clone()
        set_training_mode(model, freeze)
        model(batch).logits.mean().backward()
        assert model.training and bn.training != freeze
        moved[freeze] = not torch.equal(before, bn.running_mean)
        modes = [m.training for m in model.modules()]
        validate(model, [photo_sample], torch.device("cpu"))
        assert [m.training for m in model.modules()] == modes  # validation leaves frozen layers frozen
    assert moved == {True: False, False: True}


def test_anchor_pulls_only_once_the_network_moves(tiny_dataset: Path, tmp_path: Path) -> None:
    """``--anchor`` on real photos, in process: anchored to the very weights it starts from (BatchNorm
    frozen, so both networks answer alike), the first step is exactly the unanchored one (no pull
    while the network is its anchor) and the term is reported; once the network has moved, the pull
    changes the steps that follow."""
    from clnsod_core.masking.inference import embedded_weights_path
    from trainer.train import TrainConfig, _close_log, set_up, train_step

    start = str(embedded_weights_path())
    after: dict[str, list[dict[str, torch.Tensor]]] = {}
    reported: dict[str, list[dict[str, float]]] = {}
    for name, anchor in (("free", None), ("anchored", start)):
        cfg = TrainConfig(data=[str(tiny_dataset)], out=str(tmp_path / name), epochs=1, batch_size=2,
                          imagenet_init=False, init_weights=start, anchor_weights=anchor, freeze_norm=True,
                          validate=False, threads=1)
        run = set_up(cfg)
        after[name], reported[name] = [], []
        for step in range(3):
            reported[name].append(train_step(run, [2 * step, 2 * step + 1]))
            after[name].append({k: v.clone() for k, v in run.model.state_dict().items()})
        assert (run.anchor is None) == (anchor is None)
        _close_log(run.log_handler)
    free, anchored = reported["free"][0], reported["anchored"][0]
    assert "anchor" not in free and anchored["anchor"] > 0  # the anchor's own uncertainty
    assert anchored["bce"] == free["bce"] and anchored["affinity"] == free["affinity"]
    assert math.isclose(anchored["total"], free["total"] + anchored["anchor"], rel_tol=1e-6)
    first_free, first_anchored = after["free"][0], after["anchored"][0]
    assert all(torch.equal(first_free[k], first_anchored[k]) for k in first_free)
    last_free, last_anchored = after["free"][-1], after["anchored"][-1]
    assert not all(torch.equal(last_free[k], last_anchored[k]) for k in last_free)


def test_anchor_that_cannot_be_found_is_a_usage_error(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train("--data", tiny_dataset, "--out", tmp_path / "x", "--anchor", tmp_path / "missing.pt",
                   "--max-steps", "1")
    assert result.returncode == 2 and "--anchor" in result.stderr and "Traceback" not in result.stderr
