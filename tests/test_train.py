"""``clnsod train`` on real photos: a few steps, exact resume, and DDP with 2 CPU processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from clnsod_core.weights_io import load_model

TRAIN = [sys.executable, "-m", "clnsod_core.cli", "train"]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def train(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRAIN, *map(str, args)], capture_output=True, text=True, timeout=600, env=ENV)


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_resume_continues_exactly(tiny_dataset: Path, tmp_path: Path) -> None:
    common = ["--data", tiny_dataset, "--batch-size", "2", "--epochs", "2", "--checkpoint-every", "2", "--threads", "1"]
    straight = train(*common, "--out", tmp_path / "a", "--max-steps", "4")
    assert straight.returncode == 0, straight.stderr
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
    assert model.config.input_size == 320


def test_truncated_checkpoint_is_detected(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    result = train("--data", tiny_dataset, "--out", out, "--resume", "--max-steps", "1")
    assert result.returncode == 1
    assert "checkpoint is unreadable or truncated" in result.stderr and "Traceback" not in result.stderr


def test_ddp_two_cpu_processes(tiny_dataset: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "clnsod_core.cli", "train", "--data", str(tiny_dataset), "--out", str(tmp_path / "ddp"),
        "--batch-size", "2", "--max-steps", "3", "--threads", "1", "--init", "imagenet", "--no-context",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "2 process(es) on cpu" in log
    ckpt = torch.load(tmp_path / "ddp" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert load_model(tmp_path / "ddp" / "weights.pt").context is None


def test_no_context_conflicts_with_context_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train("--data", tiny_dataset, "--out", tmp_path / "x", "--no-context", "--max-steps", "1")
    assert result.returncode == 1
    assert "these weights have the context-aware map" in result.stderr and "Traceback" not in result.stderr


def test_freeze_norm_keeps_the_start_weights_batchnorm_statistics(landscape_photo: Path) -> None:
    """One real training step on a real photo: with --freeze-norm the BatchNorm running statistics
    of the embedded weights stay as they were; without it they move."""
    import numpy as np
    from PIL import Image

    from clnsod_core.registry import resolve_weights
    from trainer.data import Sample, SampleRef
    from trainer.train import set_training_mode, validate

    with Image.open(landscape_photo) as im:
        photo = np.asarray(im.convert("RGB").resize((320, 320)))
    batch = torch.from_numpy(photo.copy()).permute(2, 0, 1).float()[None] / 255
    sky = np.zeros(photo.shape[:2], np.uint8)
    sky[: int(0.4 * 320)] = 255  # the fixture's top 40 % is sky
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
