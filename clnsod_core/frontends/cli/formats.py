"""``clnsod formats``: which photo formats this installation reads and writes."""

from __future__ import annotations

import click
from PIL import Image

from clnsod_core.imaging.formats import OPTIONAL_FORMATS, can_read, can_write
from clnsod_core.imaging.io import IMAGE_SUFFIXES, OUTPUT_FORMATS


@click.command("formats")
def formats_command() -> None:
    """List the photo formats read and written here, and how to add the optional ones."""
    click.echo(f"reads (by content; folders are searched for {' '.join(sorted(IMAGE_SUFFIXES))}):")
    click.echo("  every format Pillow " + Image.__version__ + " decodes: JPEG, PNG, WebP, TIFF, BMP, GIF, ...")
    click.echo("writes (by the output extension): " + " ".join(sorted(OUTPUT_FORMATS)))
    click.echo("optional formats:")
    for fmt in OPTIONAL_FORMATS:
        state = f"read {'yes' if can_read(fmt) else 'no'}, write {'yes' if can_write(fmt) else 'no'}"
        hint = "" if can_read(fmt) and can_write(fmt) else f"  (needs {fmt.install})"
        click.echo(f"  {fmt.name:<5} {' '.join(fmt.suffixes):<20} {state}{hint}")
