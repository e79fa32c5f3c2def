"""``clnsod weights``: list, download, verify and locate weight files."""

from __future__ import annotations

import click

from clnsod_core.frontends.cli.common import DownloadProgress
from clnsod_core.weights.download import DownloadError, sha256_of
from clnsod_core.weights.format import WeightsError
from clnsod_core.weights.registry import (
    REGISTRY,
    cache_dir,
    fetch,
    get_entry,
    is_verified,
    local_path,
)


@click.group("weights")
def weights_group() -> None:
    """Named weights: the embedded default and downloadable ones (cached, sha256-verified)."""


@weights_group.command("list")
def list_command() -> None:
    """Name, size, working resolution, whether it is available here, licence and description."""
    click.echo(f"{'name':<30}{'size':>9} {'input':>8}  {'status':<10} licence / description")
    for entry in REGISTRY.values():
        path = local_path(entry)
        status = "embedded" if entry.embedded else ("cached" if path.is_file() else "-")
        side = f"{entry.input_size}px"
        click.echo(f"{entry.name:<30}{entry.size / 1e6:>7.1f}MB {side:>8}  {status:<10} {entry.licence}")
        click.echo(f"{'':<60}{entry.description}")


@weights_group.command("download")
@click.argument("name")
@click.option("--url", default=None, help="Alternative URL (e.g. a mirror); the registry's sha256 still applies.")
def download_command(name: str, url: str | None) -> None:
    """Download NAME into the cache (no-op if a verified copy is there)."""
    try:
        entry = get_entry(name)
        path = fetch(entry, url=url, progress=DownloadProgress(f"downloading {name}"))
    except (WeightsError, DownloadError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(path))


@weights_group.command("verify")
def verify_command() -> None:
    """Check the sha256 of every weights file present here; exit 1 if any is damaged."""
    damaged = 0
    for entry in REGISTRY.values():
        path = local_path(entry)
        if not path.is_file():
            click.echo(f"{entry.name}: not downloaded")
            continue
        if sha256_of(path) == entry.sha256:
            click.echo(f"{entry.name}: ok ({path})")
        else:
            damaged += 1
            click.echo(f"{entry.name}: DAMAGED, sha256 mismatch ({path}); it will be downloaded again when used", err=True)
    if damaged:
        raise SystemExit(1)


@weights_group.command("path")
@click.argument("name", required=False)
def path_command(name: str | None) -> None:
    """Print the cache folder, or where NAME lives on this machine."""
    if name is None:
        click.echo(str(cache_dir()))
        return
    try:
        entry = get_entry(name)
    except WeightsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(local_path(entry)))
    if not is_verified(entry):
        raise SystemExit(1)
