"""Safe, resumable downloads of weight files.

Streams into ``<dest>.part`` (resuming with an HTTP Range request after an interruption),
verifies size and sha256, then renames into place. A lock file serialises processes that
fetch the same file, so they end with one good copy. Nothing unverified is ever left at
``dest``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed; the message names the URL, the reason and where to put the file by hand."""


@dataclass(frozen=True)
class DownloadPolicy:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 4  # extra attempts after the first
    backoff: float = 1.0  # seconds, doubled after each failed attempt


ProgressCallback = Callable[[int, int | None], None]  # (bytes so far, total or None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fetch_into_part(url: str, part: Path, expected_size: int | None, policy: DownloadPolicy,
                     progress: ProgressCallback | None) -> None:
    """One attempt: append the missing bytes of ``url`` to ``part``."""
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=(policy.connect_timeout, policy.read_timeout)) as resp:
        if resp.status_code == 416 and expected_size is not None and have == expected_size:
            return  # already complete
        if resp.status_code not in (200, 206):
            raise _HttpStatus(resp.status_code, resp.reason)
        if resp.status_code == 200 and have:
            have = 0  # server ignored the Range header: start over
        total = expected_size
        length = resp.headers.get("Content-Length")
        if total is None and length is not None and length.isdigit():
            total = have + int(length)
        with open(part, "ab" if have else "wb") as handle:
            got = have
            for block in resp.iter_content(CHUNK):
                handle.write(block)
                got += len(block)
                if progress:
                    progress(got, total)
            handle.flush()
            os.fsync(handle.fileno())
        if total is not None and got < total:
            raise requests.ConnectionError(f"connection closed after {got} of {total} bytes")


class _HttpStatus(Exception):
    def __init__(self, status: int, reason: str | None) -> None:
        super().__init__(f"HTTP {status} {reason or ''}".strip())
        self.status = status


def download_verified(
    url: str,
    dest: Path,
    sha256: str,
    size: int | None = None,
    policy: DownloadPolicy = DownloadPolicy(),
    progress: ProgressCallback | None = None,
) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there; returns ``dest``."""
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest  # no lock needed: the cache may even be read-only (weights placed by hand)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    by_hand = f"download it yourself and save it as {dest} (sha256 {sha256})"
    with file_lock(dest.with_name(dest.name + ".lock")):
        if dest.exists():
            if sha256_of(dest) == sha256:
                return dest  # another process finished it while we waited
            dest.unlink()  # tampered or stale: refuse and fetch again
        delay = policy.backoff
        last_reason = ""
        for attempt in range(policy.retries + 1):
            try:
                _fetch_into_part(url, part, size, policy, progress)
                break
            except _HttpStatus as exc:
                if exc.status < 500 and exc.status != 429:
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"{url}: {exc}; {by_hand}") from None
                last_reason = str(exc)
            except requests.RequestException as exc:
                last_reason = _short_reason(exc, policy)
            if attempt < policy.retries:
                time.sleep(delay)
                delay *= 2
        else:
            raise DownloadError(f"{url}: {last_reason} (after {policy.retries + 1} attempts); {by_hand}")
        actual_size = part.stat().st_size
        actual = sha256_of(part)
        if actual != sha256 or (size is not None and actual_size != size):
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: downloaded file does not match the expected sha256 (got {actual[:16]}..., "
                f"{actual_size} bytes; expected {sha256[:16]}...); refused and deleted; {by_hand}"
            )
        os.replace(part, dest)
        return dest


def _short_reason(exc: requests.RequestException, policy: DownloadPolicy) -> str:
    text = str(exc)
    # A stall while streaming surfaces as a ConnectionError wrapping urllib3's ReadTimeoutError.
    if isinstance(exc, requests.Timeout) or "timed out" in text:
        return f"timed out (no data for {policy.read_timeout:g}s or no connection within {policy.connect_timeout:g}s)"
    if isinstance(exc, requests.ConnectionError) and "Connection refused" in text:
        return "connection refused (offline or wrong address?)"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "host name could not be resolved (offline?)"
    return text.splitlines()[0][:200] if text else type(exc).__name__
