"""The user's sky library: their own sky photos, imported once and then used by name like a preset.

Each sky lives in its own folder under ``<data dir>/skies/NAME/``: ``sky.png`` (only the sky, the
foreground cropped away, at the photo's depth and with its ICC profile), ``thumb.jpg`` (sRGB, for
the editors' galleries) and ``sky.json`` (where it came from, its size, the crop and the horizon).
A sky is built in a hidden folder next to the others and renamed into place, so an interrupted or
failed import never leaves half a sky behind. The data dir is ``folders.user_data_root()``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from clnsod_core.arrays import as_u8
from clnsod_core.files import usual_permissions
from clnsod_core.folders import user_data_root
from clnsod_core.imaging.colour import ColourSpace, to_srgb_u8
from clnsod_core.imaging.io import (
    PhotoError,
    PhotoMeta,
    load_photo_with_meta,
    save_image,
)

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # no dots or slashes: never mistaken for a file
MIN_SHORT_SIDE = 1200  # below this a sky looks soft on a large photo
MIN_SKY_ROWS = 200  # a usable sky is at least this tall and a fifth of the photo's width...
MIN_SKY_SHARE = 0.2  # ...and covers at least this share of it
THUMB_WIDTH = 320
RECTANGLE_GRID = 1024
IMAGE, THUMB, RECORD = "sky.png", "thumb.jpg", "sky.json"

Matte = Callable[[np.ndarray, ColourSpace], np.ndarray]  # photo, its space -> (H, W) float sky matte


def name_from_file(path: Path) -> str:
    """A library name from a file name: 'My Sky (2).JPG' -> 'my-sky-2', 'Été.tif' -> 'ete'."""
    ascii_stem = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9_]+", "-", ascii_stem.lower()).strip("-_")[:64].strip("-_")


@dataclass(frozen=True)
class UserSky:
    """One sky of the library, as ``skies list`` and the editors' galleries show it."""

    name: str
    image: Path  # the cropped sky (PNG)
    thumbnail: Path  # sRGB JPEG, THUMB_WIDTH wide
    width: int
    height: int
    source: str  # the imported file's name
    source_sha256: str
    crop: tuple[int, int, int, int]  # left, top, right, bottom in the source photo (upright)
    horizon: int  # row of the source photo where its sky meets the land (median over columns)
    added: str  # ISO 8601, UTC

    def to_data(self) -> dict[str, object]:
        return {"name": self.name, "image": str(self.image), "thumbnail": str(self.thumbnail), "width": self.width,
                "height": self.height, "source": self.source, "source_sha256": self.source_sha256,
                "crop": list(self.crop), "horizon": self.horizon, "added": self.added}


@dataclass(frozen=True)
class Imported:
    sky: UserSky
    warnings: tuple[str, ...]


class LibraryError(Exception):
    """Why a sky cannot be added, found or removed: one line for the user."""


