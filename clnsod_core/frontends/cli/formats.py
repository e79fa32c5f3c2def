"""``clnsod formats``: which photo formats this installation reads and writes, at which depth."""

from __future__ import annotations

import click
from PIL import Image

from clnsod_core.imaging import colour, deep, raw
from clnsod_core.imaging.formats import OPTIONAL_FORMATS, can_read, can_write
from clnsod_core.imaging.io import IMAGE_SUFFIXES, OUTPUT_FORMATS


def _state(ok: bool, install: str) -> str:
    return "yes" if ok else f"no  (needs {install})"


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
    click.echo(f"  16-bit PNG/TIFF in and out, float TIFF in: {_state(deep.AVAILABLE, deep.INSTALL)}")
    click.echo(f"  camera RAW in ({' '.join(sorted(raw.RAW_SUFFIXES))}): {_state(raw.AVAILABLE, raw.INSTALL)}")
    click.echo("colour: photos keep their ICC profile; skies are converted into it with LittleCMS "
               f"(16-bit precision: {_state(colour.FLOAT_CMS, deep.INSTALL)})")
