"""Every sky a user can pick, built-in and their own, with thumbnails: what ``clnsod skies list``
prints and what the editors' sky galleries show (``bridge --list-skies``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clnsod_core import __version__
from clnsod_core.compositing.library import THUMB_WIDTH, SkyLibrary
from clnsod_core.compositing.preset_names import PRESET_DESCRIPTIONS
from clnsod_core.folders import user_cache_root
from clnsod_core.imaging.io import save_image

THUMB_HEIGHT = 180  # presets' thumbnails: 16:9 at THUMB_WIDTH


@dataclass(frozen=True)
class SkyEntry:
    name: str
    kind: str  # "preset" or "user"
    description: str  # a preset's description; a user sky's source file
    width: int | None  # None for presets: they are rendered at any size
    height: int | None
    thumbnail: Path | None  # None when thumbnails were not asked for
    image: Path | None  # a user sky's image file (what the editors send as the sky)

    def to_data(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "description": self.description, "width": self.width,
                "height": self.height, "thumbnail": str(self.thumbnail) if self.thumbnail else None,
                "image": str(self.image) if self.image else None}


def preset_thumbnail(name: str) -> Path:
    """A preset's thumbnail (seed 0), rendered once per version into the user cache."""
    path = user_cache_root() / "thumbnails" / __version__ / f"{name}.jpg"
    if not path.is_file():
        from clnsod_core.compositing.skies import (
            render_preset,  # torch: only when a thumbnail is missing
        )

        save_image(render_preset(name, THUMB_WIDTH, THUMB_HEIGHT, 0), path, quality=88)
    return path


def sky_catalogue(library: SkyLibrary | None = None, thumbnails: bool = False) -> list[SkyEntry]:
    """Presets first (in their order), then the user's skies (by name)."""
    entries = [SkyEntry(name, "preset", text, None, None, preset_thumbnail(name) if thumbnails else None, None)
               for name, text in PRESET_DESCRIPTIONS.items()]
    for sky in (library or SkyLibrary()).list():
        entries.append(SkyEntry(sky.name, "user", f"from {sky.source}", sky.width, sky.height,
                                sky.thumbnail if thumbnails else None, sky.image))
    return entries
