"""The job engine overlaps writing one photo's outputs with computing the next, and still records
every outcome in the photos' order. Real photos are decoded; compute and write are small functions
that record what ran when (the engine is what is under test, not the model)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from clnsod_core.jobs import FAILED, WRITTEN, Decoded, JobRunner, JobSummary, PhotoJob

WAIT_S = 30.0


def _folder(photo: Path, tmp: Path, count: int) -> list[PhotoJob]:
    with Image.open(photo) as im:
        base = im.convert("RGB")
    jobs = []
    for i in range(count):
        source = tmp / f"p{i}.jpg"
        base.rotate(i * 3).save(source, quality=90)
        jobs.append(PhotoJob(source, (tmp / "out" / f"p{i}.png",)))
    (tmp / "out").mkdir()
    return jobs


def _mean_colour(items: list[Decoded]) -> list[np.ndarray]:
    return [item.image.reshape(-1, 3).mean(axis=0) for item in items]


def test_writing_overlaps_the_next_computation(landscape_photo: Path, tmp_path: Path) -> None:
    jobs = _folder(landscape_photo, tmp_path, 4)
    computing = [threading.Event() for _ in jobs]
    writer_threads: set[str] = set()
    overlapped: list[bool] = []

    def compute(items: list[Decoded]) -> list[np.ndarray]:
        for item in items:
            computing[jobs.index(item.job)].set()
        return _mean_colour(items)

    def write(item: Decoded, result: np.ndarray) -> None:
        index = jobs.index(item.job)
        writer_threads.add(threading.current_thread().name)
        if index + 1 < len(jobs):  # the next photo is computed while this one is being written
            overlapped.append(computing[index + 1].wait(WAIT_S))
        Image.fromarray(np.full((4, 4, 3), result, np.uint8)).save(item.job.targets[0])

    summary = JobRunner(compute, write, 10**9, report=lambda line: None).run(jobs, JobSummary())
    assert overlapped == [True, True, True]
    assert all(name.startswith("clnsod-write") for name in writer_threads)
    assert summary.written == 4 and not summary.failed
    assert all(job.targets[0].is_file() for job in jobs)


def test_outcomes_in_order_with_bad_photos_and_failed_writes(landscape_photo: Path, tmp_path: Path) -> None:
    jobs = _folder(landscape_photo, tmp_path, 5)
    jobs[1].source.write_bytes(b"not a photo")
    lines: list[str] = []

    def write(item: Decoded, result: np.ndarray) -> None:
        if item.job is jobs[3]:
            raise OSError(28, "No space left on device")
        item.job.targets[0].write_bytes(b"done")

    summary = JobRunner(_mean_colour, write, 10**9, report=lines.append).run(jobs, JobSummary())
    assert [outcome.status for outcome in summary.outcomes.values()] == [WRITTEN, FAILED, WRITTEN, FAILED, WRITTEN]
    assert list(summary.outcomes) == [job.source for job in jobs]
    assert len(lines) == 2 and str(jobs[1].source) in lines[0] and "No space left on device" in lines[1]
    assert summary.written == 3 and not jobs[3].targets[0].exists()


def test_large_photos_are_written_before_the_next_is_computed(landscape_photo: Path, tmp_path: Path) -> None:
    jobs = _folder(landscape_photo, tmp_path, 3)
    with Image.open(jobs[0].source) as im:
        pixels = im.width * im.height
    events: list[str] = []

    def compute(items: list[Decoded]) -> list[np.ndarray]:
        events.extend(f"compute {jobs.index(item.job)}" for item in items)
        return _mean_colour(items)

    def write(item: Decoded, result: np.ndarray) -> None:
        events.append(f"write {jobs.index(item.job)}")

    # Room for one photo and a half: holding a written photo and a computed one at once is too much.
    JobRunner(compute, write, 10**9, report=lambda line: None, held_pixels=pixels * 3 // 2).run(jobs, JobSummary())
    assert events == ["compute 0", "write 0", "compute 1", "write 1", "compute 2", "write 2"]


def test_several_workers_compute_at_once_and_outcomes_stay_in_order(landscape_photo: Path, tmp_path: Path) -> None:
    jobs = _folder(landscape_photo, tmp_path, 6)
    jobs[4].source.write_bytes(b"not a photo")
    started = [threading.Event() for _ in jobs]
    together: list[bool] = []
    order: list[int] = []

    def compute(items: list[Decoded]) -> list[np.ndarray]:
        index = jobs.index(items[0].job)
        started[index].set()
        if index % 2 == 0 and index + 1 < len(jobs) and index + 1 != 4:  # waits for its neighbour to start
            together.append(started[index + 1].wait(WAIT_S))
        return _mean_colour(items)

    def write(item: Decoded, result: np.ndarray) -> None:
        order.append(jobs.index(item.job))

    summary = JobRunner(compute, write, 10**9, report=lambda line: None, workers=2).run(jobs, JobSummary())
    assert together == [True, True]
    assert order == [0, 1, 2, 3, 5]
    assert [outcome.status for outcome in summary.outcomes.values()] == [WRITTEN] * 4 + [FAILED, WRITTEN]
    assert list(summary.outcomes) == [job.source for job in jobs]
