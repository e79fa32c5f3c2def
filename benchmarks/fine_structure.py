"""Fine-structure benchmark: real skies behind procedurally drawn thin foregrounds with exact alpha.

No hand labels are needed: every composite is *made* from its ground truth. A real sky (a sky-only
box of one of the large photos in ``../shared/data/photos``, or a built-in preset rendered at full
size) is covered by a real foreground band (the foreground of a held-out skyseg ``val`` photo, its
coarse label shrunk by 2 px so no old-sky pixels stay in it) and by one kind of thin structure drawn
at 4x4 supersampling, whose box-filtered coverage is the exact alpha:

  bare_tree, leafy_tree, reeds (stalks with plumes), power_lines (with lattice pylons), bridge
  (suspension cables, hangers, truss), rigging (masts, stays, spreaders), chain_link, barbed_wire.

Structures take their colour and texture from the band photo's own foreground; lighting is bright
day, dusk silhouette or night (dark sky, dark land, sensor noise); a sky that is already a night sky
(the ``night-stars`` preset) is always lit as night and not darkened again. The image is
``I = sky (1 - a_band)(1 - a_struct) + band a_band (1 - a_struct) + struct a_struct`` and the true sky
matte is ``(1 - a_band)(1 - a_struct)``. Composite ``k`` of seed ``s`` is always the same image.

For each weights file the matte ``clnsod mask`` would write is scored, per structure kind, with the
alpha-matting benchmark's measures (Rhemann et al., alphamatting.com: SAD and gradient and
connectivity errors, each summed and divided by 1000, and MSE), IoU of sky at 0.5, and the mean
absolute error within 8 px of the true sky line.

    python benchmarks/fine_structure.py --weights OLD.pt --weights clnsod_core/weights/clnsod-lite0-384-v6.pt
    python benchmarks/fine_structure.py --count 16 --save /tmp/fine   # look at composites and alphas
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SS = 4  # supersampling factor per axis: alpha is exact to 1/16 of a pixel's area
KINDS = ("bare_tree", "leafy_tree", "reeds", "power_lines", "bridge", "rigging", "chain_link", "barbed_wire")
LIGHTING = ("day", "dusk", "night")

# Sky-only boxes (x0, y0, x1, y1 as fractions), checked by eye: nothing but sky inside.
SKY_BOXES = {
    "Storm.jpg": (0.0, 0.0, 1.0, 0.5),
    "plasma_Kite.jpg": (0.0, 0.0, 0.58, 1.0),
    "plasma_ColdRipple.jpg": (0.0, 0.0, 1.0, 0.38),
    "plasma_DarkestHour.jpg": (0.0, 0.0, 1.0, 0.5),
    "plasma_EveningGlow.jpg": (0.0, 0.0, 1.0, 0.22),
    "plasma_summer_1am.jpg": (0.0, 0.0, 1.0, 0.58),
    "sunset_by_Aitzol_Berasategi.jpg": (0.0, 0.0, 1.0, 0.38),
    "picosdeeuropa_by_Aitzol_Berasategi.jpg": (0.08, 0.0, 0.8, 0.12),
}
PRESET_SKIES = ("clear-blue", "golden-hour", "sunset", "dramatic-clouds", "overcast", "night-stars")
# Skies that are already night skies: they are lit as night scenes and not darkened again (a starry
# sky under day-lit land, or darkened a second time to near black, is no photo anyone takes).
NIGHT_SKIES = ("night-stars",)


@dataclass
class Composite:
    image: np.ndarray  # (H, W, 3) uint8
    sky_alpha: np.ndarray  # (H, W) float32, the exact sky matte
    kind: str
    lighting: str
    sky_source: str
    band_source: str


# --- ingredients -------------------------------------------------------------------------------


def sky_image(source: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 sky: a crop with the target's aspect from a photo's sky-only box, or a preset."""
    if source in PRESET_SKIES:
        from clnsod_core.compositing.skies import render_preset

        return render_preset(source, width, height, int(rng.integers(1 << 30))).astype(np.float32) / 255
    with Image.open(SHARED / "photos" / source) as im:
        photo = im.convert("RGB")
        x0, y0, x1, y1 = SKY_BOXES[source]
        bw, bh = (x1 - x0) * photo.width, (y1 - y0) * photo.height
        scale = min(bw / width, bh / height) * rng.uniform(0.7, 1.0)
        cw, ch = width * scale, height * scale
        left = x0 * photo.width + rng.uniform(0, bw - cw)
        top = y0 * photo.height + rng.uniform(0, bh - ch)
        crop = photo.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    return np.asarray(crop, np.float32) / 255


