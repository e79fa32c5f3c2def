"""``clnsod mask``: a soft sky mask for each photo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clnsod_core.frontends.cli.common import ensure_writable_dir, finish, report_error
from clnsod_core.frontends.cli.options import MASK_GROUPS, cli_options
from clnsod_core.frontends.cli.runners import load_replacer, mask_runner
from clnsod_core.jobs import JobSummary, plan_jobs
from clnsod_core.options import part_values


@click.command("mask")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the masks (<stem>.png).")
@cli_options(*MASK_GROUPS)
def mask_command(photos: tuple[Path, ...], out_dir: Path, **flags: Any) -> None:
    """Write a soft, edge-aware sky mask (sky = 255) for each PHOTO as OUT/<stem>.png."""
    from clnsod_core.masking.matte import MatteOptions  # torch: imported once the command runs

    ensure_writable_dir(out_dir)
    summary = JobSummary()
    jobs = plan_jobs(((p, (out_dir / f"{p.stem}.png",)) for p in photos), True, summary, report_error)
    options = MatteOptions(**part_values("matte", flags))
    mask_runner(load_replacer(flags), options, summary).run(jobs, summary)
    finish(summary)
