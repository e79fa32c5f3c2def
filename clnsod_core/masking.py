"""Mask many photos: decode ahead in a thread, run the network in small batches, write atomically.

Shared by ``clnsod mask`` and ``clnsod batch``; one bad file never stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .imageio import PhotoError, load_photo, save_mask_png
from .inference import SkyMasker

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jfif"})


@dataclass(frozen=True)
class MaskJob:
    source: Path
    target: Path


@dataclass
class JobSummary:
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # one line per failure

    @property
    def ok(self) -> bool:
        return not self.failed


ErrorReporter = Callable[[str], None]


def plan_jobs(pairs: Iterable[tuple[Path, Path]], overwrite: bool, summary: JobSummary, report: ErrorReporter) -> list[MaskJob]:
    """Drop jobs whose output exists (unless ``overwrite``), collides or would replace the input."""
    jobs: list[MaskJob] = []
    claimed: dict[Path, Path] = {}
    for source, target in pairs:
        key = target.resolve()
        if key == source.resolve():
            _fail(summary, report, f"{source}: output {target} would overwrite the input; choose another output folder")
        elif key in claimed:
            _fail(summary, report, f"{source}: output {target} is already produced from {claimed[key]} (same file name)")
        elif target.exists() and not overwrite:
            summary.skipped += 1
            claimed[key] = source
        else:
            claimed[key] = source
            jobs.append(MaskJob(source, target))
    return jobs


def _fail(summary: JobSummary, report: ErrorReporter, line: str) -> None:
    summary.failed.append(line)
    report(line)


def _decode(job: MaskJob, max_pixels: int) -> np.ndarray:
    return load_photo(job.source, max_pixels)


def _decoded_chunks(jobs: list[MaskJob], chunk: int, max_pixels: int) -> Iterator[list[tuple[MaskJob, Future[np.ndarray]]]]:
    """Chunks of (job, decode future); the next chunk decodes while the current one runs."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clnsod-decode") as pool:
        pending = [(job, pool.submit(_decode, job, max_pixels)) for job in jobs[:chunk]]
        start = chunk
        while pending:
            ahead = [(job, pool.submit(_decode, job, max_pixels)) for job in jobs[start : start + chunk]]
            start += chunk
            yield pending
            pending = ahead


def run_mask_jobs(
    jobs: list[MaskJob],
    masker: SkyMasker,
    summary: JobSummary,
    report: ErrorReporter,
    on_done: Callable[[MaskJob], None] | None = None,
    chunk: int = 4,
) -> JobSummary:
    """Write one 8-bit sky mask per job; failures are reported and counted, never raised."""
    for pairs in _decoded_chunks(jobs, chunk, masker.max_pixels):
        ready: list[tuple[MaskJob, np.ndarray]] = []
        for job, future in pairs:
            try:
                ready.append((job, future.result()))
            except PhotoError as exc:
                _fail(summary, report, str(exc))
                if on_done:
                    on_done(job)
        probs = masker.predict_batch([image for _, image in ready])
        for (job, _), prob in zip(ready, probs):
            try:
                save_mask_png(prob, job.target)
                summary.written += 1
            except OSError as exc:
                _fail(summary, report, f"{job.source}: cannot write {job.target} ({exc.strerror or exc})")
            if on_done:
                on_done(job)
    return summary


def find_photos(root: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, sorted, symlinked folders not followed)."""
    found: list[Path] = []
    skip = exclude.resolve() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (skip is None or (here / d).resolve() != skip))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(here / name)
    return found
