"""``clnsod mask`` and ``clnsod batch``: 8-bit sky masks at each photo's full resolution."""

from __future__ import annotations

from pathlib import Path

import click

from ..masking import JobSummary, find_photos, plan_jobs, run_mask_jobs
from .common import ensure_writable_dir, finish, load_masker, model_options, report_error


@click.command("mask")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the masks (<stem>.png).")
@model_options
def mask_command(photos: tuple[Path, ...], out_dir: Path, weights: str | None, device: str, max_megapixels: float) -> None:
    """Write a soft sky mask (sky = 255) for each PHOTO as OUT/<stem>.png."""
    ensure_writable_dir(out_dir)
    summary = JobSummary()
    jobs = plan_jobs(((p, out_dir / f"{p.stem}.png") for p in photos), overwrite=True, summary=summary, report=report_error)
    masker = load_masker(weights, device, max_megapixels)
    run_mask_jobs(jobs, masker, summary, report_error)
    finish(summary)


@click.command("batch")
@click.argument("in_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; the sub-folder structure of IN_DIR is kept.")
@click.option("--output", "output_kind", type=click.Choice(["mask"]), default="mask", show_default=True,
              help="What to write for each photo.")
@click.option("--overwrite", is_flag=True, help="Redo photos whose output already exists.")
@model_options
def batch_command(
    in_dir: Path, out_dir: Path, output_kind: str, overwrite: bool, weights: str | None, device: str, max_megapixels: float
) -> None:
    """Process every photo under IN_DIR (recursively) into OUT."""
    ensure_writable_dir(out_dir)
    photos = find_photos(in_dir, exclude=out_dir)
    summary = JobSummary()
    pairs = ((p, out_dir / p.relative_to(in_dir).parent / f"{p.stem}.png") for p in photos)
    jobs = plan_jobs(pairs, overwrite=overwrite, summary=summary, report=report_error)
    if jobs:
        masker = load_masker(weights, device, max_megapixels)
        with click.progressbar(length=len(jobs), label=f"Masking {len(jobs)} photos", file=click.get_text_stream("stderr")) as bar:
            run_mask_jobs(jobs, masker, summary, report_error, on_done=lambda _job: bar.update(1))
    finish(summary)
