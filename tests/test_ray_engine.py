"""``clnsod batch --engine ray`` on a real local Ray (2 CPUs), real photos and the real model: the same
outputs as the local engine (byte for byte), the same lines and exit codes, file:// URIs through
pyarrow, joining a running cluster with --address, and a worker killed with SIGKILL mid-run."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import CLI, run_cli
from conftest import PHOTOS
from PIL import Image

RAY_TIMEOUT = 600  # seconds for one command that starts Ray on a busy 2-core machine
ARGS = ("--sky", "sunset", "--output", "both")
TWO_WORKERS = ("--engine", "ray", "--workers", "2", "--cpus-per-worker", "1")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the local engine with one PyTorch thread, as each Ray worker has
PHOTO_COUNT = 8


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def report_lines(stderr: str) -> list[str]:
    """The lines both engines print the same: failures, no-sky notices and the summary (sorted:
    workers finish in any order)."""
    return sorted(line for line in stderr.splitlines()
                  if line.startswith("error:") or "no sky found" in line or " written" in line)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 real photos, 960 px wide, one of them in a sub-folder, plus two bad files."""
    folder = tmp_path_factory.mktemp("ray") / "in"
    (folder / "sub").mkdir(parents=True)
    for i, source in enumerate(sorted(PHOTOS.glob("*.jpg"))[:PHOTO_COUNT]):
        with Image.open(source) as im:
            small = im.convert("RGB").resize((960, im.height * 960 // im.width), Image.Resampling.BILINEAR)
            small.save(folder / ("sub" if i == 0 else "") / source.name, quality=92)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo\n")
    return folder


@pytest.fixture(scope="module")
def good_photos(photos: Path) -> Path:
    folder = photos.parent / "good"
    shutil.copytree(photos, folder, ignore=shutil.ignore_patterns("empty.jpg", "notes.jpg"))
    return folder


@pytest.fixture(scope="module")
def reference(photos: Path) -> tuple[Path, str]:
    """The local engine's outputs and stderr (one PyTorch thread: thread counts change float rounding)."""
    out = photos.parent / "local"
    result = run_cli("batch", photos, "-o", out, *ARGS, env=ONE_THREAD)
    assert result.returncode == 1, result.stderr
    assert len(digest(out)) == 2 * PHOTO_COUNT
    return out, result.stderr


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@pytest.fixture(scope="module")
def cluster(photos: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A running Ray head (2 CPUs) started with Ray's own ``ray start``, with its own token (Ray's
    token authentication, as a real cluster has); yields its address and the clients' environment."""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port, dashboard_port, agent_port = _free_ports(3)  # never another Ray's fixed defaults
    ray_bin = Path(sys.executable).with_name("ray")
    log = (photos.parent / "ray-head.log").open("w")
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
                             f"--dashboard-port={dashboard_port}", f"--dashboard-agent-listen-port={agent_port}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **auth, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in (photos.parent / "ray-head.log").read_text():
            assert head.poll() is None, (photos.parent / "ray-head.log").read_text()
            assert time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", auth
    finally:
        head.send_signal(signal.SIGTERM)  # --block: Ray stops the processes it started (no drain wait)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()


def test_same_outputs_lines_and_exit_code_as_the_local_engine(photos: Path, reference: tuple[Path, str],
                                                              tmp_path: Path) -> None:
    local_out, local_stderr = reference
    out = tmp_path / "ray"
    result = run_cli("batch", photos, "-o", out, *ARGS, *TWO_WORKERS, "--manifest", tmp_path / "ray.json",
                     timeout=RAY_TIMEOUT)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    manifest = json.loads((tmp_path / "ray.json").read_text())["photos"]
    statuses = sorted((Path(p["original"]).relative_to(photos).as_posix(), p["status"]) for p in manifest)
    assert statuses == sorted([(p.relative_to(photos).as_posix(), "written") for p in photos.rglob("*.jpg")
                               if p.name not in ("empty.jpg", "notes.jpg")] + [("empty.jpg", "failed"),
                                                                                ("notes.jpg", "failed")])
    assert all(Path(o).is_file() for p in manifest if p["status"] == "written" for o in p["outputs"])
    assert report_lines(result.stderr) == report_lines(local_stderr)
    assert f"error: {photos / 'empty.jpg'}: empty file (0 bytes)" in result.stderr
    assert f"error: {photos / 'notes.jpg'}: not an image file" in result.stderr
    assert f"{PHOTO_COUNT} written" in result.stderr and ", 2 failed" in result.stderr
    assert digest(out) == digest(local_out)  # same names, same folders, same bytes
    assert not list(out.rglob(".*.part"))

    again = run_cli("batch", photos, "-o", out, *ARGS, *TWO_WORKERS, "--manifest", tmp_path / "again.csv",
                    timeout=RAY_TIMEOUT)
    assert again.returncode == 1, again.stderr  # the two bad files still fail, nothing else is redone
    assert f"0 written, {PHOTO_COUNT} skipped (already exist), 2 failed" in again.stderr
    with open(tmp_path / "again.csv", newline="") as handle:
        assert sorted(row["status"] for row in csv.DictReader(handle)) == ["failed"] * 2 + ["skipped"] * PHOTO_COUNT
    assert digest(out) == digest(local_out)


def test_uri_folders_on_a_running_cluster(photos: Path, reference: tuple[Path, str],
                                          cluster: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """IN and OUT as file:// URIs (pyarrow's LocalFileSystem through the URI layer), joining the
    cluster at --address; lines name the files by their URIs."""
    local_out, _ = reference
    address, auth = cluster
    out = tmp_path / "ray-uri"
    in_uri, out_uri = photos.as_uri(), out.as_uri()
    result = run_cli("batch", in_uri, "-o", out_uri, *ARGS, *TWO_WORKERS, "--address", address,
                     env=auth, timeout=RAY_TIMEOUT)
    assert result.returncode == 1, result.stderr
    assert f"error: {in_uri}/empty.jpg: empty file (0 bytes)" in result.stderr
    assert f"error: {in_uri}/notes.jpg: not an image file" in result.stderr
    assert f"{PHOTO_COUNT} written, 0 skipped (already exist), 2 failed" in result.stderr
    assert digest(out) == digest(local_out)

    again = run_cli("batch", in_uri, "-o", out_uri, *ARGS, *TWO_WORKERS, "--address", address,
                    env=auth, timeout=RAY_TIMEOUT)
    assert f"0 written, {PHOTO_COUNT} skipped (already exist), 2 failed" in again.stderr


def _descendants(root: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    for pid in parents:
        chain = pid
        while chain in parents and chain not in (0, 1):
            if parents[chain] == root:
                found.add(pid)
                break
            chain = parents[chain]
    return found


def _photo_workers(root: int) -> list[int]:
    """This run's Ray actors: processes under ``root`` whose title Ray set to the actor class."""
    workers = []
    for pid in _descendants(root):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "PhotoWorker" in title:
            workers.append(pid)
    return workers


def test_worker_killed_mid_run_is_retried(good_photos: Path, reference: tuple[Path, str], tmp_path: Path) -> None:
    local_out, _ = reference
    out = tmp_path / "ray-kill"
    args = [*CLI, "batch", str(good_photos), "-o", str(out), *ARGS, *TWO_WORKERS]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed: list[int] = []
    try:
        deadline = time.monotonic() + RAY_TIMEOUT
        while not killed:
            assert proc.poll() is None, "the run finished before a worker could be killed"
            assert time.monotonic() < deadline
            written = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")] if out.exists() else []
            if written:  # workers are mid-run: kill every one of them
                assert len(written) < 2 * PHOTO_COUNT
                killed = _photo_workers(proc.pid)
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        _, stderr = proc.communicate(timeout=RAY_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert killed, "no Ray worker process found"
    assert proc.returncode == 0, stderr
    assert f"{PHOTO_COUNT} written, 0 skipped (already exist), 0 failed" in stderr
    assert digest(out) == digest(local_out)  # every output present, complete, identical
    assert not list(out.rglob(".*.part"))


def test_engine_options_and_uris_need_the_ray_engine(photos: Path, tmp_path: Path) -> None:
    for extra in (["--cpus-per-worker", "2"], ["--address", "127.0.0.1:1"], ["--gpus-per-worker", "1"]):
        result = run_cli("batch", photos, "-o", tmp_path / "x", *extra)
        assert result.returncode == 2 and "only apply to --engine ray" in result.stderr
    result = run_cli("batch", photos.as_uri(), "-o", tmp_path / "x")
    assert result.returncode == 2 and "--engine ray" in result.stderr
    result = run_cli("batch", photos, "-o", tmp_path / "x", "--engine", "ray", "--device", "cuda")
    assert result.returncode == 2 and "--gpus-per-worker" in result.stderr
    assert not (tmp_path / "x").exists()


def test_without_the_extra_says_how_to_install_it(photos: Path, tmp_path: Path) -> None:
    """Python without Ray (a ``ray`` that cannot be imported first on the path): one clear line."""
    blocker = tmp_path / "no-ray"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    result = run_cli("batch", photos, "-o", tmp_path / "out", "--engine", "ray", env={"PYTHONPATH": str(blocker)})
    assert result.returncode == 1
    assert "pip install -e '.[ray]'" in result.stderr and "Traceback" not in result.stderr
