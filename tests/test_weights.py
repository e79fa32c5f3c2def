"""Weights registry, cache and downloads against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from weights_server import WeightsServer

from clnsod_core.weights.download import (
    DownloadError,
    DownloadPolicy,
    download_verified,
    sha256_of,
)
from clnsod_core.weights.format import WeightsError, load_model
from clnsod_core.weights.registry import (
    DEFAULT_WEIGHTS,
    REGISTRY,
    embedded_path,
    resolve_weights,
)

FAST = DownloadPolicy(connect_timeout=2, read_timeout=1, retries=1, backoff=0.05)
DEFAULT = REGISTRY[DEFAULT_WEIGHTS]


@pytest.fixture(scope="module")
def weights_bytes() -> bytes:
    return embedded_path(DEFAULT).read_bytes()


@pytest.fixture()
def server(weights_bytes: bytes) -> Iterator[WeightsServer]:
    with WeightsServer({"w.pt": weights_bytes}) as srv:
        yield srv


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLNSOD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def cli(*args: str, cache_root: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"CLNSOD_CACHE_DIR": str(cache_root)})


def test_registry_entries_are_complete() -> None:
    for entry in REGISTRY.values():
        assert re.fullmatch("[0-9a-f]{64}", entry.sha256), entry.name
        assert entry.size > 0 and entry.url.startswith("https://") and entry.licence and entry.description
        if entry.embedded:  # the files at hand: what the registry says about them must be what they hold
            assert load_model(embedded_path(entry)).config.input_size == entry.input_size
    assert DEFAULT.embedded and sha256_of(embedded_path(DEFAULT)) == DEFAULT.sha256
    assert embedded_path(DEFAULT).stat().st_size == DEFAULT.size


def test_fresh_download_with_cli(server: WeightsServer, cache: Path) -> None:
    result = cli("weights", "download", DEFAULT_WEIGHTS, "--url", f"{server.base}/good/w.pt", cache_root=cache.parent)
    assert result.returncode == 0, result.stderr
    target = cache / DEFAULT.filename
    assert result.stdout.strip() == str(target)
    assert sha256_of(target) == DEFAULT.sha256
    assert "MB at" in result.stderr  # progress with size and rate
    assert sorted(p.name for p in cache.iterdir()) == [DEFAULT.filename, DEFAULT.filename + ".lock"]
    listing = cli("weights", "list", cache_root=cache.parent)
    assert DEFAULT_WEIGHTS in listing.stdout and "non-commercial" in listing.stdout


def test_resume_after_dropped_connection(server: WeightsServer, cache: Path, weights_bytes: bytes) -> None:
    dest = cache / "w.pt"
    download_verified(f"{server.base}/drop/w.pt", dest, DEFAULT.sha256, len(weights_bytes), FAST)
    assert sha256_of(dest) == DEFAULT.sha256
    ranges = [rng for path, rng in server.log if path == "/drop/w.pt"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    resumed_at = int(ranges[1][len("bytes="):-1])
    assert 0 < resumed_at < len(weights_bytes)
    assert not (cache / "w.pt.part").exists()


def test_wrong_bytes_are_refused_and_removed(server: WeightsServer, cache: Path) -> None:
    dest = cache / "w.pt"
    with pytest.raises(DownloadError, match="does not match the expected sha256.*refused and deleted"):
        download_verified(f"{server.base}/wrong/w.pt", dest, DEFAULT.sha256, None, FAST)
    assert not dest.exists() and not (cache / "w.pt.part").exists()


@pytest.mark.parametrize("code", [404, 500])
def test_http_errors_are_clear(server: WeightsServer, cache: Path, code: int) -> None:
    url = f"{server.base}/status/{code}"
    with pytest.raises(DownloadError) as info:
        download_verified(url, cache / "w.pt", DEFAULT.sha256, None, FAST)
    message = str(info.value)
    assert url in message and f"HTTP {code}" in message and str(cache / "w.pt") in message
    attempts = sum(1 for path, _ in server.log if path == f"/status/{code}")
    assert attempts == (1 if code == 404 else FAST.retries + 1)  # only server errors are retried


def test_cli_offline_error_names_url_reason_and_path(cache: Path) -> None:
    url = "http://127.0.0.1:9/w.pt"  # discard port: nothing listens
    result = cli("weights", "download", DEFAULT_WEIGHTS, "--url", url, cache_root=cache.parent)
    assert result.returncode == 1
    assert url in result.stderr and "connection refused" in result.stderr
    assert str(cache / DEFAULT.filename) in result.stderr and "Traceback" not in result.stderr


def test_stalled_server_times_out(server: WeightsServer, cache: Path) -> None:
    with pytest.raises(DownloadError, match="timed out"):
        download_verified(f"{server.base}/stall/w.pt", cache / "w.pt", DEFAULT.sha256, None,
                          DownloadPolicy(connect_timeout=2, read_timeout=0.5, retries=0))


def test_two_concurrent_downloads_end_with_one_good_file(server: WeightsServer, cache: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from clnsod_core.weights.download import download_verified;"
        "download_verified(sys.argv[1], Path(sys.argv[2]), sys.argv[3])"
    )
    dest = cache / "w.pt"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, f"{server.base}/slow/w.pt", str(dest), DEFAULT.sha256])
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert sha256_of(dest) == DEFAULT.sha256
    assert sorted(p.name for p in cache.iterdir()) == ["w.pt", "w.pt.lock"]
    assert sum(1 for path, _ in server.log if path == "/slow/w.pt") == 1  # the second found it done


def test_tampered_cache_is_downloaded_again(server: WeightsServer, cache: Path) -> None:
    url = f"{server.base}/good/w.pt#sha256={DEFAULT.sha256}"
    first = resolve_weights(url, policy=FAST)
    assert sha256_of(first) == DEFAULT.sha256
    first.write_bytes(b"tampered")
    second = resolve_weights(url, policy=FAST)
    assert second == first and sha256_of(second) == DEFAULT.sha256
    assert sum(1 for path, _ in server.log if path == "/good/w.pt") == 2


def test_url_without_checksum_is_refused(cache: Path) -> None:
    with pytest.raises(WeightsError, match="needs its checksum"):
        resolve_weights("http://127.0.0.1:9/other.pt")


class _RunsCode:
    """Unpickling this object would run a shell command (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_in_weights_is_refused(tmp_path: Path, landscape_photo: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "clnsod-weights-1", "config": {}, "state_dict": {}, "meta": _RunsCode(marker)}, evil)
    with pytest.raises(WeightsError, match="not a loadable weights file"):
        load_model(evil)
    result = cli("mask", str(landscape_photo), "-o", str(tmp_path / "out"), "--weights", str(evil), cache_root=tmp_path)
    assert result.returncode == 1 and "not a loadable weights file" in result.stderr
    assert not marker.exists()
