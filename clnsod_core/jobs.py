"""Run many photos through one computation: decode ahead in a thread, compute in small
chunks, write each output atomically. One bad file never stops the others.

Shared by ``clnsod mask``, ``replace`` and ``batch``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from .imageio import PhotoError, PhotoMeta, load_photo_with_meta

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jfif"})
R = TypeVar("R")


@dataclass(frozen=True)
class PhotoJob:
    source: Path
    targets: tuple[Path, ...]  # every file this photo produces


@dataclass
class JobSummary:
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # one line per failure

    @property
    def ok(self) -> bool:
        return not self.failed


ErrorReporter = Callable[[str], None]


@dataclass(frozen=True)
class Decoded:
    job: PhotoJob
    image: np.ndarray
    meta: PhotoMeta


@dataclass
class JobRunner(Generic[R]):
    """``compute`` maps a chunk of decoded photos to one result each; ``write`` stores one."""

    compute: Callable[[list[Decoded]], list[R]]
    write: Callable[[Decoded, R], None]
    max_pixels: int
    report: ErrorReporter
    chunk: int = 1
    on_done: Callable[[PhotoJob], None] | None = None

    def run(self, jobs: list[PhotoJob], summary: JobSummary) -> JobSummary:
        for pairs in self._decoded_chunks(jobs):
            ready: list[Decoded] = []
            for job, future in pairs:
                try:
                    image, meta = future.result()
                    ready.append(Decoded(job, image, meta))
                except PhotoError as exc:
                    self._fail(summary, str(exc))
                    self._done(job)
            results = self.compute(ready) if ready else []
            for item, result in zip(ready, results, strict=True):
                try:
                    self.write(item, result)
                    summary.written += 1
                except OSError as exc:
                    self._fail(summary, f"{item.job.source}: cannot write output ({exc.strerror or exc})")
                except ValueError as exc:
                    self._fail(summary, f"{item.job.source}: {exc}")
                self._done(item.job)
        return summary

    def _decoded_chunks(self, jobs: list[PhotoJob]) -> Iterator[list[tuple[PhotoJob, Future]]]:
        """The next chunk decodes while the current one is computed."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clnsod-decode") as pool:
            def submit(batch: list[PhotoJob]) -> list[tuple[PhotoJob, Future]]:
                return [(job, pool.submit(load_photo_with_meta, job.source, self.max_pixels)) for job in batch]

            pending = submit(jobs[: self.chunk])
            for start in range(self.chunk, len(jobs) + self.chunk, self.chunk):
                ahead = submit(jobs[start : start + self.chunk])
                yield pending
                pending = ahead

    def _fail(self, summary: JobSummary, line: str) -> None:
        summary.failed.append(line)
        self.report(line)

    def _done(self, job: PhotoJob) -> None:
        if self.on_done:
            self.on_done(job)


def plan_jobs(
    pairs: Iterable[tuple[Path, tuple[Path, ...]]], overwrite: bool, summary: JobSummary, report: ErrorReporter
) -> list[PhotoJob]:
    """Drop photos whose outputs all exist (unless ``overwrite``), collide, or would replace the input."""
    jobs: list[PhotoJob] = []
    claimed: dict[Path, Path] = {}
    for source, targets in pairs:
        keys = [t.resolve() for t in targets]
        source_key = source.resolve()
        clash = next((t for t, k in zip(targets, keys, strict=True) if k in claimed), None)
        if any(k == source_key for k in keys):
            line = f"{source}: output would overwrite the input; choose another output folder"
        elif clash is not None:
            line = f"{source}: output {clash} is already produced from {claimed[clash.resolve()]} (same file name)"
        else:
            line = ""
        if line:
            summary.failed.append(line)
            report(line)
            continue
        claimed.update({k: source for k in keys})
        if not overwrite and all(t.exists() for t in targets):
            summary.skipped += 1
        else:
            jobs.append(PhotoJob(source, tuple(targets)))
    return jobs


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
