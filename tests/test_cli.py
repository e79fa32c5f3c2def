"""The real ``clnsod`` CLI on real photos with the embedded default weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from cli_runner import run_cli
from PIL import Image


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L"
        return np.asarray(im)


def test_help_and_version() -> None:
    out = run_cli("--help")
    assert out.returncode == 0 and "mask" in out.stdout and "batch" in out.stdout and "train" in out.stdout
    out = run_cli("--version")
    assert out.returncode == 0 and "clnsod, version" in out.stdout


def test_help_and_usage_errors_do_not_load_torch(tmp_path: Path) -> None:
    """Importing torch takes seconds: ``--help``, every usage error and a ``replace`` of an unusable
    photo answer before it is needed."""
    (tmp_path / "text.jpg").write_text("not a photo")
    probe = (
        "import sys\n"
        "from clnsod_core.frontends.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code, 'torch' in sys.modules)\n"
    )
    cases = [
        (["--help"], 0),
        (["replace", "--help"], 0),
        (["replace", str(tmp_path / "a.jpg"), "--sky", "sunset", "-o", str(tmp_path / "a.bmp")], 2),
        (["batch", str(tmp_path), "-o", str(tmp_path / "o"), "--output", "layers"], 2),
        (["video", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "b.mp4")], 2),
        (["skies", "render", "no-such-preset", "-o", str(tmp_path / "s.jpg")], 2),
        (["replace", str(tmp_path / "text.jpg"), "--sky", "sunset", "-o", str(tmp_path / "r.jpg")], 1),
        (["replace", str(tmp_path / "missing.jpg"), "--sky", "sunset", "-o", str(tmp_path / "r.jpg")], 1),
    ]
    for args, code in cases:
        result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
        assert result.stdout.splitlines()[-1] == f"exit {code} False", (args, result.stdout[-500:], result.stderr[-500:])


def test_mask_on_a_real_landscape(landscape_photo: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.jpg"
    with Image.open(landscape_photo) as im:
        exif = Image.Exif()
        exif[0x0112] = 8  # displayed rotated 90 degrees counter-clockwise: stored sideways
        im.transpose(Image.Transpose.ROTATE_270).save(rotated, exif=exif, quality=92)
    before = landscape_photo.read_bytes()
    result = run_cli("mask", landscape_photo, rotated, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert landscape_photo.read_bytes() == before  # input untouched
    mask = read_mask(tmp_path / "out" / "storm.png")
    with Image.open(landscape_photo) as im:
        assert mask.shape == (im.height, im.width)
    h = mask.shape[0]
    sky, ground = mask[: int(0.3 * h)], mask[int(0.75 * h) :]
    assert (sky >= 128).mean() > 0.9, "most of the sky should be >= 0.5"
    assert (ground < 128).mean() > 0.9, "most of the ground should be < 0.5"
    assert len(np.unique(mask)) > 20, "soft values are kept"
    upright = read_mask(tmp_path / "out" / "rotated.png")
    assert upright.shape == mask.shape  # EXIF rotation applied: same upright geometry
    assert np.abs(upright.astype(int) - mask.astype(int)).mean() < 8
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["rotated.png", "storm.png"]


def _write_bad_inputs(folder: Path, good: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 4])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("this is text, not a PNG\n")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")
    return {
        "truncated.jpg": "truncated",
        "zero.jpg": "empty file",
        "notes.png": "not an image file",
        "bomb.png": "image too large",
    }


def test_batch_recursive_skip_and_bad_files(landscape_photo: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "trip" / "day1").mkdir(parents=True)
    (src / "a.jpg").write_bytes(landscape_photo.read_bytes())
    with Image.open(landscape_photo) as im:
        im.resize((480, 320)).save(src / "trip" / "day1" / "b.png")
    (src / "readme.txt").write_text("ignored: not an image extension")
    expected = _write_bad_inputs(src / "trip", landscape_photo)
    out = tmp_path / "out"
    result = run_cli("batch", src, "-o", out, "--output", "mask")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(expected)
    for name, reason in expected.items():
        assert any(name in line and reason in line for line in errors), (name, errors)
    assert "Traceback" not in result.stderr
    assert "2 written, 0 skipped (already exist), 4 failed" in result.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "trip/day1/b.png"]  # structure kept, nothing partial
    assert read_mask(out / "trip" / "day1" / "b.png").shape == (320, 480)

    stamp = (out / "a.png").stat().st_mtime_ns
    again = run_cli("batch", src / "trip" / "day1", "-o", out / "trip" / "day1")
    assert again.returncode == 0 and "0 written, 1 skipped" in again.stderr
    again = run_cli("batch", src, "-o", out)
    assert "0 written, 2 skipped" in again.stderr and (out / "a.png").stat().st_mtime_ns == stamp
    forced = run_cli("batch", src / "trip" / "day1", "-o", out / "trip" / "day1", "--overwrite")
    assert forced.returncode == 0 and "1 written, 0 skipped" in forced.stderr


def test_mask_bad_inputs_and_directory(landscape_photo: Path, tmp_path: Path) -> None:
    expected = _write_bad_inputs(tmp_path / "bad", landscape_photo)
    (tmp_path / "folder.jpg").mkdir()
    paths = [tmp_path / "bad" / n for n in expected] + [tmp_path / "folder.jpg", landscape_photo]
    result = run_cli("mask", *paths, "-o", tmp_path / "out")
    assert result.returncode == 1
    assert "folder.jpg: is a directory" in result.stderr
    assert "1 written, 0 skipped (already exist), 5 failed" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["storm.png"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_cli("mask", "-o", tmp_path).returncode == 2
    assert run_cli("batch", tmp_path / "missing", "-o", tmp_path / "o").returncode == 2
    bad = run_cli("mask", tmp_path / "x.jpg", "-o", tmp_path / "o", "--device", "tpu")
    assert bad.returncode == 2 and "tpu" in bad.stderr


def test_bad_weights_file_is_refused(landscape_photo: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"definitely not torch")
    result = run_cli("mask", landscape_photo, "-o", tmp_path / "out", "--weights", fake)
    assert result.returncode == 1
    assert "fake.pt: not a loadable weights file" in result.stderr and "Traceback" not in result.stderr


def test_unusable_output_folder_fails_before_any_work(landscape_photo: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run_cli("mask", landscape_photo, "-o", blocker / "out")
    assert result.returncode == 1 and "output folder" in result.stderr and "not writable" in result.stderr
    assert blocker.read_text() == "a file where a folder should be"
