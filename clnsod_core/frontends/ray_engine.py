"""``clnsod batch --engine ray``: the batch job on Ray Data, on this machine or on a cluster.

The driver (the ``clnsod`` process) lists and plans the photos as the local engine does (same skips,
same refusals), so only the per-photo work moves: long-lived actors each load the model once and
run the local engine's own ``JobRunner`` on a few photos at a time, returning one result per photo;
the driver merges them into one ``JobSummary`` and prints the same lines, summary and exit code.
Outputs are atomic (``files.write_atomic`` for paths, one upload per file for object stores), so
when a worker is killed Ray Data restarts it and retries its photos without a partial file left.
``ray`` and ``pyarrow`` are imported only here: the core works without the ``ray`` extra.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from clnsod_core import jobs
from clnsod_core.files import remove_stale_parts, write_atomic
from clnsod_core.frontends.cli.batch import is_uri
from clnsod_core.frontends.cli.common import (
    ensure_writable_dir,
    finish,
    load_masker,
    report_error,
)
from clnsod_core.frontends.cli.manifest import write_manifest
from clnsod_core.frontends.cli.runners import (
    NETWORK_CHUNK,
    batch_runner,
    echo_notice,
    load_replacer,
    load_sky_or_fail,
    plan_batch,
)
from clnsod_core.imaging.io import IMAGE_SUFFIXES
from clnsod_core.jobs import SKIPPED, JobSummary, Outcome, PhotoJob, find_photos
from clnsod_core.replace import SkySource
from clnsod_core.runtime import tune_allocator

if TYPE_CHECKING:
    from types import ModuleType

    import pyarrow.fs as pafs

INSTALL_HINT = "pip install -e '.[ray]'"
ROWS_PER_TASK = NETWORK_CHUNK  # photos per Ray task: the unit Ray retries when a worker dies
WRITTEN, NO_SKY, FAILED = "written", "no_sky", "failed"


@dataclass(frozen=True)
class RaySettings:
    address: str | None  # None: start a local Ray on this machine
    workers: int | None  # None: as many as the cluster's resources allow
    cpus_per_worker: float
    gpus_per_worker: float


@dataclass(frozen=True)
class Store:
    """A folder as the user named it: a local path, which every Ray node must see at that same path
    (shared storage), or a URI of pyarrow's filesystem layer (s3://, gs://, hdfs://, file://)."""

    text: str
    absolute: str  # a local path made absolute on the driver (workers run elsewhere); "" for a URI

    @classmethod
    def named(cls, text: str) -> Store:
        return cls(text, "" if is_uri(text) else str(Path(text).absolute()))

    @property
    def is_uri(self) -> bool:
        return not self.absolute

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and its path of the folder (resolved where it is used, so each
        node takes the credentials of its own environment)."""
        import pyarrow.fs as pafs

        return pafs.FileSystem.from_uri(self.text)  # type: ignore[no-any-return]

    @property
    def shown_prefix(self) -> str:
        """What the local engine prints before a path relative to this folder."""
        if self.is_uri:
            return self.text.rstrip("/") + "/"
        folder = str(Path(self.text))
        return "" if folder == "." else folder.rstrip(os.sep) + os.sep


class Names:
    """Rewrites paths in a report line from where a file was handled (a worker's absolute path or
    scratch copy, the driver's planning key) to the user's own spelling, as the local engine prints it."""

    def __init__(self, roots: list[tuple[str, str]]) -> None:
        self.prefixes = {root.rstrip(os.sep) + os.sep: shown for root, shown in roots}
        alternatives = sorted(self.prefixes, key=len, reverse=True)  # a folder inside another: longest first
        self.pattern = re.compile(r"(?<!\S)(" + "|".join(map(re.escape, alternatives)) + ")") if roots else None

    def __call__(self, line: str) -> str:
        if self.pattern is None:
            return line
        return self.pattern.sub(lambda match: self.prefixes[match.group(1)], line)


def require_ray() -> ModuleType:
    """Ray Data is an optional extra: say how to install it instead of failing with a traceback."""
    try:
        import pyarrow.fs  # noqa: F401
        import ray
        import ray.data
    except ImportError as exc:
        raise click.ClickException(f"--engine ray needs Ray Data, which is not installed here ({exc}); "
                                   f"install it with: {INSTALL_HINT}") from None
    return ray


def worker_device(device: str, gpus_per_worker: float) -> str:
    """GPU workers use ``--device`` as given (auto = the GPU Ray gave them); CPU workers use the CPU,
    even on a node with a GPU, since Ray reserved none for them."""
    if gpus_per_worker > 0:
        return device
    if device == "cuda":
        raise click.UsageError("--device cuda with --engine ray needs --gpus-per-worker, so that Ray reserves "
                               "a GPU for each worker")
    return "cpu" if device == "auto" else device


# ----------------------------------------------------------------------------------------------
# Driver: plan as the local engine does, then merge the workers' per-photo results.


def run_on_ray(in_text: str, out_text: str, kind: str, fmt: str, overwrite: bool, flags: dict[str, Any],
               settings: RaySettings, manifest: Path | None = None) -> None:
    ray = require_ray()
    flags = {**flags, "device": worker_device(flags["device"], settings.gpus_per_worker)}
    source, dest = Store.named(in_text), Store.named(out_text)
    if not dest.is_uri:
        ensure_writable_dir(Path(out_text), recursive_cleanup=True)
    sky = load_sky_or_fail(flags["sky"], flags["max_megapixels"]) if kind != "mask" else None
    summary = JobSummary()
    rows = plan_rows(source, dest, kind, fmt, overwrite, summary)
    if rows:
        # Checked and resolved here (a name may need a download), then shipped to every worker:
        # they need neither the network nor the weights file at the same path.
        weights = load_masker(flags["weights"], "cpu", flags["max_megapixels"]).weights_path.read_bytes()
        worker_args = {"flags": flags, "kind": kind, "sky": sky, "weights": weights, "source": source,
                       "dest": dest, "threads": max(1, int(settings.cpus_per_worker))}
        _start_ray(ray, settings)
        try:
            _run_rows(ray, rows, worker_args, settings, summary)
            only_here = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]} == {
                ray.util.get_node_ip_address()}
        finally:
            ray.shutdown()
        if only_here and not dest.is_uri:
            # Every worker ran on this machine, so a temp file whose pid is gone here is a killed
            # worker's (on a cluster the next run's start-up cleanup has the same rule).
            remove_stale_parts(Path(out_text), recursive=True)
    if manifest is not None:
        write_manifest(manifest, summary, kind, flags)
    finish(summary)


def plan_rows(source: Store, dest: Store, kind: str, fmt: str, overwrite: bool,
              summary: JobSummary) -> list[dict[str, Any]]:
    """The local engine's planning (``find_photos`` + ``plan_batch``) on planning keys: local paths
    as given, a URI's files under its pyarrow path. One row per photo to do: its path relative to
    IN (``photo``) and its outputs' paths relative to OUT (``targets``)."""
    import pyarrow.fs as pafs

    in_fs, out_fs = _open(source), _open(dest)
    in_key, out_key = _key_root(source, in_fs), _key_root(dest, out_fs)
    names = Names([(str(key), store.shown_prefix) for key, store, fs in ((in_key, source, in_fs),
                                                                         (out_key, dest, out_fs)) if fs])

    def report(line: str) -> None:
        report_error(names(line))

    if in_fs is None:
        photos = find_photos(in_key, exclude=out_key)
    else:  # as find_photos: a folder below IN that is OUT holds outputs, not photos
        listed = [in_key / rel for rel in _list_photos(source, *in_fs)]
        skip = out_key.resolve()
        below = skip != in_key.resolve() and skip.is_relative_to(in_key.resolve())
        photos = [photo for photo in listed if not (below and photo.resolve().is_relative_to(skip))]
    failed_before = len(summary.failed)
    jobs = plan_batch(photos, in_key, out_key, kind, fmt, overwrite or out_fs is not None, summary, report)
    summary.failed[failed_before:] = [names(line) for line in summary.failed[failed_before:]]
    summary.outcomes = {Path(names(str(o.source))): Outcome(Path(names(str(o.source))),
                                                            tuple(Path(names(str(t))) for t in o.outputs),
                                                            o.status, names(o.detail))
                        for o in summary.outcomes.values()}
    if out_fs is not None and not overwrite:
        fs, root = out_fs
        listed = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        existing = {PurePosixPath(info.path) for info in listed if info.type == pafs.FileType.File}
        done = {job for job in jobs
                if all(PurePosixPath(root, t.relative_to(out_key).as_posix()) in existing for t in job.targets)}
        summary.skipped += len(done)
        for job in done:
            summary.record(Path(names(str(job.source))), tuple(Path(names(str(t))) for t in job.targets), SKIPPED)
        jobs = [job for job in jobs if job not in done]
    return [{"photo": job.source.relative_to(in_key).as_posix(),
             "targets": [t.relative_to(out_key).as_posix() for t in job.targets]} for job in jobs]


def _open(store: Store) -> tuple[pafs.FileSystem, str] | None:
    """A URI's filesystem (None for a local path); an unknown scheme or missing credentials is one line."""
    if not store.is_uri:
        return None
    try:
        return store.filesystem()
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise click.ClickException(f"{store.text}: cannot open ({exc})") from None


def _key_root(store: Store, fs: tuple[pafs.FileSystem, str] | None) -> Path:
    """The folder's name for planning: local paths as given (so lines match the local engine), a
    file:// URI's real local path (so overlaps with local paths are seen), and for other filesystems
    a path under '/<type>:' that no local file has."""
    if fs is None:
        return Path(store.text)
    filesystem, path = fs
    if filesystem.type_name == "local":
        return Path(path)
    return Path("/", f"{filesystem.type_name}:", path.lstrip("/"))


def _list_photos(store: Store, fs: pafs.FileSystem, root: str) -> list[str]:
    """Photo files under a URI folder, relative to it, in ``find_photos``' order and with its rules
    (image suffixes, hidden files and folders left out)."""
    import pyarrow.fs as pafs

    try:
        listed = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except OSError as exc:
        raise click.ClickException(f"{store.text}: cannot list the folder ({exc})") from None
    found = []
    for info in listed:
        rel = PurePosixPath(info.path).relative_to(root)
        if (info.type == pafs.FileType.File and rel.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in rel.parts)):
            found.append(rel)
    return [rel.as_posix() for rel in sorted(found, key=lambda rel: (rel.parts[:-1], rel.name))]


