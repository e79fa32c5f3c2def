"""``clnsod batch``: every photo under a folder, masks or replacements, resumable; in this process
(``--engine local``) or on Ray workers (``--engine ray``, ``clnsod_core/frontends/ray_engine.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clnsod_core.frontends.cli.common import ensure_writable_dir, finish
from clnsod_core.frontends.cli.manifest import check_manifest_path, write_manifest
from clnsod_core.frontends.cli.options import REPLACE_GROUPS, cli_options
from clnsod_core.frontends.cli.runners import (
    OUTPUT_KINDS,
    batch_runner,
    disclosure_flags,
    load_replacer,
    load_sky_or_fail,
    plan_batch,
)
from clnsod_core.imaging.io import OUTPUT_FORMATS, output_format
from clnsod_core.jobs import JobSummary, PhotoJob, find_photos
from clnsod_core.runtime import cpu_cores

ENGINES = ("local", "ray")
LOCAL_WORKERS = 4  # default cap on photos computed at once by the local engine


def is_uri(text: str) -> bool:
    """``scheme://...`` (s3://, gs://, hdfs://, file://): read through pyarrow's filesystems by the Ray engine."""
    return "://" in text


class FolderOrUri(click.ParamType):
    """A local folder, checked like ``click.Path``, or a URI, passed on as text (only the Ray engine
    takes URIs; a local path is checked here on the machine that runs the command)."""

    name = "folder|uri"

    def __init__(self, exists: bool) -> None:
        self.path = click.Path(exists=exists, file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        if isinstance(value, str) and is_uri(value):
            return value
        return self.path.convert(value, param, ctx)  # type: ignore[no-any-return]


@click.command("batch")
@click.argument("in_dir", type=FolderOrUri(exists=True))
@click.option("-o", "--out", "out_dir", required=True, type=FolderOrUri(exists=False),
              help="Output folder; the sub-folder structure of IN_DIR is kept.")
@click.option("--output", "output_kind", type=click.Choice(OUTPUT_KINDS), default=None,
              help="composite (default with --sky), mask (default without), both, or layers: the editor stack "
              "to put above the untouched photo, <stem>_sky.png (new sky, alpha = matte) then "
              "<stem>_lighting.png (foreground lighting, normal blend), plus <stem>_mask.png.")
@click.option("--format", "fmt", type=click.Choice([suffix[1:] for suffix in OUTPUT_FORMATS]), default="jpg",
              show_default=True,
              help="File format of composites.")
@click.option("--overwrite", is_flag=True, help="Redo photos whose outputs already exist.")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write FILE.csv or FILE.json: every photo with its outputs, what happened to it "
              "(written, no sky, skipped, failed) and the settings used, e.g. to link each listing photo "
              "to its original.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="local: in this process. ray: on Ray Data workers that each load the model once "
              "(needs pip install -e '.[ray]'); IN_DIR and OUT may then also be URIs (s3://, gs://, "
              "file://, anything pyarrow's filesystems read), and local paths must be on storage that "
              "every node of the cluster sees at the same path.")
@click.option("--address", default=None, metavar="ADDR",
              help="[ray] The Ray cluster to join (HEAD:6379, as printed by 'ray start --head'); without it "
              "a local Ray is started on this machine for the run.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Photos computed at once. local: each with an equal share of the CPU cores for PyTorch; "
              f"default: as many as the cores, at most {LOCAL_WORKERS} (about 0.4 GB each for 12 MP photos; "
              "1 for the least memory). ray: the number of workers; default: as many as the cluster's CPUs "
              "(GPUs with --gpus-per-worker) allow.")
@click.option("--cpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=None,
              help="[ray] CPUs reserved per worker, also its PyTorch threads (default 1).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="[ray] GPUs reserved per worker (e.g. 1, or 0.5 for two per GPU); the network then "
              "runs on --device as given (auto = cuda). Without it workers run on the CPU.")
@cli_options(*REPLACE_GROUPS)
def batch_command(in_dir: Path | str, out_dir: Path | str, output_kind: str | None, fmt: str, overwrite: bool,
                  manifest: Path | None, engine: str, address: str | None, workers: int | None,
                  cpus_per_worker: float | None, gpus_per_worker: float | None, **flags: Any) -> None:
    """Process every photo under IN_DIR (recursively) into OUT."""
    kind = output_kind or ("composite" if flags["sky"] else "mask")
    if kind != "mask" and flags["sky"] is None:
        raise click.UsageError(f"--output {kind} needs --sky PRESET|NAME|FILE")
    flags = disclosure_flags(flags)
    check_manifest_path(manifest)
    if kind in ("composite", "both"):
        try:
            output_format(Path(f"composite.{fmt}"))  # a codec that is not installed: say so before any work
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if engine == "ray":
        from clnsod_core.frontends.ray_engine import RaySettings, run_on_ray

        settings = RaySettings(address, workers, cpus_per_worker or 1.0, gpus_per_worker or 0.0)
        run_on_ray(str(in_dir), str(out_dir), kind, fmt, overwrite, flags, settings, manifest)
        return
    ray_only = {"--address": address, "--cpus-per-worker": cpus_per_worker, "--gpus-per-worker": gpus_per_worker}
    given = [name for name, value in ray_only.items() if value is not None]
    if given:
        raise click.UsageError(f"{', '.join(given)} only apply to --engine ray")
    if not isinstance(in_dir, Path) or not isinstance(out_dir, Path):
        raise click.UsageError("URIs (scheme://...) are read and written by --engine ray only")
    run_locally(in_dir, out_dir, kind, fmt, overwrite, flags, manifest, workers)


def run_locally(in_dir: Path, out_dir: Path, kind: str, fmt: str, overwrite: bool, flags: dict[str, Any],
                manifest: Path | None = None, workers: int | None = None) -> None:
    """The local engine: one model in this process, the core's job engine over every photo, several
    photos at once: much of a replacement runs on one core (numpy, Pillow), so two photos with one
    PyTorch thread each finish sooner than one after the other with two threads (measured in
    ``benchmarks/batch_throughput.py``)."""
    ensure_writable_dir(out_dir, recursive_cleanup=True)
    sky = load_sky_or_fail(flags["sky"], flags["max_megapixels"]) if kind != "mask" else None
    summary = JobSummary()
    jobs = plan_batch(find_photos(in_dir, exclude=out_dir), in_dir, out_dir, kind, fmt, overwrite, summary)
    if jobs:
        import torch

        replacer = load_replacer(flags)
        workers = workers or min(cpu_cores(), LOCAL_WORKERS)
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // workers))  # a share of the cores (or of OMP_NUM_THREADS) each
        try:
            with click.progressbar(length=len(jobs), label=f"{len(jobs)} photos",
                                   file=click.get_text_stream("stderr")) as bar:
                def tick(_job: PhotoJob) -> None:
                    bar.update(1)

                batch_runner(replacer, kind, sky, flags, summary, on_done=tick, workers=workers).run(jobs, summary)
        finally:
            torch.set_num_threads(threads)
    if manifest is not None:
        write_manifest(manifest, summary, kind, flags)
    finish(summary)