@functools.lru_cache(maxsize=4)
def band_candidates(skyseg: Path) -> list[tuple[Path, Path]]:
    """Held-out skyseg ``val`` photos without void, with 15-65 % sky (a real skyline to keep);
    not the drone frames, whose rolled horizons put sky at the bottom of the frame."""
    rows = [json.loads(line) for line in (skyseg / "index.jsonl").read_text().splitlines() if line.strip()]
    picked = [r for r in rows if r["split"] == "val" and not r["void"] and 0.15 <= r["sky_frac"] <= 0.65
              and r["dataset"] != "horizon_uav"]
    return [(skyseg / r["dataset"] / "images" / f"{r['id']}.jpg", skyseg / r["dataset"] / "masks" / f"{r['id']}.png")
            for r in picked]


def foreground_band(photo: Path, mask: Path, width: int, height: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(band RGB, band alpha, structure texture), all at (H, W): the photo's foreground scaled to
    the full width and standing on the bottom edge; its label shrunk by 2 px (coarse polygons)."""
    with Image.open(photo) as im, Image.open(mask) as mk:
        rgb, sky = im.convert("RGB"), mk.convert("L")
    fg = sky.point(lambda v: 0 if v > 127 else 255).filter(ImageFilter.MinFilter(5))
    fg_arr = np.asarray(fg) > 127
    columns = fg_arr.any(axis=0)
    skyline_src = float(np.median(np.argmax(fg_arr[:, columns], axis=0))) if columns.any() else 0.0
    skyline = height * rng.uniform(0.5, 0.82)  # where the photo's skyline lands in the composite
    scale = max(width / rgb.width * rng.uniform(1.0, 1.3), (height - skyline) / max(1.0, rgb.height - skyline_src))
    bw, bh = round(rgb.width * scale), round(rgb.height * scale)
    rgb_big = np.asarray(rgb.resize((bw, bh), Image.Resampling.BICUBIC), np.float32) / 255
    fg_big = np.asarray(fg.resize((bw, bh), Image.Resampling.BILINEAR), np.float32) / 255
    left = int(rng.integers(0, bw - width + 1))
    top = round(skyline - skyline_src * scale)  # may be negative: the photo's top is cut off
    canvas_rgb = np.zeros((height, width, 3), np.float32)
    canvas_a = np.zeros((height, width), np.float32)
    src_top, dst_top = max(0, -top), max(0, top)
    rows = min(height - dst_top, bh - src_top)
    canvas_rgb[dst_top : dst_top + rows] = rgb_big[src_top : src_top + rows, left : left + width]
    canvas_a[dst_top : dst_top + rows] = fg_big[src_top : src_top + rows, left : left + width]
    # Texture for the structures: a patch of pure foreground, scaled up to the whole frame.
    ys, xs = np.nonzero(fg_arr)
    side = max(8, min(rgb.width, rgb.height) // 6)
    for _ in range(20):
        i = int(rng.integers(len(ys)))
        y, x = min(ys[i], rgb.height - side), min(xs[i], rgb.width - side)
        if fg_arr[y : y + side, x : x + side].all():
            break
    patch = rgb.crop((x, y, x + side, y + side)).resize((width, height), Image.Resampling.BICUBIC)
    return canvas_rgb, canvas_a, np.asarray(patch, np.float32) / 255


# --- structures, drawn on an SS x supersampled 8-bit canvas -------------------------------------


def _ss(x: float, y: float) -> tuple[float, float]:
    """Final-pixel coordinates -> supersample coordinates (pixel i holds samples SS*i ... SS*i + SS - 1).
    Pillow fills every sample a shape's closed outline touches, so a polygon with vertices on the
    sample grid from x0 to x1 covers [x0, x1 + 1/SS) exactly."""
    return x * SS, y * SS


class Pen:
    """Draws in final-image pixel units on the supersampled canvas."""

    def __init__(self, width: int, height: int) -> None:
        self.canvas = Image.new("L", (width * SS, height * SS), 0)
        self.draw = ImageDraw.Draw(self.canvas)
        self.width, self.height = width, height

    def line(self, points: list[tuple[float, float]], width: float) -> None:
        """A polyline ``width`` final pixels wide (0.25 px and up), with round joints."""
        w = max(1, round(width * SS))
        pts = [_ss(x, y) for x, y in points]
        self.draw.line(pts, fill=255, width=w, joint="curve")
        if w >= 3:
            r = w / 2
            for x, y in pts[:: max(1, len(pts) - 1)]:
                self.draw.ellipse((x - r, y - r, x + r, y + r), fill=255)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> None:
        self.draw.ellipse((*_ss(cx - rx, cy - ry), *_ss(cx + rx, cy + ry)), fill=255)

    def polygon(self, points: list[tuple[float, float]]) -> None:
        self.draw.polygon([_ss(x, y) for x, y in points], fill=255)

    def alpha(self) -> np.ndarray:
        """Exact coverage: the mean of each pixel's SS x SS samples."""
        small = self.canvas.resize((self.width, self.height), Image.Resampling.BOX)
        return np.asarray(small, np.float32) / 255


def _curve(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], n: int = 16) -> list[tuple[float, float]]:
    """Points of a quadratic Bezier curve."""
    t = np.linspace(0, 1, n)
    x = (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t**2 * p2[0]
    y = (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t**2 * p2[1]
    return list(zip(x.tolist(), y.tolist(), strict=True))


def _catenary(a: tuple[float, float], b: tuple[float, float], sag: float, n: int = 48) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, n)
    x = a[0] + (b[0] - a[0]) * t
    y = a[1] + (b[1] - a[1]) * t + sag * 4 * t * (1 - t)
    return list(zip(x.tolist(), y.tolist(), strict=True))


def _branch(pen: Pen, rng: np.random.Generator, x: float, y: float, angle: float, length: float, width: float,
            depth: int, leaves: bool) -> None:
    bend = rng.uniform(-0.25, 0.25)
    mid = (x + 0.5 * length * math.sin(angle + bend), y - 0.5 * length * math.cos(angle + bend))
    end = (x + length * math.sin(angle), y - length * math.cos(angle))
    pen.line(_curve((x, y), mid, end, 8), width)
    if depth == 0 or width < 0.3:
        if leaves:
            _leaf_cluster(pen, rng, *end, size=length * 1.2)
        return
    if leaves and depth <= 1:
        _leaf_cluster(pen, rng, *end, size=length * 0.8)
    for _ in range(int(rng.integers(2, 4))):
        child_angle = angle + rng.uniform(-0.75, 0.75)
        _branch(pen, rng, *end, child_angle, length * rng.uniform(0.6, 0.82), width * rng.uniform(0.55, 0.72),
                depth - 1, leaves)


def _leaf_cluster(pen: Pen, rng: np.random.Generator, cx: float, cy: float, size: float) -> None:
    """Small leaves scattered around a twig's end, with sky between them."""
    for _ in range(int(rng.integers(6, 20))):
        r = size * math.sqrt(rng.uniform(0, 1))
        a = rng.uniform(0, 2 * math.pi)
        leaf = rng.uniform(1.0, 3.5)
        pen.ellipse(cx + r * math.cos(a), cy + r * math.sin(a), leaf, leaf * rng.uniform(0.5, 1.0))


def draw_tree(pen: Pen, rng: np.random.Generator, ground: float, leaves: bool) -> None:
    for _ in range(int(rng.integers(1, 4))):
        x = rng.uniform(0.1, 0.9) * pen.width
        height = rng.uniform(0.35, 0.7) * pen.height
        trunk = rng.uniform(8, 22) * pen.height / 1200
        _branch(pen, rng, x, ground + 10, rng.uniform(-0.1, 0.1), height * 0.35, trunk, int(rng.integers(6, 9)), leaves)


def draw_reeds(pen: Pen, rng: np.random.Generator, ground: float) -> None:
    for _ in range(int(rng.integers(60, 200))):
        x = rng.uniform(-0.05, 1.05) * pen.width
        top_y = pen.height - rng.uniform(0.3, 0.75) * pen.height
        lean = rng.uniform(-0.2, 0.2) * pen.height
        base = (x, pen.height + 5)
        tip = (x + lean, top_y)
        stalk = _curve(base, (x + lean * 0.2, (base[1] + top_y) / 2), tip, 20)
        pen.line(stalk, rng.uniform(0.6, 3.0))
        if rng.uniform() < 0.6:  # a feathery plume: short hairs fanning out around the top
            for _ in range(int(rng.integers(15, 45))):
                a = rng.uniform(-math.pi, 0)
                r = rng.uniform(4, 30)
                start_t = rng.uniform(0, 1)
                sx = tip[0] + start_t * lean * 0.05
                sy = tip[1] + start_t * 25
                pen.line([(sx, sy), (sx + r * math.cos(a), sy + r * math.sin(a) * 0.6)], rng.uniform(0.3, 0.9))


def _pylon(pen: Pen, rng: np.random.Generator, x: float, ground: float, height: float) -> list[tuple[float, float]]:
    """A lattice pylon; returns the points where wires hang."""
    top = ground - height
    base_half, top_half = height * 0.14, height * 0.03
    left = [(x - base_half, ground), (x - top_half, top)]
    right = [(x + base_half, ground), (x + top_half, top)]
    pen.line(left, 3.0)
    pen.line(right, 3.0)
    levels = 10
    for i in range(levels):
        t0, t1 = i / levels, (i + 1) / levels
        lx0 = left[0][0] + (left[1][0] - left[0][0]) * t0
        rx0 = right[0][0] + (right[1][0] - right[0][0]) * t0
        lx1 = left[0][0] + (left[1][0] - left[0][0]) * t1
        rx1 = right[0][0] + (right[1][0] - right[0][0]) * t1
        y0, y1 = ground - height * t0, ground - height * t1
        pen.line([(lx0, y0), (rx1, y1)], 1.2)
        pen.line([(rx0, y0), (lx1, y1)], 1.2)
        pen.line([(lx1, y1), (rx1, y1)], 1.0)
    hangs = []
    for arm_t in (0.7, 0.85, 1.0):
        y = ground - height * arm_t
        span = height * rng.uniform(0.22, 0.32)
        pen.line([(x - span, y), (x + span, y)], 2.0)
        pen.line([(x - span, y), (x, y - height * 0.05)], 1.0)
        pen.line([(x + span, y), (x, y - height * 0.05)], 1.0)
        hangs += [(x - span, y + 6), (x + span, y + 6)]
    return hangs


def draw_power_lines(pen: Pen, rng: np.random.Generator, ground: float) -> None:
    xs = sorted(rng.uniform(0.1, 0.9, int(rng.integers(1, 3))) * pen.width)
    height = rng.uniform(0.35, 0.6) * pen.height
    hangs = [_pylon(pen, rng, x, ground + 5, height * rng.uniform(0.8, 1.0)) for x in xs]
    width = rng.uniform(0.6, 2.5)
    ends = [[(-20.0, y + rng.uniform(-40, 60)) for _, y in hangs[0]]] + hangs + [[(pen.width + 20.0, y + rng.uniform(-40, 60)) for _, y in hangs[-1]]]
    for a_set, b_set in zip(ends[:-1], ends[1:], strict=True):
        for a, b in zip(a_set, b_set, strict=True):
            pen.line(_catenary(a, b, rng.uniform(0.02, 0.08) * pen.height), width)


def draw_bridge(pen: Pen, rng: np.random.Generator, ground: float) -> None:
    deck_y = ground - rng.uniform(0.1, 0.3) * pen.height
    tower_h = rng.uniform(0.3, 0.5) * pen.height
    towers = sorted(rng.uniform(0.15, 0.85, 2) * pen.width)
    if towers[1] - towers[0] < 0.3 * pen.width:
        towers = [0.2 * pen.width, 0.8 * pen.width]
    for x in towers:
        for dx in (-12.0, 12.0):
            pen.line([(x + dx, ground + 5), (x + dx * 0.6, deck_y - tower_h)], rng.uniform(5, 9))
        for t in (0.3, 0.65, 0.98):
            pen.line([(x - 12, deck_y - tower_h * t), (x + 12, deck_y - tower_h * t)], 4)
    pen.polygon([(-10, deck_y), (pen.width + 10, deck_y), (pen.width + 10, deck_y + 10), (-10, deck_y + 10)])
    step = rng.uniform(18, 40)
    x = -10.0
    while x < pen.width + 10:  # a Warren truss along the deck
        pen.line([(x, deck_y + 10), (x + step / 2, deck_y - 18), (x + step, deck_y + 10)], 1.5)
        x += step
    pen.line([(-10, deck_y - 18), (pen.width + 10, deck_y - 18)], 1.5)
    cable_w = rng.uniform(1.5, 3.5)
    tops = [(towers[0], deck_y - tower_h), (towers[1], deck_y - tower_h)]
    spans = [((-20.0, deck_y - 20), tops[0]), (tops[0], tops[1]), (tops[1], (pen.width + 20.0, deck_y - 20))]
    for a, b in spans:
        sag = (tower_h * 0.85) if a == tops[0] else tower_h * 0.15
        cable = _catenary(a, b, sag, 96)
        pen.line(cable, cable_w)
        for cx, cy in cable[2:-2:2]:  # vertical hangers down to the deck
            if cy < deck_y - 20:
                pen.line([(cx, cy), (cx, deck_y - 18)], rng.uniform(0.4, 1.0))


def draw_rigging(pen: Pen, rng: np.random.Generator, ground: float) -> None:
    deck = ground + 5
    for _ in range(int(rng.integers(2, 6))):
        x = rng.uniform(0.08, 0.92) * pen.width
        top = deck - rng.uniform(0.35, 0.7) * pen.height
        pen.line([(x, deck), (x, top)], rng.uniform(2.0, 6.0))
        for t in (0.35, 0.65):  # spreaders
            y = deck + (top - deck) * t
            half = rng.uniform(15, 45)
            pen.line([(x - half, y), (x + half, y)], 1.5)
            pen.line([(x - half, y), (x, top), (x + half, y)], rng.uniform(0.4, 1.0))
        for _ in range(int(rng.integers(4, 9))):  # stays and halyards down to the deck
            y = top + rng.uniform(0, 0.5) * (deck - top)
            pen.line([(x, y), (x + rng.uniform(-0.3, 0.3) * pen.width, deck)], rng.uniform(0.4, 1.5))
        pen.line([(x, top), (x + rng.uniform(-0.4, 0.4) * pen.width, top + rng.uniform(-30, 30))], 0.6)


def draw_chain_link(pen: Pen, rng: np.random.Generator, ground: float) -> None:
    top = pen.height * rng.uniform(0.25, 0.6)
    spacing = rng.uniform(8, 22)
    wire = rng.uniform(0.6, 1.6)
    span = pen.height - top + 10
    x = -span
    while x < pen.width + span:  # two families of diagonal wires = diamonds
        pen.line([(x, top), (x + span, pen.height + 10)], wire)
        pen.line([(x + span, top), (x, pen.height + 10)], wire)
        x += spacing
    pen.line([(-10, top), (pen.width + 10, top)], rng.uniform(3, 6))  # top rail
    for px in np.arange(rng.uniform(0, 300), pen.width, rng.uniform(250, 500)):
        pen.line([(px, top - 8), (px, pen.height + 10)], rng.uniform(5, 9))


def draw_barbed_wire(pen: Pen, rng: np.random.Generator, ground: float) -> None:
    rows = int(rng.integers(3, 6))
    top = pen.height * rng.uniform(0.35, 0.65)
    gap = rng.uniform(25, 60)
    for i in range(rows):
        y = top + i * gap
        wire = _catenary((-20.0, y), (pen.width + 20.0, y + rng.uniform(-15, 15)), rng.uniform(5, 25), 64)
        pen.line(wire, rng.uniform(0.7, 1.6))
        step = rng.uniform(15, 40)
        for k in range(0, len(wire) * 8):
            t = k * step / (pen.width + 40)
            if t >= 1:
                break
            bx = -20 + t * (pen.width + 40)
            by = np.interp(bx, [p[0] for p in wire], [p[1] for p in wire])
            r = rng.uniform(3, 6)
            pen.line([(bx - r, by - r), (bx + r, by + r)], 0.8)
            pen.line([(bx - r, by + r), (bx + r, by - r)], 0.8)
    for px in np.arange(rng.uniform(0, 200), pen.width, rng.uniform(200, 450)):
        pen.line([(px, top - 20), (px, pen.height + 10)], rng.uniform(4, 8))


DRAWERS: dict[str, Callable[[Pen, np.random.Generator, float], None]] = {
    "bare_tree": lambda pen, rng, ground: draw_tree(pen, rng, ground, leaves=False),
    "leafy_tree": lambda pen, rng, ground: draw_tree(pen, rng, ground, leaves=True),
    "reeds": draw_reeds,
    "power_lines": draw_power_lines,
    "bridge": draw_bridge,
    "rigging": draw_rigging,
    "chain_link": draw_chain_link,
    "barbed_wire": draw_barbed_wire,
}


# --- composites --------------------------------------------------------------------------------


def _skyline(band_alpha: np.ndarray) -> float:
    """Mean row of the band's top edge (where structures stand)."""
    solid = band_alpha > 0.5
    columns = solid.any(axis=0)
    if not columns.any():
        return float(band_alpha.shape[0])
    return float(np.median(np.argmax(solid[:, columns], axis=0)))


def make_composite(index: int, seed: int = 0, width: int = 1800, height: int = 1200,
                   skyseg: Path = SHARED / "skyseg") -> Composite:
    """Composite number ``index``: the kind cycles through KINDS, everything else is drawn from a
    generator seeded by (seed, index), so the same call always returns the same image."""
    rng = np.random.default_rng([seed, index])
    kind = KINDS[index % len(KINDS)]
    lighting = LIGHTING[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
    skies = [*SKY_BOXES, *PRESET_SKIES]
    sky_source = skies[int(rng.integers(len(skies)))]
    if sky_source in NIGHT_SKIES:
        lighting = "night"
    bands = band_candidates(skyseg)
    while True:  # a band whose lower part is all foreground (no sky under a bridge, no tilted horizon)
        band_photo, band_mask = bands[int(rng.integers(len(bands)))]
        with Image.open(band_mask) as mk:
            lower = np.asarray(mk.convert("L"))[-max(1, mk.height // 4) :]
        if (lower > 127).mean() < 0.002:
            break
    sky = sky_image(sky_source, width, height, rng)
    band_rgb, band_a, texture = foreground_band(band_photo, band_mask, width, height, rng)
    pen = Pen(width, height)
    DRAWERS[kind](pen, rng, _skyline(band_a))
    struct_a = pen.alpha()
    struct_rgb = texture * rng.uniform(0.5, 1.0)
    if lighting == "dusk":  # backlit: the land and everything on it becomes a dark silhouette
        rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        sky = sky * (np.array([0.85, 0.7, 0.75]) * (1 - rows) + np.array([1.15, 0.8, 0.5]) * rows)
        dark = rng.uniform(0.08, 0.3)
        band_rgb, struct_rgb = band_rgb * dark, struct_rgb * dark * 0.8
    elif lighting == "night":
        night_gain = rng.uniform(0.1, 0.25) * np.array([0.55, 0.65, 1.0])
        if sky_source not in NIGHT_SKIES:
            sky = sky * night_gain
        dark = rng.uniform(0.04, 0.12)
        band_rgb, struct_rgb = band_rgb * dark, struct_rgb * dark
    sa, ba = struct_a[..., None], band_a[..., None]
    image = sky * (1 - ba) * (1 - sa) + band_rgb * ba * (1 - sa) + struct_rgb * sa
    if lighting == "night":
        image = image + rng.normal(0, rng.uniform(0.008, 0.025), image.shape)
    out = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    sky_alpha = ((1 - band_a) * (1 - struct_a)).astype(np.float32)
    return Composite(out, sky_alpha, kind, lighting, sky_source, band_photo.name)


# --- measures ----------------------------------------------------------------------------------


def _gauss_gradient_magnitude(alpha: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    from scipy import ndimage

    gx = ndimage.gaussian_filter(alpha, sigma, order=(0, 1))
    gy = ndimage.gaussian_filter(alpha, sigma, order=(1, 0))
    return np.hypot(gx, gy)


def gradient_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Rhemann et al.: squared difference of Gaussian (sigma 1.4) gradient magnitudes, summed, / 1000."""
    return float(((_gauss_gradient_magnitude(pred) - _gauss_gradient_magnitude(gt)) ** 2).sum() / 1000)


def connectivity_error(pred: np.ndarray, gt: np.ndarray, step: float = 0.1) -> float:
    """Rhemann et al.: how far each pixel's alpha is from being connected to the largest region
    that is sure in both, over thresholds 0, 0.1, ..., 1 (theta = 0.15), summed, / 1000."""
    from scipy import ndimage

    thresholds = np.arange(0, 1 + step, step)
    level = np.full(pred.shape, -1.0)
    for i in range(1, len(thresholds)):
        both = (pred >= thresholds[i]) & (gt >= thresholds[i])
        labels, count = ndimage.label(both)  # 4-connectivity
        largest = np.zeros_like(both)
        if count:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            largest = labels == sizes.argmax()
        fresh = (level == -1) & ~largest
        level[fresh] = thresholds[i - 1]
    level[level == -1] = 1
    pred_d, gt_d = pred - level, gt - level
    pred_phi = 1 - pred_d * (pred_d >= 0.15)
    gt_phi = 1 - gt_d * (gt_d >= 0.15)
    return float(np.abs(pred_phi - gt_phi).sum() / 1000)


def sky_line_band(gt: np.ndarray, radius: int = 8) -> np.ndarray:
    """Pixels within ``radius`` of the true sky line (where gt crosses 0.5)."""
    from scipy import ndimage

    hard = gt >= 0.5
    size = 2 * radius + 1
    return ndimage.maximum_filter(hard, size) != ndimage.minimum_filter(hard, size)


def measures(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    pred64, gt64 = pred.astype(np.float64), gt.astype(np.float64)
    err = np.abs(pred64 - gt64)
    hard_p, hard_g = pred64 >= 0.5, gt64 >= 0.5
    union = np.count_nonzero(hard_p | hard_g)
    band = sky_line_band(gt64)
    return {
        "sad": float(err.sum() / 1000),
        "mse": float((err**2).mean()),
        "grad": gradient_error(pred64, gt64),
        "conn": connectivity_error(pred64, gt64),
        "inter": float(np.count_nonzero(hard_p & hard_g)),
        "union": float(union),
        "band_err": float(err[band].mean()) if band.any() else 0.0,
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means per composite; IoU pooled over the composites."""
    out = {key: float(np.mean([r[key] for r in rows])) for key in ("sad", "mse", "grad", "conn", "band_err")}
    out["iou"] = sum(r["inter"] for r in rows) / max(1.0, sum(r["union"] for r in rows))
    out["count"] = float(len(rows))
    return out


# --- command line ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", default=[], help="weights file (repeat to compare)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="1800x1200", help="WxH of each composite (>= 2 MP for the report)")
    parser.add_argument("--save", default=None, help="folder to write composites and true mattes to")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    parser.add_argument("--no-colour-too", action="store_true",
                        help="also score each weights file with the matte's colour model turned off")
    parser.add_argument("--refiner-too", action="store_true",
                        help="also score each weights file with the matte's learned refiner turned on")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    import torch

    from clnsod_core.masking.inference import predict_working_size
    from clnsod_core.masking.matte import MatteOptions, refine_matte
    from clnsod_core.runtime import tune_allocator
    from clnsod_core.weights.format import load_model

    tune_allocator()
    torch.set_num_threads(2)
    models = {w: load_model(Path(w)) for w in args.weights}
    variants = {w: [(w, MatteOptions())] for w in args.weights}
    if args.no_colour_too:
        for w in args.weights:
            variants[w].append((f"{w} (no colour model)", MatteOptions(colour_zone=0)))
    if args.refiner_too:
        for w in args.weights:
            variants[w].append((f"{w} (learned refiner)", MatteOptions(learned_refiner=True)))
    labels = [label for w in args.weights for label, _ in variants[w]]
    per: dict[str, dict[str, list[dict[str, float]]]] = {label: {} for label in labels}
    save = Path(args.save) if args.save else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    for index in range(args.count):
        comp = make_composite(index, args.seed, width, height)
        name = f"{index:04d}_{comp.kind}_{comp.lighting}"
        if save:
            Image.fromarray(comp.image).save(save / f"{name}.jpg", quality=95)
            Image.fromarray((comp.sky_alpha * 255 + 0.5).astype(np.uint8)).save(save / f"{name}_sky.png")
        for weights, model in models.items():
            small = predict_working_size(model, [comp.image], torch.device("cpu"))[0]
            for label, options in variants[weights]:
                matte = refine_matte(comp.image, small, options)
                per[label].setdefault(comp.kind, []).append(measures(matte, comp.sky_alpha))
                if save and label == weights:
                    Image.fromarray((matte * 255 + 0.5).astype(np.uint8)).save(save / f"{name}_pred_{Path(weights).stem}.png")
    if not models:
        print(f"wrote {args.count} composites to {save}")
        return
    report = {w: {kind: summarise(rows) for kind, rows in by_kind.items()} for w, by_kind in per.items()}
    for w in report:
        report[w]["all"] = summarise([r for rows in per[w].values() for r in rows])
    print(f"{args.count} composites at {width}x{height}, seed {args.seed}\n")
    print("| kind | weights | SAD | MSE | grad | conn | IoU | 8-px band error |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in [*KINDS, "all"]:
        for w in labels:
            m = report[w].get(kind)
            if m:
                print(f"| {kind} | {Path(w).name} | {m['sad']:.2f} | {m['mse']:.5f} | {m['grad']:.2f} | {m['conn']:.2f} | "
                      f"{m['iou']:.4f} | {m['band_err']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
