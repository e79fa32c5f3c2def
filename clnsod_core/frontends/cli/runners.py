"""The work shared by ``mask``, ``replace`` and ``batch``: load the model and the sky once, then run
photos through the core's job engine (``clnsod_core.jobs``), writing each photo's outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from clnsod_core.arrays import as_u8
from clnsod_core.compositing.disclosure import (
    check_label,
    disclosure_xmp,
    replacement_time,
    stamp_label,
)
from clnsod_core.frontends.cli.common import load_masker, report_error
from clnsod_core.imaging.colour import ColourSpace
from clnsod_core.imaging.io import PhotoError, save_image, save_mask_png, save_unchanged
from clnsod_core.jobs import (
    NO_SKY,
    Decoded,
    ErrorReporter,
    JobRunner,
    JobSummary,
    PhotoJob,
    plan_jobs,
)
from clnsod_core.options import part_values

if TYPE_CHECKING:  # the network and compositing (torch) are imported where a command starts its work
    from clnsod_core.masking.matte import MatteOptions
    from clnsod_core.replace import ReplaceResult, SkyReplacer, SkySource

NETWORK_CHUNK = 4  # photos per network pass when only masks are needed
OUTPUT_KINDS = ("composite", "mask", "both", "layers")


def output_paths(base: Path, kind: str, ext: str) -> tuple[Path, ...]:
    """Every file one photo produces for an output kind; ``base`` is the output path without extension."""
    parent, stem = base.parent, base.name
    return {
        "mask": (parent / f"{stem}.png",),
        "composite": (parent / f"{stem}.{ext}",),
        "both": (parent / f"{stem}.{ext}", parent / f"{stem}_mask.png"),
        "layers": (parent / f"{stem}_mask.png", parent / f"{stem}_sky.png", parent / f"{stem}_lighting.png"),
    }[kind]


def overlay_layer_path(lighting: Path, name: str) -> Path:
    """``<stem>_reflection.png`` / ``<stem>_haze.png`` beside ``<stem>_lighting.png``."""
    return lighting.with_name(lighting.name.removesuffix("_lighting.png") + f"_{name}.png")


def load_replacer(flags: dict[str, Any]) -> SkyReplacer:
    from clnsod_core.replace import SkyReplacer

    return SkyReplacer(load_masker(flags["weights"], flags["device"], flags["max_megapixels"]))


def disclosure_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """``flags`` with the run's replacement time (one for a whole batch, on every engine); ``--label``
    checked first: a usage error before any work when the text cannot be stamped."""
    if flags.get("label") is not None:
        try:
            check_label(flags["label"])
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    return {**flags, REPLACED_AT: replacement_time()}


REPLACED_AT = "replaced_at"  # not an option: set once per run by ``disclosure_flags``


def load_sky_or_fail(spec: str, max_megapixels: float) -> SkySource:
    from clnsod_core.replace import load_sky

    try:
        return load_sky(spec, int(max_megapixels * 1e6))
    except PhotoError as exc:
        raise click.ClickException(str(exc)) from None


def sky_label(spec: str, sky: SkySource) -> str:
    """How outputs name their new sky (disclosure metadata): the preset or library name, or the file's name."""
    return spec if isinstance(sky, str) else Path(str(spec)).name


Notice = Callable[[str], None]  # receives informational lines such as "<photo>: no sky found; ..."


def echo_notice(line: str) -> None:
    click.echo(line, err=True)


def _report_no_sky(job: PhotoJob, summary: JobSummary, what: str, notice: Notice) -> None:
    notice(f"{job.source}: no sky found; {what}")
    summary.no_sky += 1
    summary.record(job.source, job.targets, NO_SKY)


def plan_batch(photos: Iterable[Path], in_dir: Path, out_dir: Path, kind: str, ext: str, overwrite: bool,
               summary: JobSummary, report: ErrorReporter = report_error) -> list[PhotoJob]:
    """``clnsod batch``'s jobs (either engine): each photo's outputs under ``out_dir`` keep its
    sub-folder of ``in_dir``; photos already done are skipped, clashes refused (``plan_jobs``)."""
    pairs = ((p, output_paths(out_dir / p.relative_to(in_dir).parent / p.stem, kind, ext)) for p in photos)
    return plan_jobs(pairs, overwrite, summary, report)


