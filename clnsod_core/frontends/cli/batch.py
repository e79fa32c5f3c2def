"""``clnsod batch``: every photo under a folder, masks or replacements, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clnsod_core.frontends.cli.common import ensure_writable_dir, finish, report_error
from clnsod_core.frontends.cli.options import REPLACE_GROUPS, cli_options
from clnsod_core.frontends.cli.runners import (
    OUTPUT_KINDS,
    load_replacer,
    load_sky_or_fail,
    mask_runner,
    output_paths,
    replace_runner,
)
from clnsod_core.imaging.io import OUTPUT_FORMATS
from clnsod_core.jobs import JobRunner, JobSummary, PhotoJob, find_photos, plan_jobs
from clnsod_core.masking.matte import MatteOptions
from clnsod_core.options import part_values


@click.command("batch")
@click.argument("in_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; the sub-folder structure of IN_DIR is kept.")
@click.option("--output", "output_kind", type=click.Choice(OUTPUT_KINDS), default=None,
              help="composite (default with --sky), mask (default without), both, or layers: the editor stack "
              "to put above the untouched photo, <stem>_sky.png (new sky, alpha = matte) then "
              "<stem>_lighting.png (foreground lighting, normal blend), plus <stem>_mask.png.")
@click.option("--format", "fmt", type=click.Choice([suffix[1:] for suffix in OUTPUT_FORMATS]), default="jpg",
              show_default=True,
              help="File format of composites.")
@click.option("--overwrite", is_flag=True, help="Redo photos whose outputs already exist.")
@cli_options(*REPLACE_GROUPS)
def batch_command(in_dir: Path, out_dir: Path, output_kind: str | None, fmt: str, overwrite: bool, **flags: Any) -> None:
    """Process every photo under IN_DIR (recursively) into OUT."""
    kind = output_kind or ("composite" if flags["sky"] else "mask")
    if kind != "mask" and flags["sky"] is None:
        raise click.UsageError(f"--output {kind} needs --sky FILE|PRESET")
    ensure_writable_dir(out_dir, recursive_cleanup=True)
    sky = load_sky_or_fail(flags["sky"], flags["max_megapixels"]) if kind != "mask" else None
    photos = find_photos(in_dir, exclude=out_dir)
    summary = JobSummary()
    pairs = ((p, output_paths(out_dir / p.relative_to(in_dir).parent / p.stem, kind, fmt)) for p in photos)
    jobs = plan_jobs(pairs, overwrite, summary, report_error)
    if jobs:
        replacer = load_replacer(flags)
        with click.progressbar(length=len(jobs), label=f"{len(jobs)} photos", file=click.get_text_stream("stderr")) as bar:
            def tick(_job: PhotoJob) -> None:
                bar.update(1)

            runner: JobRunner[Any]
            if kind == "mask":
                options = MatteOptions(**part_values("matte", flags))
                runner = mask_runner(replacer, options, summary, on_done=tick)
            else:
                runner = replace_runner(replacer, sky, flags, kind, summary, on_done=tick)  # type: ignore[arg-type]
            runner.run(jobs, summary)
    finish(summary)
