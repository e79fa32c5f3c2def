"""``clnsod mask``, ``clnsod replace`` and ``clnsod batch``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..compose import Harmonisation
from ..imageio import PhotoError, output_format, save_image, save_mask_png, save_unchanged
from ..jobs import Decoded, JobRunner, JobSummary, PhotoJob, find_photos, plan_jobs
from ..matte import MatteOptions, sky_matte
from ..replace import ReplaceOptions, ReplaceResult, SkyReplacer, load_sky
from ..skies import PRESETS
from .common import ensure_writable_dir, finish, load_masker, model_options, report_error

NETWORK_CHUNK = 4  # photos per network pass when only masks are needed


def matte_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--edge-fade", type=click.FloatRange(0, 500), default=0.0, show_default=True,
                        help="Feather the sky edge by this many pixels.")(func)
    func = click.option("--edge-shift", type=click.FloatRange(-500, 500), default=0.0, show_default=True,
                        help="Grow (+) or shrink (-) the sky by this many pixels.")(func)
    return func


def sky_options(func: Callable[..., Any]) -> Callable[..., Any]:
    defaults = Harmonisation()
    options = [
        click.option("--sky", "sky_spec", default=None, metavar="FILE|PRESET",
                     help=f"New sky: an image file or a preset ({', '.join(PRESETS)})."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for preset skies."),
        click.option("--sky-scale", type=click.FloatRange(1, 10), default=1.0, show_default=True,
                     help="Zoom into the sky (1 = just covers the sky region)."),
        click.option("--sky-shift-x", type=click.FloatRange(-1, 1), default=0.0, show_default=True,
                     help="Move the sky sideways, as a fraction of the photo width."),
        click.option("--sky-shift-y", type=click.FloatRange(-1, 1), default=0.0, show_default=True,
                     help="Move the sky down (+) or up (-), as a fraction of the photo height."),
        click.option("--sky-flip", is_flag=True, help="Mirror the sky horizontally."),
        click.option("--sky-brightness", type=click.FloatRange(-2, 2), default=0.0, show_default=True,
                     help="Sky exposure in stops."),
        click.option("--sky-temperature", type=click.FloatRange(-1, 1), default=0.0, show_default=True,
                     help="Cooler (-) or warmer (+) sky."),
        click.option("--recolour", type=click.FloatRange(0, 1), default=defaults.recolour, show_default=True,
                     help="Shift the foreground's colour toward the new sky (0 = off)."),
        click.option("--relight", type=click.FloatRange(0, 1), default=defaults.relight, show_default=True,
                     help="Match the foreground's brightness to the new sky (0 = off)."),
        click.option("--halo", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                     help="Soft sky-coloured edge light on the foreground at the sky line."),
        click.option("--quality", type=click.IntRange(1, 100), default=92, show_default=True,
                     help="JPEG/WebP quality."),
    ]
    for option in reversed(options):
        func = option(func)
    return matte_options(func)


def _report_no_sky(source: Path, summary: JobSummary, what: str) -> None:
    click.echo(f"{source}: no sky found; {what}", err=True)
    summary.no_sky += 1


def _mask_runner(replacer: SkyReplacer, options: MatteOptions, summary: JobSummary,
                 **kw: Any) -> JobRunner[tuple[np.ndarray, bool]]:
    def compute(items: list[Decoded]) -> list[tuple[np.ndarray, bool]]:
        probs = replacer.masker.predict_working_size([item.image for item in items])
        return [sky_matte(item.image, prob, options) for item, prob in zip(items, probs, strict=True)]

    def write(item: Decoded, result: tuple[np.ndarray, bool]) -> None:
        matte, sky_found = result
        save_mask_png(matte, item.job.targets[0])
        if not sky_found:
            _report_no_sky(item.job.source, summary, "the mask is empty")

    return JobRunner(compute, write, replacer.masker.max_pixels, report_error, chunk=NETWORK_CHUNK, **kw)


def _layer_paths(base: Path, kind: str, ext: str) -> tuple[Path, ...]:
    parent, stem = base.parent, base.name
    return {
        "mask": (parent / f"{stem}.png",),
        "composite": (parent / f"{stem}.{ext}",),
        "both": (parent / f"{stem}.{ext}", parent / f"{stem}_mask.png"),
        "layers": (parent / f"{stem}_mask.png", parent / f"{stem}_sky.png", parent / f"{stem}_lighting.png"),
    }[kind]


def _replace_runner(replacer: SkyReplacer, sky: np.ndarray | str, options: ReplaceOptions, kind: str, quality: int,
                    summary: JobSummary, **kw: Any) -> JobRunner[ReplaceResult]:
    def compute(items: list[Decoded]) -> list[ReplaceResult]:
        return [replacer.replace(item.image, sky, options) for item in items]

    def write(item: Decoded, result: ReplaceResult) -> None:
        targets = item.job.targets
        if kind in ("composite", "both") and not result.sky_found:
            save_unchanged(item.image, item.job.source, item.meta, targets[0], quality)
        elif kind in ("composite", "both"):
            save_image(result.composite, targets[0], item.meta, quality)
        if kind == "both":
            save_mask_png(result.matte, targets[1])
        if kind == "layers":
            save_mask_png(result.matte, targets[0])
            save_image(result.sky_layer(), targets[1], item.meta)
            save_image(result.foreground, targets[2], item.meta)
        if not result.sky_found:
            _report_no_sky(item.job.source, summary, "written unchanged")

    return JobRunner(compute, write, replacer.masker.max_pixels, report_error, **kw)


def _load_replacer(kw: dict[str, Any]) -> SkyReplacer:
    return SkyReplacer(load_masker(kw["weights"], kw["device"], kw["max_megapixels"]))


def _load_sky_or_fail(spec: str, max_megapixels: float) -> np.ndarray | str:
    try:
        return load_sky(spec, int(max_megapixels * 1e6))
    except PhotoError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("mask")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the masks (<stem>.png).")
@matte_options
@model_options
def mask_command(photos: tuple[Path, ...], out_dir: Path, **kw: Any) -> None:
    """Write a soft, edge-aware sky mask (sky = 255) for each PHOTO as OUT/<stem>.png."""
    ensure_writable_dir(out_dir)
    summary = JobSummary()
    jobs = plan_jobs(((p, (out_dir / f"{p.stem}.png",)) for p in photos), True, summary, report_error)
    replacer = _load_replacer(kw)
    _mask_runner(replacer, MatteOptions(edge_shift=kw["edge_shift"], edge_fade=kw["edge_fade"]), summary).run(jobs, summary)
    finish(summary)


@click.command("replace")
@click.argument("photo", type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file; the format follows the extension (.jpg .png .webp .tif).")
@sky_options
@model_options
def replace_command(photo: Path, out_path: Path, **kw: Any) -> None:
    """Replace the sky of PHOTO with --sky and write the composite to OUT."""
    if kw["sky_spec"] is None:
        raise click.UsageError("--sky FILE|PRESET is required")
    try:
        output_format(out_path)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    ensure_writable_dir(out_path.parent)
    sky = _load_sky_or_fail(kw["sky_spec"], kw["max_megapixels"])
    summary = JobSummary()
    jobs = plan_jobs([(photo, (out_path,))], True, summary, report_error)
    runner = _replace_runner(_load_replacer(kw), sky, ReplaceOptions.from_flat(kw), "composite", kw["quality"], summary)
    runner.run(jobs, summary)
    finish(summary)


@click.command("batch")
@click.argument("in_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; the sub-folder structure of IN_DIR is kept.")
@click.option("--output", "output_kind", type=click.Choice(["composite", "mask", "both", "layers"]), default=None,
              help="composite (default with --sky), mask (default without), both, or layers "
              "(<stem>_mask.png, <stem>_sky.png, <stem>_lighting.png to stack in an editor).")
@click.option("--format", "fmt", type=click.Choice(["jpg", "png", "webp", "tif"]), default="jpg", show_default=True,
              help="File format of composites.")
@click.option("--overwrite", is_flag=True, help="Redo photos whose outputs already exist.")
@sky_options
@model_options
def batch_command(in_dir: Path, out_dir: Path, output_kind: str | None, fmt: str, overwrite: bool, **kw: Any) -> None:
    """Process every photo under IN_DIR (recursively) into OUT."""
    kind = output_kind or ("composite" if kw["sky_spec"] else "mask")
    if kind != "mask" and kw["sky_spec"] is None:
        raise click.UsageError(f"--output {kind} needs --sky FILE|PRESET")
    ensure_writable_dir(out_dir, recursive_cleanup=True)
    sky = _load_sky_or_fail(kw["sky_spec"], kw["max_megapixels"]) if kind != "mask" else None
    photos = find_photos(in_dir, exclude=out_dir)
    summary = JobSummary()
    pairs = ((p, _layer_paths(out_dir / p.relative_to(in_dir).parent / p.stem, kind, fmt)) for p in photos)
    jobs = plan_jobs(pairs, overwrite, summary, report_error)
    if jobs:
        replacer = _load_replacer(kw)
        with click.progressbar(length=len(jobs), label=f"{len(jobs)} photos", file=click.get_text_stream("stderr")) as bar:
            def tick(_job: PhotoJob) -> None:
                bar.update(1)

            if kind == "mask":
                runner: JobRunner[Any] = _mask_runner(replacer, ReplaceOptions.from_flat(kw).matte, summary, on_done=tick)
            else:
                runner = _replace_runner(replacer, sky, ReplaceOptions.from_flat(kw), kind, kw["quality"], summary,
                                         on_done=tick)
            runner.run(jobs, summary)
    finish(summary)
