"""Photo formats beyond Pillow's built-in ones: HEIF/HEIC (the iPhone's default) through the
``pillow-heif`` plugin, AVIF through Pillow's own codec. Registered once at import; when one is
missing, a photo in that format is recognised by its file signature and the error says what to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class OptionalFormat:
    name: str  # Pillow's format name
    suffixes: tuple[str, ...]
    brands: frozenset[bytes]  # ISO-BMFF ``ftyp`` brands that mark a file of this format
    install: str  # what gives support for it


HEIF = OptionalFormat("HEIF", (".heic", ".heif", ".hif"),
                      frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}),
                      "pip install 'clnsod[heif]' (pillow-heif)")
AVIF = OptionalFormat("AVIF", (".avif",), frozenset({b"avif", b"avis"}),
                      "Pillow 11.3 or newer built with libavif (pip install -U pillow)")
OPTIONAL_FORMATS = (HEIF, AVIF)


def _register() -> None:
    """Load every Pillow plugin now (Pillow loads them lazily) and add pillow-heif if installed."""
    try:
        import pillow_heif
    except ImportError:
        pass
    else:
        pillow_heif.register_heif_opener()
    Image.init()


def can_read(fmt: OptionalFormat) -> bool:
    return fmt.name in Image.OPEN


def can_write(fmt: OptionalFormat) -> bool:
    return fmt.name in Image.SAVE


def sniff(path: Path) -> OptionalFormat | None:
    """The optional format a file is in, from its ``ftyp`` box (major and compatible brands)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return None
    if head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[0:4], "big")
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    # AVIF files also list "mif1": test AVIF first.
    return next((fmt for fmt in (AVIF, HEIF) if brands & fmt.brands), None)


def missing_support(fmt: OptionalFormat, action: str) -> str:
    return f"{action} {fmt.name} needs {fmt.install}"


_register()
