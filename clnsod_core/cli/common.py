"""Options and helpers shared by the commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..imageio import DEFAULT_MAX_PIXELS
from ..inference import DEVICE_CHOICES, SkyMasker
from ..masking import JobSummary
from ..weights_io import WeightsError

F = TypeVar("F", bound=Callable[..., Any])


def model_options(func: F) -> F:
    """--weights, --device and --max-megapixels for every command that loads the network."""
    func = click.option(
        "--max-megapixels", type=click.FloatRange(min=0.01), default=DEFAULT_MAX_PIXELS / 1e6, show_default=True,
        help="Refuse photos larger than this (protects against decompression bombs).",
    )(func)
    func = click.option(
        "--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True,
        help="auto = cuda, then mps, then cpu.",
    )(func)
    func = click.option(
        "--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Weights file (default: the weights embedded in the package).",
    )(func)
    return func


def load_masker(weights: Path | None, device: str, max_megapixels: float) -> SkyMasker:
    try:
        return SkyMasker(weights, device=device, max_pixels=int(max_megapixels * 1e6))
    except (WeightsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def report_error(line: str) -> None:
    click.echo(f"error: {line}", err=True)


def ensure_writable_dir(path: Path) -> None:
    """Create the output folder and prove it is writable before any work starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".clnsod-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise click.ClickException(f"output folder {path} is not writable ({exc.strerror or exc})") from None


def finish(summary: JobSummary) -> None:
    """Print the summary line and exit 1 if anything failed."""
    click.echo(f"{summary.written} written, {summary.skipped} skipped (already exist), {len(summary.failed)} failed", err=True)
    if not summary.ok:
        raise SystemExit(1)