def batch_runner(replacer: SkyReplacer, kind: str, sky: SkySource | None, flags: dict[str, Any],
                 summary: JobSummary, **kw: Any) -> JobRunner[Any]:
    """The runner of ``clnsod batch`` for an output kind (either engine): masks, or replacements."""
    if kind == "mask":
        from clnsod_core.masking.matte import MatteOptions

        return mask_runner(replacer, MatteOptions(**part_values("matte", flags)), summary, **kw)
    if sky is None:
        raise ValueError(f"output {kind!r} needs a sky")
    return replace_runner(replacer, sky, flags, kind, summary, **kw)


def mask_runner(replacer: SkyReplacer, options: MatteOptions, summary: JobSummary,
                report: ErrorReporter = report_error, notice: Notice = echo_notice,
                **kw: Any) -> JobRunner[tuple[np.ndarray, bool]]:
    """Masks, several photos per network pass; each written as one 8-bit PNG (all zero without sky).
    ``report`` receives failure lines and ``notice`` no-sky lines (both on stderr unless a caller,
    such as a distributed worker, collects them)."""
    from clnsod_core.masking.matte import sky_matte

    def compute(items: list[Decoded]) -> list[tuple[np.ndarray, bool]]:
        guides = [as_u8(item.image) for item in items]  # one 8-bit copy of a 16-bit photo for network and matte
        probs = replacer.masker.predict_working_size(guides, [ColourSpace(item.meta.icc_profile) for item in items])
        return [sky_matte(guide, prob, options) for guide, prob in zip(guides, probs, strict=True)]

    def write(item: Decoded, result: tuple[np.ndarray, bool]) -> None:
        matte, sky_found = result
        save_mask_png(matte, item.job.targets[0])
        if not sky_found:
            _report_no_sky(item.job, summary, "the mask is empty", notice)

    return JobRunner(compute, write, replacer.masker.max_pixels, report, chunk=NETWORK_CHUNK, **kw)


def replace_runner(replacer: SkyReplacer, sky: SkySource, flags: dict[str, Any], kind: str,
                   summary: JobSummary, report: ErrorReporter = report_error, notice: Notice = echo_notice,
                   **kw: Any) -> JobRunner[ReplaceResult]:
    """Replacements written as ``kind`` (see ``output_paths``); a photo without sky is written unchanged."""
    from clnsod_core.replace import ReplaceOptions

    options = ReplaceOptions.from_flat(flags)
    quality = flags["quality"]
    label = check_label(flags["label"]) if flags.get("label") is not None else None
    sky_name = sky_label(flags["sky"], sky)
    when = flags.get(REPLACED_AT) or replacement_time()

    def compute(items: list[Decoded]) -> list[ReplaceResult]:
        return [replacer.replace(item.image, sky, options, space=ColourSpace(item.meta.icc_profile)) for item in items]

    def write(item: Decoded, result: ReplaceResult) -> None:
        targets = item.job.targets
        xmp = disclosure_xmp(sky_name, when, label) if result.sky_found else None  # every replaced output says so
        if kind in ("composite", "both") and not result.sky_found:
            save_unchanged(item.image, item.job.source, item.meta, targets[0], quality)
        elif kind in ("composite", "both"):
            composite = stamp_label(result.composite, label) if label else result.composite
            save_image(composite, targets[0], item.meta, quality, xmp=xmp)
        if kind == "both":
            save_mask_png(result.matte, targets[1])
        if kind == "layers":
            layers = result.editor_layers()
            save_image(layers.matte, targets[0])
            save_image(layers.sky_rgba(), targets[1], item.meta, xmp=xmp)
            save_image(layers.lighting, targets[2], item.meta, xmp=xmp)
            for name in layers.OVERLAY_NAMES:  # only the photos with water or haze get these, above the lighting
                layer, path = getattr(layers, name), overlay_layer_path(targets[2], name)
                if layer is not None:
                    save_image(layer, path, item.meta, xmp=xmp)
                else:
                    path.unlink(missing_ok=True)  # left by an earlier run with other settings
        if not result.sky_found:
            _report_no_sky(item.job, summary, "written unchanged", notice)

    return JobRunner(compute, write, replacer.masker.max_pixels, report, **kw)
