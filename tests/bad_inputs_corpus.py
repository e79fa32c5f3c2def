"""Builds the bad-input corpus at test time (nothing binary is committed).

Each kind is one file (or folder / link / pipe) named like an image, with the outcome the CLI
must give: ``None`` = processed (output upright, the size of the photo as displayed), or the
words its one-line error must contain.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 240, 160  # every processable kind displays as 240x160 (landscape) unless noted
MARKER = "clnsod-pwned"  # a metadata payload that would create this file if it were ever executed


@dataclass(frozen=True)
class Kind:
    name: str  # file name in the corpus folder (str or bytes for a non-UTF-8 name)
    error: str | None  # None: processed; else words in its error line
    size: tuple[int, int] = (W, H)  # displayed (width, height) when processed
    in_batch: bool = True  # a directory named like an image is a folder to batch, not a photo


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_rgb16(rgb8: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    h, w, _ = rgb8.shape
    rows = (rgb8.astype(">u2") * 257).reshape(h, w * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit gray but whose data stops almost at once."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 5000)[:200]
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data)


# For EXIF orientation k: how to store the upright image so that a viewer applying k shows it upright.
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def build_corpus(folder: Path, photo: Path) -> list[Kind]:
    """Write every kind into ``folder`` from the real ``photo`` (a landscape: sky on top)."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(photo) as im:
        upright = im.convert("RGB").resize((W, H), Image.Resampling.BILINEAR)
    jpeg = folder / "_full.jpg"
    upright.save(jpeg, quality=90)
    jpeg_bytes = jpeg.read_bytes()
    jpeg.unlink()
    kinds: list[Kind] = []

    def add(name: str, error: str | None, **kw: object) -> Path:
        kinds.append(Kind(name, error, **kw))  # type: ignore[arg-type]
        return folder / name

    # Broken files: one clear line each.
    add("truncated.jpg", "truncated").write_bytes(jpeg_bytes[: len(jpeg_bytes) // 3])
    png = folder / "_full.png"
    upright.save(png)
    add("truncated_png.png", "truncated").write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    png.unlink()
    add("zero.jpg", "empty file").write_bytes(b"")
    add("text.jpg", "not an image file").write_text("just some notes, not a photo\n")
    add("page.png", "not an image file").write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>\n")
    add("random.tif", "not an image file").write_bytes(np.random.default_rng(1).bytes(4096))
    add("folder.jpg", "is a directory", in_batch=False).mkdir()
    Image.new("1", (30000, 30000)).save(add("bomb.png", "decompression-bomb limit"))
    add("header_100mp.png", "truncated").write_bytes(_png_header_only(10000, 10000))
    add("header_160mp.png", "limit 150 MP").write_bytes(_png_header_only(16000, 10000))  # over our default limit
    os.symlink("loop_b.jpg", add("loop_a.jpg", "too many levels of symbolic links"))
    os.symlink("loop_a.jpg", add("loop_b.jpg", "too many levels of symbolic links"))
    os.symlink("nowhere.jpg", add("dangling.jpg", "file not found"))
    os.mkfifo(add("pipe.jpg", "not a regular file"))
    locked = add("unreadable.jpg", "permission denied")
    locked.write_bytes(jpeg_bytes)
    locked.chmod(0o000)

    # Unusual but valid photos: processed.
    Image.new("RGB", (1, 1), (90, 140, 220)).save(add("one_pixel.png", None, size=(1, 1)))
    Image.new("RGB", (1, 10000), (90, 140, 220)).save(add("one_by_10000.png", None, size=(1, 10000)))
    upright.convert("CMYK").save(add("cmyk.jpg", None), quality=90)
    gray16 = (np.asarray(upright.convert("L")).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(add("gray16.png", None))
    add("rgb16.png", None).write_bytes(_png_rgb16(np.asarray(upright)))
    pal = upright.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    pal.save(add("palette_transparent.png", None), transparency=0)
    upright.convert("LA").save(add("la.png", None))
    rgba = upright.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(add("rgba.png", None))
    for k, method in _STORE.items():
        stored = upright if method is None else upright.transpose(method)
        exif = Image.Exif()
        exif[0x0112] = k
        stored.save(add(f"orient_{k}.jpg", None), exif=exif.tobytes(), quality=90)
    # EXIF whose IFD offsets point past the end: readers must ignore it, not fail.
    add("corrupt_exif.jpg", None).write_bytes(
        jpeg_bytes[:2] + b"\xff\xe1" + struct.pack(">H", 2 + 6 + 14) + b"Exif\x00\x00" + b"MM\x00\x2a\xff\xff\xff\x00\x01\x12\x00\x03"
        + jpeg_bytes[2:]
    )
    frames = [upright, upright.transpose(Image.Transpose.ROTATE_180)]
    frames[0].save(add("animated.gif", None), save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(add("animated_webp.webp", None), save_all=True, append_images=frames[1:], duration=100, quality=80)
    frames[0].save(add("multipage.tif", None), save_all=True, append_images=frames[1:])
    # Metadata that looks like code or shell commands is data, never evaluated.
    payload = f"$(touch /tmp/{MARKER}); `touch /tmp/{MARKER}`; __import__('os').system('touch /tmp/{MARKER}')"
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", payload)
    text.add_text("pickle", "cos\nsystem\n(S'touch /tmp/" + MARKER + "'\ntR.")
    upright.save(add("png_text_payload.png", None), pnginfo=text)
    exif = Image.Exif()
    exif[0x010E] = payload  # ImageDescription
    exif[0x9286] = b"ASCII\x00\x00\x00" + payload.encode()  # UserComment
    upright.save(add("exif_payload.jpg", None), exif=exif.tobytes(), quality=90)
    # Awkward names for good photos.
    add("x" * 240 + ".jpg", None).write_bytes(jpeg_bytes)
    (folder / os.fsdecode(b"caf\xe9_latin1_\xff.jpg")).write_bytes(jpeg_bytes)
    kinds.append(Kind(os.fsdecode(b"caf\xe9_latin1_\xff.jpg"), None))
    add("good.jpg", None).write_bytes(jpeg_bytes)
    return kinds
