"""``clnsod skies``: the built-in presets and the user's own sky library."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from clnsod_core.compositing.catalogue import sky_catalogue
from clnsod_core.compositing.library import LibraryError, SkyLibrary, name_from_file
from clnsod_core.compositing.preset_names import PRESET_DESCRIPTIONS
from clnsod_core.frontends.cli.common import report_error
from clnsod_core.frontends.cli.options import cli_options
from clnsod_core.frontends.cli.runners import load_replacer
from clnsod_core.imaging.io import PhotoError, output_format, save_image


@click.group("skies")
def skies_group() -> None:
    """Built-in sky presets (generated at any size, deterministic for a seed) and your own skies.

    Your skies live in the user data folder (CLNSOD_DATA_DIR overrides it); use them by name
    like a preset: --sky NAME."""


@skies_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with thumbnail paths), for scripts and plugins.")
def list_command(as_json: bool) -> None:
    """Every sky: built-in presets, then your own (size and source)."""
    entries = sky_catalogue(thumbnails=as_json)
    if as_json:
        click.echo(json.dumps([entry.to_data() for entry in entries], indent=1))
        return
    width = max(len(entry.name) for entry in entries) + 2
    for entry in entries:
        size = "any size" if entry.width is None else f"{entry.width}x{entry.height}"
        kind = "built-in" if entry.kind == "preset" else "yours"
        click.echo(f"{entry.name:<{width}}{kind:<10}{size:<12}{entry.description}")


@skies_group.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--name", help="Name to use it by (default: from the file name); only with one FILE.")
@cli_options("model")
def add_command(files: tuple[Path, ...], name: str | None, **flags: Any) -> None:
    """Import sky photos into your library: the sky is found with the sky mask, the foreground cropped
    away, the horizon recorded and a thumbnail stored. Continues past bad files; exit 1 if any failed."""
    if name is not None and len(files) > 1:
        raise click.UsageError("--name names one sky; give one FILE with it")
    library = SkyLibrary()
    replacer = load_replacer(flags)
    failed = 0
    for path in files:
        try:
            imported = library.add(path, name or name_from_file(path), lambda photo, space: replacer.matte(photo, space=space),
                                   reserved=tuple(PRESET_DESCRIPTIONS), max_pixels=int(flags["max_megapixels"] * 1e6))
        except (LibraryError, PhotoError) as exc:
            report_error(str(exc) if isinstance(exc, PhotoError) else f"{path}: {exc}")
            failed += 1
            continue
        for warning in imported.warnings:
            click.echo(f"warning: {warning}", err=True)
        sky = imported.sky
        click.echo(f"{sky.name}: {sky.width}x{sky.height} sky from {path} (horizon at row {sky.horizon})")
    click.echo(f"{len(files) - failed} added, {failed} failed", err=True)
    if failed:
        raise SystemExit(1)


@skies_group.command("remove")
@click.argument("names", nargs=-1, required=True)
def remove_command(names: tuple[str, ...]) -> None:
    """Delete skies of your library by name."""
    library = SkyLibrary()
    failed = 0
    for name in names:
        try:
            library.remove(name)
        except (LibraryError, OSError) as exc:
            report_error(str(exc))
            failed += 1
        else:
            click.echo(f"removed {name}")
    if failed:
        raise SystemExit(1)


def _parse_size(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX](\d+)", value)
    if not match:
        raise click.BadParameter("expected WIDTHxHEIGHT, e.g. 3000x2000")
    w, h = int(match.group(1)), int(match.group(2))
    if not (1 <= w <= 30000 and 1 <= h <= 30000):
        raise click.BadParameter("each side must be between 1 and 30000 px")
    return w, h


@skies_group.command("render")
@click.argument("name", type=click.Choice(list(PRESET_DESCRIPTIONS)))
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--size", default="3000x2000", show_default=True, callback=_parse_size, help="WIDTHxHEIGHT")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quality", type=click.IntRange(1, 100), default=92, show_default=True)
def render_command(name: str, out_path: Path, size: tuple[int, int], seed: int, quality: int) -> None:
    """Render preset NAME to an image file (format from the extension)."""
    try:
        output_format(out_path)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    from clnsod_core.compositing.skies import render_preset  # torch: imported once the command runs

    image = render_preset(name, size[0], size[1], seed)
    try:
        save_image(image, out_path, quality=quality)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path} ({exc.strerror or exc})") from None
    click.echo(str(out_path))
