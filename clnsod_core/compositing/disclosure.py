"""Saying that a sky was replaced: XMP metadata in every output, and an optional visible label.

Listing rules and laws in real estate ask for replaced skies to be disclosed. Every composite
carries an XMP packet: the tool and version (``xmp:CreatorTool``), the time, the IPTC digital
source type for an edit made with a trained algorithm, and ``clnsod:SkyReplaced``/``clnsod:Sky``.
``stamp_label`` writes a small, legible text such as "Virtually enhanced" into a corner.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from functools import lru_cache
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from clnsod_core import __version__
from clnsod_core.arrays import unit_scale

XMP_NAMESPACE = "https://clnsod.org/ns/sky/1.0/"
# IPTC NewsCodes: "composite with elements of trained algorithmic media" (an edit made by a trained model).
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
LABEL_MAX_CHARS = 80


def replacement_time() -> str:
    """When a run replaced its skies (ISO 8601, UTC): now, or ``SOURCE_DATE_EPOCH`` when set (the
    reproducible-builds convention), so that a rerun can give byte-identical files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


def disclosure_xmp(sky: str, when: str, label: str | None = None) -> bytes:
    """The XMP packet of a replaced-sky output; ``sky`` is the preset name or the sky file's name,
    ``when`` the run's ``replacement_time()`` (one time for a whole batch)."""
    fields = {
        "xmp:CreatorTool": f"CLN-SOD {__version__}",
        "xmp:ModifyDate": when,
        "xmp:MetadataDate": when,
        "Iptc4xmpExt:DigitalSourceType": DIGITAL_SOURCE_TYPE,
        "clnsod:SkyReplaced": "True",
        "clnsod:Sky": sky,
        "clnsod:ReplacedAt": when,
    }
    if label:
        fields["clnsod:Label"] = label
    attributes = "\n    ".join(f"{key}={quoteattr(value)}" for key, value in fields.items())
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk={quoteattr(f"CLN-SOD {__version__}")}>\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        f'    xmlns:clnsod={quoteattr(XMP_NAMESPACE)}\n'
        f"    {attributes}/>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return packet.encode("utf-8")


def check_label(text: str) -> str:
    text = text.strip()
    if not text or len(text) > LABEL_MAX_CHARS or not text.isprintable():
        raise ValueError(f"label must be 1 to {LABEL_MAX_CHARS} printable characters, got {text!r}")
    return text


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def stamp_label(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``image`` (H, W, 3, uint8 or uint16) with ``text`` in white on a translucent dark box
    in the bottom-right corner; the text is 2.5 % of the short side tall (at least 12 px)."""
    text = check_label(text)
    h, w = image.shape[:2]
    size = max(12, round(0.025 * min(h, w)))
    font = _font(size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    pad = max(4, size // 3)
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    margin = max(4, size // 2)
    x0, y0 = max(0, w - box_w - margin), max(0, h - box_h - margin)
    x1, y1 = min(w, x0 + box_w), min(h, y0 + box_h)
    # Draw the box and the text as coverage masks at the box's size, then blend at the photo's depth.
    text_mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(text_mask).text((pad - left, pad - top), text, fill=255, font=font)
    coverage = np.asarray(text_mask, np.float32)[..., None] / 255
    top_value = np.float32(unit_scale(image.dtype))
    region = image[y0:y1, x0:x1].astype(np.float32)
    region *= np.float32(0.45)  # the box: the photo darkened to 45 %
    region = region * (1 - coverage) + top_value * coverage
    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(region), 0, top_value).astype(image.dtype)
    return out
