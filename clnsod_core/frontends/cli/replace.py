"""``clnsod replace``: one photo, a new sky, one composite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clnsod_core.frontends.cli.common import ensure_writable_dir, finish, report_error
from clnsod_core.frontends.cli.options import REPLACE_GROUPS, cli_options
from clnsod_core.frontends.cli.runners import (
    disclosure_flags,
    load_replacer,
    load_sky_or_fail,
    replace_runner,
)
from clnsod_core.imaging.io import PhotoError, load_photo_with_meta, output_format
from clnsod_core.jobs import JobSummary, plan_jobs


@click.command("replace")
@click.argument("photo", type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file; the format follows the extension (.jpg .png .webp .tif).")
@cli_options(*REPLACE_GROUPS)
def replace_command(photo: Path, out_path: Path, **flags: Any) -> None:
    """Replace the sky of PHOTO with --sky and write the composite to OUT."""
    if flags["sky"] is None:
        raise click.UsageError("--sky PRESET|NAME|FILE is required")
    try:
        output_format(out_path)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    flags = disclosure_flags(flags)
    ensure_writable_dir(out_path.parent)
    summary = JobSummary()
    jobs = plan_jobs([(photo, (out_path,))], True, summary, report_error)
    if not jobs:  # refused (the output would overwrite the photo): reported, exit 1
        finish(summary)
        return
    # The photo is decoded before torch, the sky and the network load: an unusable photo is refused at once.
    try:
        decoded = load_photo_with_meta(photo, int(flags["max_megapixels"] * 1e6))
    except PhotoError as exc:
        summary.fail(photo, (out_path,), str(exc), report_error)
        finish(summary)
        return
    sky = load_sky_or_fail(flags["sky"], flags["max_megapixels"])
    runner = replace_runner(load_replacer(flags), sky, flags, "composite", summary, decode=lambda _path, _max: decoded)
    runner.run(jobs, summary)
    finish(summary)
