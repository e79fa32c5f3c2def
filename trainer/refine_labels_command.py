"""``clnsod refine-labels``: soft, fine training targets from coarse polygon sky labels.

Loaded by the core's ``clnsod`` group through the ``clnsod.commands`` entry point; numpy, Pillow
and torch are imported only when the command runs, so ``clnsod --help`` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from clnsod_core.files import write_atomic


def _link(source: Path, target: Path) -> None:
    """``target`` -> ``source`` (absolute), replacing an earlier link; the data itself is not copied."""
    if target.is_symlink():
        target.unlink()
    target.symlink_to(source.resolve(), target_is_directory=source.is_dir())


@click.command("refine-labels")
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Redo masks that already exist in OUT.")
def refine_labels_command(data: Path, out: Path, overwrite: bool) -> None:
    """Turn the coarse sky masks of DATA into soft, fine targets in OUT.

    DATA is a training folder (the skyseg layout with index.jsonl, or images/ + masks/ (+ void/)).
    OUT gets the same layout: refined masks (8-bit, sky = 255, partial coverage kept) under masks/,
    and links to DATA's images/ and void/ (nothing is copied, DATA is not modified). Train on it
    with ``clnsod train --data OUT``. Sky that clearly shows through trees, trusses and fences next
    to the labelled sky is opened, thin dark structures drawn as sky are cut out, edges get partial
    coverage; far from the sky nothing changes.
    """
    import numpy as np
    from PIL import Image

    from clnsod_core.masking.labels import SOFT_MARKER, refine_label
    from trainer.data import DatasetError, index_data_dir

    if out.resolve() == data.resolve():
        raise click.UsageError("OUT must be another folder than DATA (inputs are never modified)")
    try:
        refs = index_data_dir(data, "train") + index_data_dir(data, "val")
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    skyseg = (data / "index.jsonl").is_file()
    out.mkdir(parents=True, exist_ok=True)
    if skyseg:
        write_atomic(out / "index.jsonl", lambda handle: handle.write((data / "index.jsonl").read_bytes()))
    failed = written = skipped = 0
    linked: set[Path] = set()
    with click.progressbar(refs, label=f"refining {len(refs)} labels", file=click.get_text_stream("stderr")) as bar:
        for ref in bar:
            base = out / ref.dataset if skyseg else out
            for sub in ("images", "void"):
                source = ref.image.parent.parent / sub
                if source.is_dir() and base / sub not in linked:
                    base.mkdir(parents=True, exist_ok=True)
                    _link(source, base / sub)
                    linked.add(base / sub)
            target = base / "masks" / f"{ref.sample_id}.png"
            if target.exists() and not overwrite:
                skipped += 1
                continue
            try:
                with Image.open(ref.image) as im:
                    image = np.asarray(im.convert("RGB"))
                with Image.open(ref.mask) as mk:
                    label = np.asarray(mk.convert("L"))
                void = None
                if ref.void is not None:
                    with Image.open(ref.void) as vd:
                        void = np.asarray(vd.convert("L")) > 127
                soft = refine_label(image, label, void)
            except (OSError, ValueError) as exc:
                click.echo(f"error: {ref.mask}: {exc}", err=True)
                failed += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, lambda handle, soft=soft: Image.fromarray(soft).save(handle, format="PNG"))
            written += 1
    marker = {"tool": "clnsod refine-labels", "source": os.fspath(data.resolve())}
    write_atomic(out / SOFT_MARKER, lambda handle: handle.write(json.dumps(marker, indent=1).encode()))
    click.echo(f"{written} written, {skipped} skipped (already exist), {failed} failed", err=True)
    if failed:
        raise SystemExit(1)
