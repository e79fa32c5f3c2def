"""Helpers shared by the commands: model loading, download progress, output folders, the summary line."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from clnsod_core.files import remove_stale_parts
from clnsod_core.jobs import JobSummary
from clnsod_core.weights.download import DownloadError
from clnsod_core.weights.format import WeightsError

if TYPE_CHECKING:
    from clnsod_core.masking.inference import SkyMasker


class DownloadProgress:
    """Renders 'downloading: 3.1 / 8.0 MB at 5.2 MB/s' on stderr, at most a few times a second."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and done != total:
            return
        self.last = now
        rate = done / max(1e-6, now - self.start) / 1e6
        size = f"{done / 1e6:.1f} / {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        end = "\n" if total and done >= total else ""
        sys.stderr.write(f"\r{self.label}: {size} at {rate:.1f} MB/s{end}")
        sys.stderr.flush()


def load_masker(weights: str | None, device: str, max_megapixels: float) -> SkyMasker:
    """The network, imported here: the commands' start-up, usage errors and --help need no torch."""
    from clnsod_core.masking.inference import SkyMasker

    try:
        return SkyMasker(weights, device=device, max_pixels=int(max_megapixels * 1e6),
                         download_progress=DownloadProgress(f"downloading {weights}"))
    except (WeightsError, DownloadError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def report_error(line: str) -> None:
    click.echo(f"error: {line}", err=True)


def ensure_writable_dir(path: Path, recursive_cleanup: bool = False) -> None:
    """Create the output folder and prove it is writable before any work starts; then remove
    temp files a killed earlier run left there (never those of a run still going)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".clnsod-write-test-", dir=path)  # unique: runs may probe at once
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise click.ClickException(f"output folder {path} is not writable ({exc.strerror or exc})") from None
    remove_stale_parts(path, recursive=recursive_cleanup)


def finish(summary: JobSummary) -> None:
    """Print the summary line and exit 1 if anything failed."""
    no_sky = f" ({summary.no_sky} with no sky found)" if summary.no_sky else ""
    click.echo(f"{summary.written} written{no_sky}, {summary.skipped} skipped (already exist), "
               f"{len(summary.failed)} failed", err=True)
    if not summary.ok:
        raise SystemExit(1)
