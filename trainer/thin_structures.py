"""Thin structures drawn across a training photo's sky, with their exact coverage as the label.

The skyseg labels are coarse polygons: a tree crown, a fence or a bridge truss is one solid
foreground blob, so the network learned that the sky stops at the first thing in front of it. This
look draws thin things over the photo's own sky at 4x4 supersampling (their box-filtered coverage
is exact): branching trees with or without leaves, wires hanging across the frame, lattices (fences,
trusses, with rails and posts; some spanning the frame with sky below them), masts with stays, and
stalks with plumes. Each takes a colour from the photo's own foreground, so it belongs to the scene's
light. The sky label becomes ``sky * (1 - coverage)``: the sky seen between branches, through a
fence and below a wire stays sky, and a wire thinner than a pixel is a soft value, not a gap.
Structures are also drawn across the land (wires in front of a facade or a mountain, a fence before
a building), so that a wire or a grid is never a cue that there is sky behind it.

Every draw comes from the generator passed in, so the trainer's seeding makes it reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .draws import chance, randint, uniform
from .sky_line import horizon_rows

SUPERSAMPLE = 4  # per axis: coverage exact to 1/16 of a pixel's area
MIN_SKY_SHARE = 0.08  # photos with less sky than this get their structures across the whole frame
ANYWHERE_SHARE = 0.4  # and so do this share of the others (land included); the rest rise from the sky line

Point = tuple[float, float]


class CoveragePen:
    """Draws filled shapes on a supersampled canvas; ``coverage`` box-filters it to the photo's grid.
    Coordinates and widths are in the photo's pixels."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.canvas = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
        self.draw = ImageDraw.Draw(self.canvas)

    def line(self, points: list[Point], width: float) -> None:
        """A polyline ``width`` px wide (sub-pixel widths give partial coverage)."""
        scaled = [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points]
        w = max(1, round(width * SUPERSAMPLE))
        self.draw.line(scaled, fill=255, width=w, joint="curve")

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> None:
        s = SUPERSAMPLE
        self.draw.ellipse(((cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s), fill=255)

    def coverage(self) -> torch.Tensor:
        """(1, H, W) float in [0, 1]: the share of each pixel the shapes cover."""
        full = torch.frombuffer(bytearray(self.canvas.tobytes()), dtype=torch.uint8)
        full = full.view(1, 1, self.height * SUPERSAMPLE, self.width * SUPERSAMPLE).float() / 255
        return F.avg_pool2d(full, SUPERSAMPLE)[0]


def _ground_at(ground: torch.Tensor, x: float) -> float:
    """The ground row under column ``x`` (clamped into the frame)."""
    return float(ground[min(max(int(x), 0), len(ground) - 1)])


def _bezier(p0: Point, p1: Point, p2: Point, n: int = 12) -> list[Point]:
    return [((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t**2 * p2[0],
             (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t**2 * p2[1]) for t in (i / n for i in range(n + 1))]


def _hanging(a: Point, b: Point, sag: float, n: int = 32) -> list[Point]:
    """A wire from a to b sagging by ``sag`` px in the middle (a parabola is close to a catenary)."""
    return [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t + 4 * sag * t * (1 - t)) for t in (i / n for i in range(n + 1))]


def _branch(pen: CoveragePen, gen: torch.Generator, x: float, y: float, angle: float, length: float,
            width: float, depth: int, leaves: bool) -> None:
    """A branch that splits into two or three thinner ones until its twigs are a fraction of a pixel."""
    bend = uniform(gen, -0.35, 0.35)
    end = (x + length * math.cos(angle), y - length * math.sin(angle))
    middle = (x + 0.5 * length * math.cos(angle + bend), y - 0.5 * length * math.sin(angle + bend))
    pen.line(_bezier((x, y), middle, end), width)
    if depth == 0 or width < 0.12:
        if leaves:
            for _ in range(randint(gen, 2, 5)):
                r = uniform(gen, 0.6, 2.5)
                pen.ellipse(end[0] + uniform(gen, -3, 3), end[1] + uniform(gen, -3, 3), r, r * uniform(gen, 0.5, 1.0))
        return
    for _ in range(randint(gen, 2, 3)):
        _branch(pen, gen, end[0], end[1], angle + uniform(gen, -0.8, 0.8), length * uniform(gen, 0.55, 0.8),
                width * uniform(gen, 0.5, 0.75), depth - 1, leaves)


def draw_tree(pen: CoveragePen, gen: torch.Generator, ground: torch.Tensor) -> None:
    x = uniform(gen, 0, pen.width)
    base = _ground_at(ground, x) + uniform(gen, 0, 0.1 * pen.height)
    length = uniform(gen, 0.12, 0.35) * pen.height
    _branch(pen, gen, x, base, math.pi / 2 + uniform(gen, -0.2, 0.2), length, uniform(gen, 1.0, 5.0),
            randint(gen, 4, 7), leaves=chance(gen, 0.5))


def draw_wires(pen: CoveragePen, gen: torch.Generator, ground: torch.Tensor) -> None:
    top = float(ground.min())
    poles = chance(gen, 0.6)
    for _ in range(randint(gen, 1, 5)):
        y0 = uniform(gen, 0.05, 0.95) * top
        y1 = min(top, max(0.0, y0 + uniform(gen, -0.15, 0.15) * pen.height))
        a, b = (uniform(gen, -0.2, 0.3) * pen.width, y0), (uniform(gen, 0.7, 1.2) * pen.width, y1)
        pen.line(_hanging(a, b, uniform(gen, 0, 0.15) * pen.height), uniform(gen, 0.1, 1.2))
        if poles:
            for end in (a, b):
                if 0 <= end[0] < pen.width:
                    foot = _ground_at(ground, end[0])
                    pen.line([(end[0], end[1] - 2), (end[0], foot)], uniform(gen, 0.6, 2.5))


def draw_lattice(pen: CoveragePen, gen: torch.Generator, ground: torch.Tensor) -> None:
    """A fence, railing or truss: a diagonal or square grid between rails, with posts; either
    standing on the ground or spanning the frame high up (a bridge deck, a gantry) with sky below."""
    top = float(ground.min())
    if top < 12:
        return
    if chance(gen, 0.6):  # standing on the ground
        y0, y1 = uniform(gen, 0.3, 0.95) * top, float(ground.max())
    else:  # spanning, with sky below it
        y0 = uniform(gen, 0.05, 0.6) * top
        y1 = y0 + uniform(gen, 0.04, 0.2) * pen.height
    x0, x1 = (0.0, float(pen.width)) if chance(gen, 0.7) else sorted((uniform(gen, 0, pen.width), uniform(gen, 0, pen.width)))
    spacing, width = uniform(gen, 1.5, 10.0), uniform(gen, 0.08, 0.6)
    diagonal = chance(gen, 0.6)
    span = y1 - y0
    position = x0 - span if diagonal else x0
    while position < x1 + span:
        if diagonal:
            pen.line([(position, y0), (position + span, y1)], width)
            pen.line([(position + span, y0), (position, y1)], width)
        else:
            pen.line([(position, y0), (position, y1)], width)
        position += spacing
    if not diagonal:
        row = y0
        while row <= y1:
            pen.line([(x0, row), (x1, row)], width)
            row += spacing
    rail = uniform(gen, 0.4, 2.5)
    pen.line([(x0, y0), (x1, y0)], rail)
    pen.line([(x0, y1), (x1, y1)], rail)
    post = x0
    while post <= x1:
        pen.line([(post, y0 - uniform(gen, 0, 6)), (post, y1)], rail)
        post += uniform(gen, 0.1, 0.35) * pen.width


def draw_mast(pen: CoveragePen, gen: torch.Generator, ground: torch.Tensor) -> None:
    """A mast, pylon or antenna with stays fanning down to the ground and a few spars."""
    x = uniform(gen, 0.05, 0.95) * pen.width
    foot = _ground_at(ground, x)
    tip = uniform(gen, 0.0, 0.5) * foot
    pen.line([(x, foot), (x, tip)], uniform(gen, 0.4, 3.0))
    for _ in range(randint(gen, 2, 8)):
        y = uniform(gen, tip, tip + 0.6 * (foot - tip))
        side = uniform(gen, -0.5, 0.5) * pen.width
        end = x + side
        pen.line([(x, y), (end, _ground_at(ground, end))], uniform(gen, 0.08, 0.5))
    for _ in range(randint(gen, 0, 3)):
        y, half = uniform(gen, tip, foot), uniform(gen, 2, 25)
        pen.line([(x - half, y), (x + half, y)], uniform(gen, 0.2, 1.2))


def draw_stalks(pen: CoveragePen, gen: torch.Generator, ground: torch.Tensor) -> None:
    """Reeds or tall grass: many thin, slightly curved stalks rising from the ground, some with plumes."""
    lean = uniform(gen, -0.3, 0.3)
    x_from, x_to = sorted((uniform(gen, 0, pen.width), uniform(gen, 0, pen.width)))
    x_from, x_to = (0.0, float(pen.width)) if chance(gen, 0.5) else (x_from, x_to)
    height = uniform(gen, 0.08, 0.4) * pen.height
    for _ in range(randint(gen, 15, 120)):
        x = uniform(gen, x_from, x_to)
        foot = _ground_at(ground, x) + uniform(gen, 0, 0.05 * pen.height)
        h = height * uniform(gen, 0.5, 1.2)
        angle = math.pi / 2 + lean + uniform(gen, -0.25, 0.25)
        tip = (x + h * math.cos(angle), foot - h * math.sin(angle))
        middle = (x + 0.5 * h * math.cos(angle) + uniform(gen, -3, 3), foot - 0.5 * h * math.sin(angle))
        pen.line(_bezier((x, foot), middle, tip), uniform(gen, 0.1, 0.7))
        if chance(gen, 0.4):
            for _ in range(randint(gen, 3, 8)):
                a = angle + uniform(gen, -1.2, 1.2)
                r = uniform(gen, 1.0, 4.0)
                pen.line([tip, (tip[0] + r * math.cos(a), tip[1] - r * math.sin(a))], uniform(gen, 0.08, 0.3))


DRAWERS: tuple[Callable[[CoveragePen, torch.Generator, torch.Tensor], None], ...] = (
    draw_tree, draw_wires, draw_lattice, draw_mast, draw_stalks,
)


def _structure_colour(image: torch.Tensor, sky: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(3, 1, 1): a colour of the photo's own foreground (a random sure-foreground pixel), often darker
    (a silhouette against the sky); mid grey when the crop holds no foreground."""
    fg = torch.nonzero(sky[0] < 0.1)
    if len(fg) == 0:
        colour = torch.full((3,), 0.4)
    else:
        y, x = fg[int(torch.randint(0, len(fg), (), generator=gen))].tolist()
        colour = image[:, y, x]
    return (colour * uniform(gen, 0.25, 1.1)).clamp(0, 1).view(3, 1, 1)


def thin_structure_look(
    image: torch.Tensor, sky: torch.Tensor, void: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One to three kinds of thin structure across the sky of ``image`` (3, H, W) (or across the
    whole frame, land included), its sky label (1, H, W) lowered by their exact coverage; void
    pixels stay void."""
    h, w = image.shape[1:]
    line = horizon_rows(sky)
    ground = None if line is None else line.float()
    if ground is None or float(sky.mean()) < MIN_SKY_SHARE or chance(gen, ANYWHERE_SHARE):
        ground = torch.full((w,), float(h))  # as if the ground were the frame's bottom edge
    for _ in range(randint(gen, 1, 3)):
        pen = CoveragePen(h, w)
        DRAWERS[randint(gen, 0, len(DRAWERS) - 1)](pen, gen, ground)
        coverage = pen.coverage()
        shade = 1 + 0.15 * torch.randn((1, h, w), generator=gen)  # bark, rust, dirt
        colour = (_structure_colour(image, sky, gen) * shade).clamp(0, 1)
        image = torch.lerp(image, colour, coverage)
        sky = sky * (1 - coverage)
    return image, sky, void
