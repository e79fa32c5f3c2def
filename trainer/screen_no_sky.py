"""Screen a folder of "no sky" photos for the few that do show sky (through a window or door).

Photos that are used as all-foreground training targets must really have no sky. The network
(any weights) ranks every photo by how much *blue-ish* area it calls sky; contact sheets of the
top candidates, with the network's sky tinted red, are written for a person to look at, and a
per-photo CSV lets the reviewer's decisions be recorded in an exclusion list (one file name per
line, ``#`` comments), which ``clnsod train --no-sky DIR --exclude LIST`` then leaves out.

    python -m trainer.screen_no_sky ../shared/data/interiors/images --out /tmp/screen --top 240
"""

from __future__ import annotations

import csv
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from clnsod_core.imaging.io import IMAGE_SUFFIXES
from clnsod_core.masking.inference import SkyMasker


def sky_evidence(image: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """(area the network calls sky, part of it that is clearly blue): blue sky through a window
    is saturated, while the white ceilings the network mistakes for sky are near-neutral and
    blue walls are rarely called sky."""
    rgb = image.astype(np.int16)
    blue = (rgb[..., 2] > rgb[..., 0] + 25) & (rgb[..., 2] > rgb[..., 1] + 5) & (rgb[..., 2] > 90)
    sky = prob > 0.3
    return float(sky.mean()), float((sky & blue).mean())


def contact_sheet(rows: list[tuple[Path, np.ndarray, np.ndarray]], thumb: int = 400, cols: int = 4) -> Image.Image:
    """Thumbnails (left: the photo, right: the network's sky tinted red) with the file name."""
    cell_h = thumb // 2 + 14
    sheet = Image.new("RGB", (cols * thumb, ((len(rows) + cols - 1) // cols) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (path, image, prob) in enumerate(rows):
        tinted = image.astype(np.float32)
        alpha = (prob > 0.5)[..., None] * 0.45
        tinted = tinted * (1 - alpha) + np.array([255, 0, 0], np.float32) * alpha
        pair = np.concatenate([image, tinted.astype(np.uint8)], axis=1)
        tile = ImageOps.contain(Image.fromarray(pair), (thumb - 4, thumb - 4))
        x, y = (i % cols) * thumb, (i // cols) * cell_h
        sheet.paste(tile, (x + 2, y + 2))
        draw.text((x + 2, y + cell_h - 14), path.name, fill="black")
    return sheet


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--weights", default=None, help="Weights to rank with (default: the embedded ones).")
@click.option("--top", default=256, show_default=True, help="How many candidates go on contact sheets.")
def main(folder: Path, out: Path, weights: str | None, top: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    masker = SkyMasker(weights, device="cpu")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    scored = []
    for path in paths:
        image, prob = masker.predict_file(path)
        area, blue_area = sky_evidence(image, prob)
        scored.append((blue_area, area, path))
    scored.sort(key=lambda row: (-row[0], -row[1]))
    with open(out / "scores.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "sky_area", "blue_sky_area"])
        for blue_area, area, path in scored:
            writer.writerow([path.name, f"{area:.5f}", f"{blue_area:.5f}"])
    per_sheet = 32
    for start in range(0, min(top, len(scored)), per_sheet):
        chunk = [masker.predict_file(p) for _, _, p in scored[start : start + per_sheet]]
        rows = [(p, img, prob) for (_, _, p), (img, prob) in zip(scored[start : start + per_sheet], chunk, strict=True)]
        contact_sheet(rows).save(out / f"sheet_{start // per_sheet:02d}.png")
    click.echo(f"{len(scored)} photos ranked; sheets and scores.csv in {out}")


if __name__ == "__main__":
    main()
