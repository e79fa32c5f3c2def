"""Two ``clnsod batch`` runs on the same output folder at once never corrupt each other's files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli_runner import CLI
from PIL import Image


def test_two_concurrent_batches_into_one_folder(landscape_photo: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    with Image.open(landscape_photo) as im:
        base = im.convert("RGB").resize((1200, 800))
    for i in range(8):
        base.rotate(i).save(src / f"p{i}.jpg", quality=90)
    # --overwrite: both runs write every file, so every output is raced for.
    runs = [subprocess.Popen([*CLI, "batch", str(src), "-o", str(out), "--sky", sky, "--output", "both", "--overwrite"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for sky in ("sunset", "night-stars")]
    results = [run.communicate(timeout=600) for run in runs]
    for run, (_, stderr) in zip(runs, results, strict=True):
        assert run.returncode == 0, stderr[-2000:]
        assert "8 written, 0 skipped (already exist), 0 failed" in stderr and "Traceback" not in stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"p{i}{s}" for i in range(8) for s in (".jpg", "_mask.png"))  # no temp files left
    for path in out.iterdir():
        with Image.open(path) as im:
            im.load()  # complete, decodable
            assert im.size == (1200, 800)