def _start_ray(ray: ModuleType, settings: RaySettings) -> None:
    """Join the cluster at ``--address``, or start a private local Ray ("local": never an already
    running one found through RAY_ADDRESS); Ray's own chatter stays in its session logs."""
    try:
        if settings.address is None:
            ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR)
        else:
            ray.init(address=settings.address, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise click.ClickException(f"cannot start or join Ray ({exc})") from None
    ray.data.DataContext.get_current().enable_progress_bars = False  # the driver shows its own bar
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)


def _run_rows(ray: ModuleType, rows: list[dict[str, Any]], worker_args: dict[str, Any], settings: RaySettings,
              summary: JobSummary) -> None:
    resources = ray.cluster_resources()
    if settings.gpus_per_worker > 0:
        fit = int(resources.get("GPU", 0) / settings.gpus_per_worker)
    else:
        fit = int(resources.get("CPU", 0) / settings.cpus_per_worker)
    workers = min(settings.workers or max(1, fit), len(rows))
    per_task = max(1, min(ROWS_PER_TASK, -(-len(rows) // workers)))  # small jobs: spread over all workers
    results = ray.data.from_items(rows).map_batches(
        PhotoWorker,
        batch_size=per_task,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=settings.cpus_per_worker,
        num_gpus=settings.gpus_per_worker or None,
        fn_constructor_kwargs=worker_args,
    )
    label = f"{len(rows)} photos on {workers} Ray worker{'s' if workers > 1 else ''}"
    with click.progressbar(length=len(rows), label=label, file=click.get_text_stream("stderr")) as bar:
        try:
            for result in results.iter_rows():
                _merge(result, summary)
                bar.update(1)
        except ray.exceptions.RayError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(f"the Ray job failed ({reason}); photos already written are kept "
                                       "and skipped by the next run") from None


def _merge(result: dict[str, Any], summary: JobSummary) -> None:
    """One photo's result into the run's summary, its line printed as the local engine prints it."""
    status, line = str(result["status"]), str(result["line"])
    outputs = tuple(Path(name) for name in str(result["outputs"]).split("\n"))
    photo = Path(str(result["photo"]))
    if status == FAILED:
        summary.fail(photo, outputs, line, report_error)
        return
    summary.record(photo, outputs, jobs.NO_SKY if status == NO_SKY else jobs.WRITTEN)
    summary.written += 1
    if status == NO_SKY:
        summary.no_sky += 1
        echo_notice(line)


# ----------------------------------------------------------------------------------------------
# Workers: one Ray actor each, the model loaded once, photos through the local engine's runner.


class PhotoWorker:
    """A Ray Data actor: ``__call__`` takes a batch of rows (``photo``, ``targets``) and returns one
    result per photo (``status``: written / no_sky / failed, and its ``line``)."""

    def __init__(self, flags: dict[str, Any], kind: str, sky: SkySource | None, weights: bytes,
                 source: Store, dest: Store, threads: int) -> None:
        import torch

        tune_allocator()  # as ``clnsod`` does at start-up
        torch.set_num_threads(threads)
        self.flags, self.kind, self.sky, self.source, self.dest = flags, kind, sky, source, dest
        folder = Path(tempfile.mkdtemp(prefix="clnsod-ray-weights-"))
        try:
            (folder / "weights.pt").write_bytes(weights)
            self.replacer = load_replacer({**flags, "weights": str(folder / "weights.pt")})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.in_fs = source.filesystem() if source.is_uri else None
        self.out_fs = dest.filesystem() if dest.is_uri else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        with tempfile.TemporaryDirectory(prefix="clnsod-ray-") as scratch:
            in_root = Path(self.source.absolute) if self.in_fs is None else Path(scratch, "in")
            out_root = Path(self.dest.absolute) if self.out_fs is None else Path(scratch, "out")
            names = Names([(str(in_root), self.source.shown_prefix), (str(out_root), self.dest.shown_prefix)])
            outcome = _Outcome(names, self._upload if self.out_fs is not None else None, out_root)
            jobs = []
            for photo, targets in zip(batch["photo"], batch["targets"], strict=True):
                job = PhotoJob(in_root / str(photo), tuple(out_root / str(t) for t in targets))
                reason = self._download(str(photo), job.source) if self.in_fs is not None else None
                if reason is None:
                    jobs.append(job)
                else:
                    outcome.add(job, FAILED, f"{job.source}: {reason}")
            runner_summary = JobSummary()  # the driver keeps the real one, from the per-photo results
            runner = batch_runner(self.replacer, self.kind, self.sky, self.flags, runner_summary,
                                  report=outcome.error, notice=outcome.notice, on_done=outcome.done)
            runner.run(jobs, runner_summary)
            return outcome.columns()

    def _download(self, photo: str, local: Path) -> str | None:
        """A photo of a URI folder into this batch's scratch folder; the reason it failed, if it did."""
        assert self.in_fs is not None
        fs, root = self.in_fs
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with fs.open_input_stream(f"{root.rstrip('/')}/{photo}") as remote, open(local, "wb") as handle:
                shutil.copyfileobj(remote, handle, 1 << 20)
        except FileNotFoundError:
            return "file not found"
        except OSError as exc:
            return f"cannot read ({exc.strerror or exc})"
        return None

    def _upload(self, local: Path, relative: str) -> None:
        """One finished output to the URI folder: atomically (temp file + rename) on a local
        filesystem; on an object store a single put is atomic already."""
        import pyarrow.fs as pafs

        assert self.out_fs is not None
        fs, root = self.out_fs
        remote = f"{root.rstrip('/')}/{relative}"
        with open(local, "rb") as handle:
            if isinstance(fs, pafs.LocalFileSystem):
                write_atomic(Path(remote), lambda out: shutil.copyfileobj(handle, out, 1 << 20))
            else:
                with fs.open_output_stream(remote) as out:
                    shutil.copyfileobj(handle, out, 1 << 20)


class _Outcome:
    """Turns what the runner reports (failure and no-sky lines, then ``on_done`` once per photo)
    into one result per photo, uploading its outputs first when OUT is a URI."""

    def __init__(self, names: Names, upload: Callable[[Path, str], None] | None, out_root: Path) -> None:
        self.names, self.upload, self.out_root = names, upload, out_root
        self.errors: list[str] = []
        self.notices: list[str] = []
        self.results: dict[str, list[str]] = {"photo": [], "outputs": [], "status": [], "line": []}

    def error(self, line: str) -> None:
        self.errors.append(line)

    def notice(self, line: str) -> None:
        self.notices.append(line)

    def done(self, job: PhotoJob) -> None:
        errors, notices = self.errors, self.notices
        self.errors, self.notices = [], []
        if errors:
            self.add(job, FAILED, errors[0])
            return
        if self.upload is not None:
            try:
                for target in job.targets:
                    self.upload(target, target.relative_to(self.out_root).as_posix())
            except OSError as exc:
                self.add(job, FAILED, f"{job.source}: cannot write output ({exc.strerror or exc})")
                return
        self.add(job, NO_SKY if notices else WRITTEN, notices[0] if notices else "")

    def add(self, job: PhotoJob, status: str, line: str) -> None:
        self.results["photo"].append(self.names(str(job.source)))
        self.results["outputs"].append("\n".join(self.names(str(target)) for target in job.targets))
        self.results["status"].append(status)
        self.results["line"].append(self.names(line))

    def columns(self) -> dict[str, list[str]]:
        return self.results
