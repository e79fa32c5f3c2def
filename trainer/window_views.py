"""Windows for photos without sky: real outdoor views, or blown-out glass, in a frame.

Training on interiors alone teaches "indoors means no sky", and then the sky seen through a
window is lost. This augmentation cuts a window into an interior (already at working size):
either a real outdoor photo's view (its sky labelled sky, its land foreground, exposed brighter
as a room-exposed shot makes it; sky that clips to white becomes void) or blown-out white glass
(labelled foreground: with no sky colour left there is no sky to replace), with a frame and
mullions labelled foreground.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .draws import chance, randint, uniform

CLIPPED = 0.97  # a view pixel this bright in every channel holds no sky colour any more


def _view_crop(
    view_image: torch.Tensor, view_mask: torch.Tensor, view_void: torch.Tensor, wh: int, ww: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A piece of the outdoor photo holding its upper part (sky and sky line), resized to wh x ww."""
    _, h, w = view_image.shape
    ch = max(8, round(h * uniform(gen, 0.45, 1.0)))
    cw = max(8, round(w * uniform(gen, 0.45, 1.0)))
    top = randint(gen, 0, min(h - ch, round(0.25 * h)))
    left = randint(gen, 0, w - cw)
    box = (slice(None), slice(top, top + ch), slice(left, left + cw))

    def resize(x: torch.Tensor, mode: str) -> torch.Tensor:
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        return F.interpolate(x[box][None].float(), size=(wh, ww), mode=mode, **kwargs)[0]

    return resize(view_image, "bilinear"), resize(view_mask, "bilinear"), resize(view_void, "nearest") > 0.5


def _frame_colour(gen: torch.Generator) -> torch.Tensor:
    kind = float(torch.rand((), generator=gen))
    if kind < 0.5:  # painted white
        base = torch.full((3,), uniform(gen, 0.78, 0.97))
    elif kind < 0.75:  # dark metal / vinyl
        base = torch.full((3,), uniform(gen, 0.08, 0.3))
    else:  # wood
        base = torch.tensor([0.55, 0.38, 0.24]) * uniform(gen, 0.6, 1.3)
    return base.clamp(0, 1).view(3, 1, 1)


def paste_window(
    image: torch.Tensor,
    mask: torch.Tensor,
    void: torch.Tensor,
    view: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut one window into ``image`` (3,S,S in [0,1]); ``mask`` (1,S,S) and ``void`` (1,S,S bool)
    are updated to match. ``view`` is an outdoor photo (image 3,h,w in [0,1], soft sky mask 1,h,w,
    void 1,h,w) seen through the glass; without one the glass is blown out."""
    image, mask, void = image.clone(), mask.clone(), void.clone()
    _, s, _ = image.shape
    wh = randint(gen, round(0.25 * s), round(0.7 * s))
    ww = randint(gen, round(0.18 * s), round(0.6 * s))
    top = randint(gen, 0, round(0.45 * s))
    top = min(top, s - wh)
    left = randint(gen, 0, s - ww)
    rows, cols = slice(top, top + wh), slice(left, left + ww)
    if view is not None:
        pane, pane_sky, pane_void = _view_crop(*view, wh, ww, gen)
        # Exposed for the room, a daylight view is brighter than the room around it (which is also what
        # tells a window from a framed picture on the wall, lit like the wall).
        room = float(image[:, rows, cols].mean())
        target = min(room * uniform(gen, 1.2, 1.8), uniform(gen, 0.55, 0.75))
        gain = min(2.8, max(1.0, target / max(1e-3, float(pane.mean()))))
        pane = (pane * gain).clamp(0, 1)
        glare = uniform(gen, 0.0, 0.08)  # reflections of the room on the glass
        pane = pane * (1 - glare) + image[:, rows, cols].mean(dim=(1, 2), keepdim=True) * glare
        clipped = (pane > CLIPPED).all(dim=0, keepdim=True) & (pane_sky > 0.5)
        pane_void = pane_void | clipped
    else:
        level = uniform(gen, 0.92, 1.0)
        ramp = torch.linspace(0, uniform(gen, -0.06, 0.0), wh).view(1, wh, 1)
        pane = (level + ramp + torch.randn((3, wh, ww), generator=gen) * 0.004).clamp(0, 1).expand(3, wh, ww)
        pane_sky = torch.zeros(1, wh, ww)
        pane_void = torch.zeros(1, wh, ww, dtype=torch.bool)
    image[:, rows, cols] = pane
    mask[:, rows, cols] = pane_sky
    void[:, rows, cols] = pane_void
    # Frame and mullions: foreground, never void.
    bar = max(1, round(min(wh, ww) * uniform(gen, 0.02, 0.07)))
    colour = _frame_colour(gen)
    frame = torch.zeros(1, wh, ww, dtype=torch.bool)
    frame[:, :bar], frame[:, -bar:], frame[:, :, :bar], frame[:, :, -bar:] = True, True, True, True
    if chance(gen, 0.5):
        mid = ww // 2
        frame[:, :, max(0, mid - bar // 2) : mid + (bar + 1) // 2] = True
    if chance(gen, 0.3):
        mid = wh // 2
        frame[:, max(0, mid - bar // 2) : mid + (bar + 1) // 2] = True
    region = image[:, rows, cols]
    image[:, rows, cols] = torch.where(frame, colour.expand_as(region), region)
    mask[:, rows, cols] = torch.where(frame, torch.zeros_like(mask[:, rows, cols]), mask[:, rows, cols])
    void[:, rows, cols] = void[:, rows, cols] & ~frame
    return image, mask, void
