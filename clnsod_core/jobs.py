"""The job engine: many photos through one computation, in small chunks, several computed at once
while the next decodes and finished ones are encoded (a thread each), every output written
atomically and every outcome recorded in the photos' order; one bad file never stops the others.

Shared by ``clnsod mask``, ``replace`` and ``batch`` (and meant for the video and distributed engines).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from clnsod_core.imaging.io import (
    IMAGE_SUFFIXES,
    PhotoError,
    PhotoMeta,
    header_pixels,
    load_photo_with_meta,
)

R = TypeVar("R")
Decoder = Callable[[Path, int], tuple[np.ndarray, PhotoMeta]]  # (path, max_pixels) -> photo; PhotoError if unusable
# Decoded photos held at once (current chunk + the one decoding ahead), in pixels: beyond it
# chunks shrink and decoding stops overlapping, so large panoramas stay within memory.
HELD_PIXELS = 60_000_000


@dataclass(frozen=True)
class PhotoJob:
    source: Path
    targets: tuple[Path, ...]  # every file this photo produces


@dataclass
class JobSummary:
    written: int = 0
    skipped: int = 0
    no_sky: int = 0  # photos written unchanged because they show no sky
    failed: list[str] = field(default_factory=list)  # one line per failure
    outcomes: dict[Path, Outcome] = field(default_factory=dict)  # per photo, for manifests

    @property
    def ok(self) -> bool:
        return not self.failed

    def record(self, source: Path, outputs: tuple[Path, ...], status: str, detail: str = "") -> None:
        """What happened to one photo; the first word is kept (a photo "no sky" is not then "written")."""
        self.outcomes.setdefault(source, Outcome(source, outputs, status, detail))

    def fail(self, source: Path, outputs: tuple[Path, ...], line: str, report: ErrorReporter) -> None:
        """One photo failed: counted, recorded with its reason, and ``line`` reported."""
        self.failed.append(line)
        self.record(source, outputs, FAILED, line)
        report(line)


@dataclass(frozen=True)
class Outcome:
    source: Path
    outputs: tuple[Path, ...]
    status: str  # WRITTEN, NO_SKY, SKIPPED or FAILED
    detail: str = ""  # the failure's reason


WRITTEN, NO_SKY, SKIPPED, FAILED = "written", "no sky", "skipped", "failed"


ErrorReporter = Callable[[str], None]


@dataclass(frozen=True)
class Decoded:
    job: PhotoJob
    image: np.ndarray
    meta: PhotoMeta


@dataclass
class _Chunk:
    """A chunk on its way through: its decoded photos, the ones that failed to decode, the pending
    computation, and how many pixels it holds until its outputs are written."""

    ready: list[Decoded]
    failures: list[tuple[PhotoJob, str]]
    result: Future | None
    pixels: int


@dataclass
class JobRunner(Generic[R]):
    """``compute`` maps a chunk of decoded photos to one result each; ``write`` stores one.
    ``workers`` chunks are computed at once (``compute`` must then be safe to call from several
    threads, as the model and the replacement are). ``decode`` reads a job's photo (a caller that
    has already decoded it, as ``clnsod replace`` does before loading the network, hands it over here)."""

    compute: Callable[[list[Decoded]], list[R]]
    write: Callable[[Decoded, R], None]
    max_pixels: int
    report: ErrorReporter
    chunk: int = 1
    on_done: Callable[[PhotoJob], None] | None = None
    held_pixels: int = HELD_PIXELS
    workers: int = 1
    decode: Decoder = load_photo_with_meta

    def run(self, jobs: list[PhotoJob], summary: JobSummary) -> JobSummary:
        """While up to ``workers`` chunks are computed, the next decodes and finished ones are encoded
        and written (a thread each; decoding, encoding and most computing release the GIL), as long
        as the chunks in flight hold at most ``held_pixels``. Outcomes are recorded in the photos' order."""
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="clnsod-compute") as computing, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="clnsod-write") as writer:
            in_flight: deque[_Chunk] = deque()
            writing: list[tuple[Decoded, Future]] = []
            written_pixels = 0
            for pairs in self._decoded_chunks(jobs):
                ready, failures = self._collect(pairs)
                pixels = sum(item.image.shape[0] * item.image.shape[1] for item in ready)
                while in_flight and (len(in_flight) >= self.workers or written_pixels + pixels
                                     + sum(c.pixels for c in in_flight) > self.held_pixels):
                    writing, written_pixels = self._hand_over(in_flight.popleft(), writing, writer, summary)
                if written_pixels + pixels > self.held_pixels:  # a large photo: write the previous ones first
                    self._finish(writing, summary)
                    writing, written_pixels = [], 0
                in_flight.append(_Chunk(ready, failures, computing.submit(self.compute, ready) if ready else None, pixels))
            while in_flight:
                writing, written_pixels = self._hand_over(in_flight.popleft(), writing, writer, summary)
            self._finish(writing, summary)
        return summary

    def _hand_over(self, chunk: _Chunk, writing: list[tuple[Decoded, Future]], writer: ThreadPoolExecutor,
                   summary: JobSummary) -> tuple[list[tuple[Decoded, Future]], int]:
        """Waits for ``chunk``'s results, records the outputs written before it and its decoding
        failures, and starts writing its outputs; returns them and the pixels they hold."""
        results = chunk.result.result() if chunk.result is not None else []
        self._finish(writing, summary)
        for job, line in chunk.failures:
            self._fail(summary, line, job)
            self._done(job)
        started = [(item, writer.submit(self.write, item, result)) for item, result in zip(chunk.ready, results, strict=True)]
        return started, chunk.pixels

    @staticmethod
    def _collect(pairs: list[tuple[PhotoJob, Future]]) -> tuple[list[Decoded], list[tuple[PhotoJob, str]]]:
        """The chunk's decoded photos, and a line for each that could not be read."""
        ready: list[Decoded] = []
        failures: list[tuple[PhotoJob, str]] = []
        for job, future in pairs:
            try:
                image, meta = future.result()
                ready.append(Decoded(job, image, meta))
            except PhotoError as exc:
                failures.append((job, str(exc)))
        return ready, failures

    def _finish(self, writing: list[tuple[Decoded, Future]], summary: JobSummary) -> None:
        """Waits for each output of a chunk and records it."""
        for item, future in writing:
            try:
                future.result()
                summary.written += 1
                summary.record(item.job.source, item.job.targets, WRITTEN)
            except OSError as exc:
                self._fail(summary, f"{item.job.source}: cannot write output ({exc.strerror or exc})", item.job)
            except ValueError as exc:
                self._fail(summary, f"{item.job.source}: {exc}", item.job)
            self._done(item.job)

    def _decoded_chunks(self, jobs: list[PhotoJob]) -> Iterator[list[tuple[PhotoJob, Future]]]:
        """The next chunk decodes while the current one is computed, unless together they would
        hold more than ``held_pixels`` (then it decodes after)."""
        chunks = self._chunks(jobs)
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clnsod-decode") as pool:
            def submit(batch: list[tuple[PhotoJob, int]]) -> list[tuple[PhotoJob, Future]]:
                return [(job, pool.submit(self.decode, job.source, self.max_pixels)) for job, _ in batch]

            pending = submit(chunks[0])
            for current, following in zip(chunks, [*chunks[1:], None], strict=True):
                overlap = following is not None and _pixels(current) + _pixels(following) <= self.held_pixels
                ahead = submit(following) if overlap and following is not None else None
                yield pending
                if following is not None:
                    pending = ahead if ahead is not None else submit(following)

    def _chunks(self, jobs: list[PhotoJob]) -> list[list[tuple[PhotoJob, int]]]:
        """Up to ``chunk`` photos each, and at most half of ``held_pixels`` unless one photo is larger."""
        sized = [(job, header_pixels(job.source)) for job in jobs]
        chunks: list[list[tuple[PhotoJob, int]]] = []
        for item in sized:
            last = chunks[-1] if chunks else None
            if last is not None and len(last) < self.chunk and _pixels(last) + item[1] <= self.held_pixels // 2:
                last.append(item)
            else:
                chunks.append([item])
        return chunks

    def _fail(self, summary: JobSummary, line: str, job: PhotoJob) -> None:
        summary.fail(job.source, job.targets, line, self.report)

    def _done(self, job: PhotoJob) -> None:
        if self.on_done:
            self.on_done(job)


