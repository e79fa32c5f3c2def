"""``clnsod skies``: the built-in procedural sky presets."""

from __future__ import annotations

import re
from pathlib import Path

import click

from clnsod_core.compositing.skies import PRESETS, render_preset
from clnsod_core.imaging.io import output_format, save_image


@click.group("skies")
def skies_group() -> None:
    """Built-in sky presets, generated at any size (deterministic for a seed)."""


@skies_group.command("list")
def list_command() -> None:
    for preset in PRESETS.values():
        click.echo(f"{preset.name:<18}{preset.description}")


def _parse_size(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX](\d+)", value)
    if not match:
        raise click.BadParameter("expected WIDTHxHEIGHT, e.g. 3000x2000")
    w, h = int(match.group(1)), int(match.group(2))
    if not (1 <= w <= 30000 and 1 <= h <= 30000):
        raise click.BadParameter("each side must be between 1 and 30000 px")
    return w, h


@skies_group.command("render")
@click.argument("name", type=click.Choice(list(PRESETS)))
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
    image = render_preset(name, size[0], size[1], seed)
    try:
        save_image(image, out_path, quality=quality)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path} ({exc.strerror or exc})") from None
    click.echo(str(out_path))
