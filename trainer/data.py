"""Training data: the skyseg ``index.jsonl`` layout and plain ``images/ + masks/ (+ void/)`` folders.

Samples are decoded once and kept in RAM as uint8 arrays (downscaled so the short side is
at most ``max_short_side``): the photos are small and decoding every step would cost more
than the augmentation.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from clnsod_core.imaging.io import IMAGE_SUFFIXES
from clnsod_core.masking.labels import SOFT_MARKER


class DatasetError(ValueError):
    """A training folder is malformed; the message names the offending files."""


@dataclass(frozen=True)
class SampleRef:
    dataset: str
    sample_id: str
    image: Path
    mask: Path | None  # None: a photo with no sky (all-foreground target)
    void: Path | None
    soft: bool = False  # the mask holds soft targets (made by ``clnsod refine-labels``)


@dataclass
class Sample:
    ref: SampleRef
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8, sky = 255
    void: np.ndarray | None  # (H, W) bool


def _find_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.stem, path)
    return found


def index_skyseg(root: Path, split: str) -> list[SampleRef]:
    """Rows of ``root/index.jsonl`` in ``split`` (train or val)."""
    refs: list[SampleRef] = []
    soft = (root / SOFT_MARKER).is_file()
    with open(root / "index.jsonl", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ds, sid = row["dataset"], row["id"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise DatasetError(f"{root / 'index.jsonl'}:{line_no}: bad row ({exc})") from exc
            if row.get("split") != split:
                continue
            base = root / ds
            void = base / "void" / f"{sid}.png" if row.get("void") else None
            refs.append(SampleRef(ds, sid, base / "images" / f"{sid}.jpg", base / "masks" / f"{sid}.png", void, soft))
    return refs


def index_folder_pair(root: Path) -> list[SampleRef]:
    """``root/images/*`` matched by file stem with ``root/masks/*`` and optional ``root/void/*``."""
    images_dir, masks_dir, void_dir = root / "images", root / "masks", root / "void"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DatasetError(f"{root}: expected sub-folders images/ and masks/ (or an index.jsonl)")
    images, masks = _find_by_stem(images_dir), _find_by_stem(masks_dir)
    voids = _find_by_stem(void_dir) if void_dir.is_dir() else {}
    missing = sorted(set(images) - set(masks))
    if missing:
        shown = ", ".join(str(images[s]) for s in missing[:5])
        raise DatasetError(f"{root}: {len(missing)} image(s) without a mask in masks/: {shown}")
    soft = (root / SOFT_MARKER).is_file()
    return [SampleRef(root.name, stem, images[stem], masks[stem], voids.get(stem), soft) for stem in sorted(images)]


def index_data_dir(root: Path, split: str) -> list[SampleRef]:
    """Either layout, chosen by the presence of ``index.jsonl``."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    if (root / "index.jsonl").is_file():
        return index_skyseg(root, split)
    if split != "train":
        return []
    return index_folder_pair(root)


NO_SKY_VAL_PERCENT = 20  # share of no-sky groups held out for validation


def no_sky_group(path: Path) -> str:
    """Photos are grouped by the name before the first underscore (``<house>_<room>.jpg``: the
    rooms of one house), so one group is never split between training and validation."""
    return path.stem.split("_", 1)[0]


def no_sky_split(path: Path) -> str:
    """``train`` or ``val``, fixed by a stable hash of the photo's group."""
    bucket = zlib.crc32(no_sky_group(path).encode("utf-8")) % 100
    return "val" if bucket < NO_SKY_VAL_PERCENT else "train"


def read_exclusion_list(path: Path) -> set[str]:
    """File names (one per line, ``#`` starts a comment) of photos to leave out."""
    names: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.add(name)
    return names


def index_no_sky(root: Path, split: str, exclude: set[str] = frozenset()) -> list[SampleRef]:
    """Photos known to show no sky (``root`` itself or ``root/images``): every pixel is foreground.
    Names in ``exclude`` (photos that do show some sky) are left out."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    folder = root / "images" if (root / "images").is_dir() else root
    photos = [p for p in _find_by_stem(folder).values() if p.name not in exclude]
    if not photos:
        raise DatasetError(f"{root}: no photos found for --no-sky")
    return [SampleRef(f"no_sky:{root.name}", p.stem, p, None, None)
            for p in sorted(photos) if no_sky_split(p) == split]


def _read_gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def _resize_to_short_side(arr: np.ndarray, short: int, resample: Image.Resampling) -> np.ndarray:
    h, w = arr.shape[:2]
    if min(h, w) <= short:
        return arr
    scale = short / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(arr).resize(size, resample))


def load_sample(ref: SampleRef, max_short_side: int | None = None) -> Sample:
    """Decode one sample, checking that mask and void match the image and are binary."""
    try:
        with Image.open(ref.image) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        mask = _read_gray(ref.mask) if ref.mask is not None else np.zeros(image.shape[:2], np.uint8)
        void = _read_gray(ref.void) > 127 if ref.void is not None else None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{ref.image}: cannot read sample ({exc})") from exc
    if mask.shape != image.shape[:2]:
        raise DatasetError(
            f"{ref.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but image {ref.image} is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    if void is not None and void.shape != mask.shape:
        raise DatasetError(f"{ref.void}: void mask size differs from {ref.image}")
    if not ref.soft:
        between = np.count_nonzero((mask > 8) & (mask < 247))
        if between > 0.01 * mask.size:
            raise DatasetError(f"{ref.mask}: mask is not binary ({between} pixels between 8 and 247); expected 0 / 255 "
                               f"(soft targets: make them with 'clnsod refine-labels')")
        mask = np.where(mask > 127, 255, 0).astype(np.uint8)
    if max_short_side:
        image = _resize_to_short_side(image, max_short_side, Image.Resampling.BILINEAR)
        mask = _resize_to_short_side(mask, max_short_side, Image.Resampling.BILINEAR if ref.soft else Image.Resampling.NEAREST)
        if void is not None:
            void = _resize_to_short_side(void.astype(np.uint8) * 255, max_short_side, Image.Resampling.NEAREST) > 127
    return Sample(ref, image, mask, void)


def load_samples(refs: list[SampleRef], max_short_side: int | None = None) -> list[Sample]:
    return [load_sample(ref, max_short_side) for ref in refs]