def _pixels(chunk: list[tuple[PhotoJob, int]]) -> int:
    return sum(pixels for _, pixels in chunk)


def _key(path: Path) -> Path:
    """Canonical path for comparisons; a symlink loop (RuntimeError on Python < 3.13) stays as given."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def plan_jobs(
    pairs: Iterable[tuple[Path, tuple[Path, ...]]], overwrite: bool, summary: JobSummary, report: ErrorReporter
) -> list[PhotoJob]:
    """Drop photos whose outputs all exist (unless ``overwrite``), collide, or would replace an input
    (its own or another photo's: an output folder that overlaps the input folder must not eat photos)."""
    pairs = list(pairs)
    inputs = {_key(source): source for source, _ in pairs}
    jobs: list[PhotoJob] = []
    claimed: dict[Path, Path] = {}
    for source, targets in pairs:
        keys = [_key(t) for t in targets]
        source_key = _key(source)
        clash = next((t for t, k in zip(targets, keys, strict=True) if k in claimed), None)
        eaten = next((inputs[k] for k in keys if k in inputs), None)
        if eaten is not None and _key(eaten) == source_key:
            line = f"{source}: output would overwrite the input; choose another output folder"
        elif eaten is not None:
            line = f"{source}: output would overwrite the input photo {eaten}; choose another output folder"
        elif clash is not None:
            line = f"{source}: output {clash} is already produced from {claimed[_key(clash)]} (same file name)"
        else:
            line = ""
        if line:
            summary.fail(source, tuple(targets), line, report)
            continue
        claimed.update({k: source for k in keys})
        if not overwrite and all(t.exists() for t in targets):
            summary.skipped += 1
            summary.record(source, tuple(targets), SKIPPED)
        else:
            jobs.append(PhotoJob(source, tuple(targets)))
    return jobs


def find_photos(root: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, sorted, symlinked folders not followed)."""
    found: list[Path] = []
    skip = _key(exclude) if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (skip is None or _key(here / d) != skip))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(here / name)
    return found