def sky_rectangle(matte: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest rectangle of sky touching the photo's top edge (left, top, right, bottom), or None.

    Per column, the sky runs from the top down to the first foreground pixel; the rectangle is the
    largest one under that skyline (the classic largest-rectangle-in-a-histogram). Birds, wires and
    other specks smaller than 1 % of the short side do not count as foreground.
    """
    import torch  # here, not at the top: listing the library for a dialog must not wait for torch
    import torch.nn.functional as F

    full_h, full_w = matte.shape
    cell = max(1, -(-max(full_h, full_w) // RECTANGLE_GRID))  # found on a grid of at most 1024 cells a side
    foreground = torch.from_numpy((matte < 0.5).astype(np.float32))[None, None]
    foreground = F.max_pool2d(foreground, cell, cell, ceil_mode=True)  # a cell with any foreground is foreground
    h, w = foreground.shape[-2:]
    speck = max(1, min(h, w) // 100) | 1
    opened = F.max_pool2d(-F.max_pool2d(-foreground, speck, 1, speck // 2), speck, 1, speck // 2)[0, 0].numpy() > 0.5
    heights = np.where(opened.any(axis=0), opened.argmax(axis=0), h)  # sky rows from the top, per column
    best, best_area = None, 0
    stack: list[int] = []  # columns with increasing heights
    for col in range(w + 1):
        current = heights[col] if col < w else -1
        while stack and heights[stack[-1]] >= current:
            top_col = stack.pop()
            left = stack[-1] + 1 if stack else 0
            area = int(heights[top_col]) * (col - left)
            if area > best_area:
                best, best_area = (left, 0, col, int(heights[top_col])), area
        stack.append(col)
    if best is None:
        return None
    left, top, right, bottom = best
    return left * cell, top, min(full_w, right * cell), min(full_h, bottom * cell)


class SkyLibrary:
    def __init__(self, root: Path | None = None) -> None:
        self.folder = (root or user_data_root()) / "skies"

    def list(self) -> list[UserSky]:
        """Every complete sky, by name; folders that are not (or no longer) skies are ignored."""
        if not self.folder.is_dir():
            return []
        skies = (self.get(entry.name) for entry in sorted(self.folder.iterdir()) if NAME_PATTERN.fullmatch(entry.name))
        return [sky for sky in skies if sky is not None]

    def get(self, name: str) -> UserSky | None:
        if not NAME_PATTERN.fullmatch(name):
            return None
        folder = self.folder / name
        try:
            data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
            sky = UserSky(name=name, image=folder / IMAGE, thumbnail=folder / THUMB, width=int(data["width"]),
                          height=int(data["height"]), source=str(data["source"]),
                          source_sha256=str(data["source_sha256"]), crop=tuple(int(v) for v in data["crop"]),  # type: ignore[arg-type]
                          horizon=int(data["horizon"]), added=str(data["added"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return sky if sky.image.is_file() else None

    def remove(self, name: str) -> None:
        if self.get(name) is None:
            raise LibraryError(f"no sky named {name!r} in the library ({self.folder})")
        doomed = self.folder / f".{name}.removing-{os.getpid()}"
        os.replace(self.folder / name, doomed)  # gone from the library at once, even if deleting is slow
        shutil.rmtree(doomed)

    def add(self, path: Path, name: str, matte_of: Matte, reserved: tuple[str, ...] = (),
            max_pixels: int = 150_000_000) -> Imported:
        """Import the sky of the photo at ``path`` as ``name``; LibraryError or PhotoError if unusable."""
        if not name:
            raise LibraryError("cannot make a sky name from this file's name; give one with --name")
        if not NAME_PATTERN.fullmatch(name):
            raise LibraryError(f"{name!r} is not a usable sky name: use lower-case letters, digits, '-' and '_' "
                               "(at most 64), starting with a letter or digit")
        if name in reserved:
            raise LibraryError(f"{name!r} is a built-in preset; choose another name with --name")
        if (self.folder / name).exists():
            raise LibraryError(f"a sky named {name!r} is already in the library; remove it first "
                               f"(clnsod skies remove {name}) or choose another name with --name")
        photo, meta = load_photo_with_meta(path, max_pixels)  # first: it tells a missing or odd file clearly
        digest = _sha256(path)
        for existing in self.list():
            if existing.source_sha256 == digest:
                raise LibraryError(f"{path.name} is already in the library as {existing.name!r}")
        h, w = photo.shape[:2]
        warnings = []
        if min(h, w) < MIN_SHORT_SIDE:
            warnings.append(f"{path.name} is only {w}x{h}; skies below {MIN_SHORT_SIDE} px on the short side look "
                            "soft on large photos")
        space = ColourSpace(meta.icc_profile)
        matte = matte_of(photo, space)
        box = sky_rectangle(matte)
        if box is None or (matte >= 0.5).mean() < 0.002:
            raise PhotoError(path, "no sky found in this photo")
        left, top, right, bottom = box
        if bottom - top < min(MIN_SKY_ROWS, h) or (right - left) * (bottom - top) < MIN_SKY_SHARE * h * w:
            raise PhotoError(path, f"the sky along the top of this photo is too small to use (largest clear "
                                   f"stretch {right - left}x{bottom - top}); a sky photo needs open sky at the top")
        sky_rows = matte >= 0.5
        per_column = np.where(~sky_rows.all(axis=0), (~sky_rows).argmax(axis=0), h)
        sky = np.ascontiguousarray(photo[top:bottom, left:right])
        record = UserSky(name=name, image=self.folder / name / IMAGE, thumbnail=self.folder / name / THUMB,
                         width=right - left, height=bottom - top, source=path.name, source_sha256=digest,
                         crop=(left, top, right, bottom), horizon=int(np.median(per_column)),
                         added=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self._store(record, sky, meta, space)
        return Imported(record, tuple(warnings))

    def _store(self, record: UserSky, sky: np.ndarray, meta: PhotoMeta, space: ColourSpace) -> None:
        """Write the sky's files into a hidden folder, then rename it into place (all or nothing)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{record.name}.adding-", dir=self.folder))
        except OSError as exc:
            raise LibraryError(f"cannot write to the sky library {self.folder} ({exc.strerror or exc})") from None
        try:
            save_image(sky, staging / IMAGE, PhotoMeta(icc_profile=meta.icc_profile))
            thumb_h = max(1, round(THUMB_WIDTH * record.height / record.width))
            small = Image.fromarray(as_u8(sky)).resize((THUMB_WIDTH, thumb_h), Image.Resampling.LANCZOS)
            save_image(to_srgb_u8(np.asarray(small), space), staging / THUMB, quality=88)
            data = {key: value for key, value in record.to_data().items() if key not in ("name", "image", "thumbnail")}
            (staging / RECORD).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            os.chmod(staging, usual_permissions(directory=True))  # mkdtemp makes 0700
            os.rename(staging, self.folder / record.name)  # fails if the name was taken meanwhile
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if (self.folder / record.name).exists():
                raise LibraryError(f"a sky named {record.name!r} was added meanwhile") from None
            raise LibraryError(f"cannot write to the sky library {self.folder} ({exc.strerror or exc})") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise PhotoError(path, f"cannot read file ({exc.strerror or exc})") from None
    return digest.hexdigest()
