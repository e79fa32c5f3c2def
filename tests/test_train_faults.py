"""``clnsod train`` under faults: broken datasets, ``kill -9`` mid-run, damaged checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from cli_runner import CLI, run_cli
from PIL import Image

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
TINY = ["--batch-size", "2", "--epochs", "2", "--threads", "1", "--no-validate"]


def train(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli("train", *args, env=ONE_THREAD, timeout=600)


def copy_dataset(src: Path, dst: Path, count: int = 6) -> Path:
    """The first ``count`` samples of the images/ + masks/ dataset ``src``."""
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True)
        for path in sorted((src / sub).iterdir())[:count]:
            shutil.copy(path, dst / sub / path.name)
    return dst


def fails_clearly(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    for word in words:
        assert word in line, (word, line)
    return line


def test_missing_mask_is_named(tiny_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(tiny_dataset, tmp_path / "d")
    victim = sorted((data / "masks").iterdir())[2]
    victim.unlink()
    line = fails_clearly(train("--data", data, "--out", tmp_path / "run", *TINY), "without a mask")
    assert victim.stem in line


def test_missing_mask_in_an_index_layout_is_named(tiny_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "indexed"
    shutil.copytree(copy_dataset(tiny_dataset, tmp_path / "d"), root / "mine")
    ids = sorted(p.stem for p in (root / "mine" / "images").iterdir())
    rows = [{"dataset": "mine", "id": i, "split": "train", "w": 0, "h": 0, "sky_frac": 0, "void": False} for i in ids]
    (root / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "mine" / "masks" / f"{ids[1]}.png").unlink()
    fails_clearly(train("--data", root, "--out", tmp_path / "run", *TINY), str(root / "mine" / "masks" / f"{ids[1]}.png"))


def test_size_mismatch_is_named(tiny_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(tiny_dataset, tmp_path / "d")
    victim = sorted((data / "masks").iterdir())[3]
    with Image.open(victim) as im:
        im.resize((im.width // 2, im.height)).save(victim)
    fails_clearly(train("--data", data, "--out", tmp_path / "run", *TINY), str(victim), "mask is", "but image")


def test_non_binary_mask_is_named(tiny_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(tiny_dataset, tmp_path / "d")
    victim = sorted((data / "masks").iterdir())[0]
    with Image.open(victim) as im:
        gradient = np.tile(np.linspace(0, 255, im.width, dtype=np.uint8), (im.height, 1))
    Image.fromarray(gradient).save(victim)
    fails_clearly(train("--data", data, "--out", tmp_path / "run", *TINY), str(victim), "not binary")


def test_empty_train_split(tiny_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "indexed"
    shutil.copytree(copy_dataset(tiny_dataset, tmp_path / "d"), root / "mine")
    rows = [{"dataset": "mine", "id": p.stem, "split": "val"} for p in sorted((root / "mine" / "images").iterdir())]
    (root / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fails_clearly(train("--data", root, "--out", tmp_path / "run", *TINY), "no training samples", str(root))
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    fails_clearly(train("--data", empty, "--out", tmp_path / "run2", *TINY), "no training samples", str(empty))


def checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except Exception:  # not written yet
        return -1


def test_kill_9_then_resume_matches_an_uninterrupted_run(tiny_dataset: Path, tmp_path: Path) -> None:
    """A real SIGKILL while training; ``--resume`` must end bit-identical to a straight run."""
    common = ["--data", tiny_dataset, *TINY, "--checkpoint-every", "1", "--max-steps", "6"]
    straight = train(*common, "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "Warning" not in straight.stderr

    run = tmp_path / "killed"
    proc = subprocess.Popen([*CLI, "train", *map(str, common), "--out", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **ONE_THREAD}, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while checkpoint_step(run / "last.pt") < 2:
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint_step(run / "last.pt")
    assert 2 <= killed_at < 6 and not (run / "weights.pt").exists()

    resumed = train(*common, "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {killed_at}" in resumed.stderr
    a = torch.load(tmp_path / "straight" / "weights.pt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(run / "weights.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpt_a = torch.load(tmp_path / "straight" / "last.pt", map_location="cpu", weights_only=True)
    ckpt_b = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt_a["scheduler"] == ckpt_b["scheduler"] and ckpt_b["global_step"] == 6
    assert torch.equal(ckpt_a["rng"]["torch"], ckpt_b["rng"]["torch"])
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temp files left behind"

    # A checkpoint cut short (disk full, copy interrupted) is detected with a clear message.
    broken = tmp_path / "broken"
    broken.mkdir()
    data = (run / "last.pt").read_bytes()
    (broken / "last.pt").write_bytes(data[: len(data) // 2])
    line = fails_clearly(train(*common, "--out", broken, "--resume"), "checkpoint is unreadable or truncated")
    assert str(broken / "last.pt") in line
