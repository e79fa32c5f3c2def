"""Nothing the user owns is damaged: inputs are never modified or overwritten, outputs are
complete or absent (temp file + rename), even after ``kill -9``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import CLI, run_cli
from PIL import Image

from clnsod_core.files import remove_stale_parts, write_atomic


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def decodes(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


def make_photos(folder: Path, photo: Path, count: int, size: tuple[int, int] = (480, 320)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(photo) as im:
        base = im.convert("RGB").resize(size)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:02d}.jpg"
        base.rotate(i * 0.5).save(path, quality=90)
        paths.append(path)
    return paths


def test_replace_refuses_to_overwrite_its_input(landscape_photo: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(landscape_photo.read_bytes())
    before = digest(tmp_path)
    result = run_cli("replace", photo, "--sky", "sunset", "-o", photo)
    assert result.returncode == 1 and "output would overwrite the input" in result.stderr
    assert "Traceback" not in result.stderr
    assert digest(tmp_path) == before


def test_batch_into_its_own_folder_never_overwrites_a_photo(landscape_photo: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_photos(src, landscape_photo, 2)
    with Image.open(src / "photo_01.jpg") as im:
        im.save(src / "photo_01.png")  # photo_01.jpg's mask would be photo_01.png: an input
    (src / "sub").mkdir()
    with Image.open(src / "photo_00.jpg") as im:
        im.save(src / "sub" / "photo_00.png")
    before = digest(src)
    for extra in ([], ["--overwrite"]):
        result = run_cli("batch", src, "-o", src, *extra)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"{src / 'photo_01.jpg'}: output would overwrite the input photo {src / 'photo_01.png'}" in result.stderr
        assert f"{src / 'photo_01.png'}: output would overwrite the input;" in result.stderr
        assert f"{src / 'sub' / 'photo_00.png'}: output would overwrite the input;" in result.stderr
        after = digest(src)
        assert {k: after[k] for k in before} == before  # every input byte-identical
        assert set(after) - set(before) == {"photo_00.png"}  # the one output that eats nothing

    # Input folder inside the output folder: out/p/sub/x.jpg -> out/sub/x.png... and out/p/y.png is an input.
    out = tmp_path / "out"
    inner = out / "p"
    make_photos(inner / "p", landscape_photo, 1)
    with Image.open(inner / "p" / "photo_00.jpg") as im:
        im.save(inner / "photo_00.png")
    before = digest(inner)
    result = run_cli("batch", inner, "-o", out, "--overwrite")
    assert result.returncode == 1
    assert f"output would overwrite the input photo {inner / 'photo_00.png'}" in result.stderr
    assert digest(inner) == before


def test_unwritable_output_folder_fails_before_any_work(landscape_photo: Path, tmp_path: Path) -> None:
    """Run without root's override, so the read-only folder really is read-only."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for args in (["mask", landscape_photo, "-o", locked], ["batch", landscape_photo.parent, "-o", locked / "sub"],
                     ["replace", landscape_photo, "--sky", "sunset", "-o", locked / "x.jpg"]):
            started = time.monotonic()
            result = run_cli(*args, as_user=True)
            assert result.returncode == 1, result.stderr
            assert f"output folder {locked}" in result.stderr and "not writable" in result.stderr
            assert "written" not in result.stderr and "Traceback" not in result.stderr
            assert time.monotonic() - started < 60
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_kill_9_during_batch_then_rerun(landscape_photo: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    photos = make_photos(src, landscape_photo, 16, (1500, 1000))
    before = digest(src)
    args = [*CLI, "batch", str(src), "-o", str(out), "--sky", "sunset", "--output", "both"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(list(out.glob("*_mask.png"))) < 3:
            assert proc.poll() is None, "the batch finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    visible = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert 3 <= len(visible) < 32
    assert all(decodes(p) for p in visible), "a killed run left a corrupt output"

    done = sum(1 for p in photos if (out / f"{p.stem}.jpg").exists() and (out / f"{p.stem}_mask.png").exists())
    again = run_cli("batch", src, "-o", out, "--sky", "sunset", "--output", "both")
    assert again.returncode == 0, again.stderr
    assert f"{16 - done} written, {done} skipped" in again.stderr
    outputs = sorted(out.iterdir())
    assert [p.name for p in outputs] == sorted(f"{p.stem}{s}" for p in photos for s in (".jpg", "_mask.png"))
    assert all(decodes(p) for p in outputs)  # and the killed run's temp files are gone
    forced = run_cli("batch", src, "-o", out, "--sky", "sunset", "--output", "both", "--overwrite")
    assert forced.returncode == 0 and "16 written, 0 skipped" in forced.stderr
    assert digest(src) == before  # inputs never modified


def test_temp_files_are_private_then_get_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    seen: list[int] = []

    def writer(handle) -> None:  # type: ignore[no-untyped-def]
        seen.append(os.fstat(handle.fileno()).st_mode & 0o777)
        handle.write(b"data")

    write_atomic(target, writer)
    umask = os.umask(0)
    os.umask(umask)
    assert seen == [0o600]  # nobody else can read a half-written output
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]

    def failing(handle) -> None:  # type: ignore[no-untyped-def]
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, failing)
    assert target.read_bytes() == b"data"  # the old output survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # temp file removed
    long_name = tmp_path / ("y" * 250 + ".png")
    write_atomic(long_name, lambda handle: handle.write(b"ok"))  # temp name stays within 255 bytes
    assert long_name.read_bytes() == b"ok"


def test_stale_parts_of_dead_runs_are_removed_live_ones_kept(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    finished = subprocess.Popen(["true"])
    finished.wait()
    try:
        live = tmp_path / f".a.png.clnsod-{sleeper.pid}-x1.part"
        stale = tmp_path / f".b.png.clnsod-{finished.pid}-x2.part"
        foreign = tmp_path / ".notes.part"
        for path in (live, stale, foreign):
            path.write_bytes(b"")
        assert remove_stale_parts(tmp_path) == 1
        assert live.exists() and foreign.exists() and not stale.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_mask_outputs_decode_and_inputs_unchanged(landscape_photo: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_photos(src, landscape_photo, 3)
    before = digest(src)
    result = run_cli("mask", *sorted(src.iterdir()), "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert digest(src) == before
    masks = sorted((tmp_path / "out").iterdir())
    assert len(masks) == 3 and all(decodes(p) for p in masks)
    assert np.asarray(Image.open(masks[0])).shape == (320, 480)
