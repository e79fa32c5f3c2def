"""Every kind of bad or unusual input through ``clnsod mask``, ``replace`` and ``batch``.

Exit codes: 0 all good, 1 some inputs failed (one ``error: <file>: <reason>`` line each, the
good ones still processed), 2 usage error. No traceback, no hang (every run has a timeout).
The CLI runs without root's permission override, so the chmod-000 photo is really unreadable.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from bad_inputs_corpus import MARKER, Kind, build_corpus
from cli_runner import run_cli
from PIL import Image

TIMEOUT = 120  # a hang (e.g. reading a pipe) fails the test instead of blocking it


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, landscape_photo: Path) -> tuple[Path, list[Kind]]:
    folder = tmp_path_factory.mktemp("corpus") / "in"
    Path("/tmp", MARKER).unlink(missing_ok=True)
    return folder, build_corpus(folder, landscape_photo)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def check_clean(stderr: str) -> None:
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr[-2000:]
    assert not Path("/tmp", MARKER).exists(), "metadata was executed"


def read_full(path: Path) -> np.ndarray:
    """Decode completely: a partial file would fail here."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def stem(kind: Kind) -> str:
    return Path(kind.name).stem


def assert_upright_sky(mask: np.ndarray, kind: Kind) -> None:
    """The landscape's sky is on top: an output that is sideways or upside down fails this."""
    if kind.size != (240, 160):
        return
    assert mask[:40].mean() > mask[-40:].mean() + 100, (kind.name, mask[:40].mean(), mask[-40:].mean())


def assert_one_line_per_bad_file(stderr: str, folder: Path, kinds: list[Kind], bad: list[Kind]) -> list[Kind]:
    """Exactly one error line per bad file, naming it and its reason, and a summary that counts
    every good file as written; returns the good kinds."""
    errors = error_lines(stderr)
    assert len(errors) == len(bad), errors
    for kind in bad:
        assert kind.error is not None
        lines = [line for line in errors if line.startswith(f"error: {folder / kind.name}: ")]
        assert len(lines) == 1 and kind.error.lower() in lines[0].lower(), (kind, lines)
    good = [k for k in kinds if k.error is None]
    assert f"{len(good)} written, 0 skipped (already exist), {len(bad)} failed" in stderr
    return good


def test_corpus_has_enough_kinds(corpus: tuple[Path, list[Kind]]) -> None:
    _, kinds = corpus
    assert len(kinds) >= 25
    assert sum(k.error is not None for k in kinds) >= 12 and sum(k.error is None for k in kinds) >= 12


def test_mask_with_every_kind_as_arguments(corpus: tuple[Path, list[Kind]], tmp_path: Path) -> None:
    folder, kinds = corpus
    out = tmp_path / "masks"
    result = run_cli("mask", *(folder / k.name for k in kinds), "-o", out, timeout=TIMEOUT)
    check_clean(result.stderr)
    assert result.returncode == 1
    bad = [k for k in kinds if k.error is not None]
    good = assert_one_line_per_bad_file(result.stderr, folder, kinds, bad)
    reference = read_full(out / "orient_1.png")
    for kind in good:
        mask = read_full(out / f"{stem(kind)}.png")
        assert mask.shape == (kind.size[1], kind.size[0]), kind
        assert_upright_sky(mask, kind)
        if kind.name.startswith("orient_"):
            assert np.abs(mask.astype(int) - reference.astype(int)).mean() < 8, kind
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_batch_over_the_corpus_folder(corpus: tuple[Path, list[Kind]], tmp_path: Path) -> None:
    folder, kinds = corpus
    out = tmp_path / "batch"
    result = run_cli("batch", folder, "-o", out, "--sky", "sunset", "--output", "both", timeout=TIMEOUT)
    check_clean(result.stderr)
    assert result.returncode == 1
    bad = [k for k in kinds if k.error is not None and k.in_batch]
    good = assert_one_line_per_bad_file(result.stderr, folder, kinds, bad)
    for kind in good:
        composite = read_full(out / f"{stem(kind)}.jpg")
        mask = read_full(out / f"{stem(kind)}_mask.png")
        assert composite.shape == (kind.size[1], kind.size[0], 3) and mask.shape == composite.shape[:2], kind
        assert_upright_sky(mask, kind)
    written = {p.name for p in out.iterdir()}
    assert written == {f"{stem(k)}{suffix}" for k in good for suffix in (".jpg", "_mask.png")}  # nothing partial
    again = run_cli("batch", folder, "-o", out, "--sky", "sunset", "--output", "both", timeout=TIMEOUT)
    assert again.returncode == 1 and f"0 written, {len(good)} skipped" in again.stderr


def test_replace_with_each_kind_as_photo_and_as_sky(corpus: tuple[Path, list[Kind]], tmp_path: Path) -> None:
    """One real ``replace`` per kind (photo), and one per broken kind used as the sky."""
    folder, kinds = corpus
    good_photo = folder / "good.jpg"
    jobs: list[tuple[Kind, str, list[str | Path]]] = []
    for i, kind in enumerate(kinds):
        jobs.append((kind, "photo", ["replace", folder / kind.name, "--sky", "golden-hour", "-o", tmp_path / f"p{i}.png"]))
        if kind.error is not None or kind.size != (240, 160):
            jobs.append((kind, "sky", ["replace", good_photo, "--sky", folder / kind.name, "-o", tmp_path / f"s{i}.jpg"]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: run_cli(*job[2], timeout=TIMEOUT), jobs))
    reference = read_full(tmp_path / f"p{kinds.index(next(k for k in kinds if k.name == 'orient_1.jpg'))}.png")
    for (kind, role, args), result in zip(jobs, results, strict=True):
        check_clean(result.stderr)
        out = Path(args[-1])
        if kind.error is None:
            assert result.returncode == 0, (kind, role, result.stderr)
            image = read_full(out)
            expected = kind.size if role == "photo" else (240, 160)
            assert image.shape == (expected[1], expected[0], 3), (kind, role)
            if role == "photo" and kind.name.startswith("orient_"):
                assert np.abs(image.astype(int) - reference.astype(int)).mean() < 10, kind  # upright
            continue
        assert result.returncode == 1, (kind, role, result.stderr)
        errors = error_lines(result.stderr) + [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and kind.error.lower() in errors[0].lower() and kind.name in errors[0], (kind, role, errors)
        if role == "sky":
            assert "sky image unusable" in errors[0]
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_usage_errors_exit_2(corpus: tuple[Path, list[Kind]], tmp_path: Path) -> None:
    folder, _ = corpus
    assert run_cli("replace", folder / "good.jpg", "-o", tmp_path / "x.jpg").returncode == 2  # no --sky
    assert run_cli("replace", folder / "good.jpg", "--sky", "sunset", "-o", tmp_path / "x.bmp").returncode == 2
    assert run_cli("batch", folder / "good.jpg", "-o", tmp_path / "o").returncode == 2  # a file, not a folder
    result = run_cli("mask", folder / "good.jpg", "-o", tmp_path / "o", "--max-megapixels", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "x.jpg")
