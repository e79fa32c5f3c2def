"""A light learned refinement of the sky probability at the matte guide's resolution.

The network decides at 384 x 384 and its decoder ends at stride 4, so a cable, a reed or the sky
between the leaves of a crown comes out as a grey smear a few working pixels wide. Given the true
sky share at the working size instead, the matte reaches IoU 0.98-0.99 on the fine-structure
benchmark: the loss is in the network's blur, not in the matte. This small encoder-decoder (47 k
weights at width 16) reads the guide's colours (long side 1024) next to the network's probability
and the colour model's answer, and predicts a correction of the latter's logit, so it starts from
what the colour model says and learns where the photo's pixels say otherwise.

It only runs where the answer is open (``matte.open_zone``): a pixel whose whole window the colour
model has settled (within ``matte.CONFIDENT`` of 0 or 1) keeps that answer, so a white ceiling the
network calls foreground everywhere can never become sky here, and the work is bounded by the box
around the sky line. Where the colour model clearly overruled the network (a cut post, an opened
gap), that decision stands.
Trained by ``python -m trainer.refiner_train`` on the training photos' refined labels with thin
structures drawn across their skies, against the network's own answers.

Opt-in (``MatteOptions(learned_refiner=True)``), measured against the matte without it (MODEL_CARD.md):
on the fine-structure composites IoU 0.943 -> 0.952, MSE -11 %, every kind better; on real photos it
changes little and calls slightly more foreground sky (no-sky outdoor photos 0.60 -> 0.77 %, val IoU
-0.001 to -0.008 against the polygon labels), so it is not the default yet.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clnsod_core.files import write_atomic

FORMAT = "clnsod-refiner-1"
EMBEDDED_REFINER = Path(__file__).resolve().parents[1] / "weights" / "matte-refiner-v1.pt"
MARGIN = 48  # guide pixels of context around the open zone (more than half the refiner's receptive field)
DECIDED = 0.25  # the colour model moved the network by at least this: its cut or opening stands


def _conv(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation)


class MatteRefiner(nn.Module):
    """Full resolution -> 1/2 -> 1/4 (two dilated convolutions: about 70 px of context) and back,
    with skips; the output is a logit correction of the colour model's answer (zero at initialisation)
    that leaves the colour model's clear decisions standing."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.width = width
        self.enc1 = _conv(5, width)
        self.enc2 = _conv(width, 2 * width, stride=2)
        self.enc4 = _conv(2 * width, 2 * width, stride=2)
        self.mid_a = _conv(2 * width, 2 * width, dilation=2)
        self.mid_b = _conv(2 * width, 2 * width, dilation=4)
        self.dec2 = _conv(4 * width, width)
        self.dec1 = _conv(2 * width, width)
        self.out = _conv(width, 1, kernel=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, colours: torch.Tensor, p_network: torch.Tensor, p_colour: torch.Tensor) -> torch.Tensor:
        """colours (B, 3, h, w) in [0, 1]; the two probabilities (B, 1, h, w) -> refined probability."""
        x = torch.cat([2 * colours - 1, 2 * p_network - 1, 2 * p_colour - 1], dim=1)
        full = F.relu(self.enc1(x))
        half = F.relu(self.enc2(full))
        quarter = F.relu(self.enc4(half))
        quarter = F.relu(self.mid_b(F.relu(self.mid_a(quarter))))
        up = F.interpolate(quarter, size=half.shape[2:], mode="bilinear", align_corners=False)
        half = F.relu(self.dec2(torch.cat([up, half], dim=1)))
        up = F.interpolate(half, size=full.shape[2:], mode="bilinear", align_corners=False)
        full = F.relu(self.dec1(torch.cat([up, full], dim=1)))
        prior = torch.logit(p_colour.clamp(1e-4, 1 - 1e-4))
        return keep_colour_decisions(torch.sigmoid(prior + self.out(full)), p_network, p_colour)


def keep_colour_decisions(refined: torch.Tensor, p_network: torch.Tensor, p_colour: torch.Tensor) -> torch.Tensor:
    """Where the colour model moved the network's answer by ``DECIDED`` or more, its decision stands:
    a cut (a dark post or cable the network missed) is never undone, an opening never closed.
    Trained without this, the refiner learnt from the coarse labels' poles and wires drawn as sky
    to trust the network over a clear cut, and reopened dark posts against the sky."""
    decided = (p_colour - p_network).abs() >= DECIDED
    refined = torch.where(decided & (p_colour < p_network), torch.minimum(refined, p_colour), refined)
    return torch.where(decided & (p_colour > p_network), torch.maximum(refined, p_colour), refined)


def refine_probability(refiner: MatteRefiner, colours: torch.Tensor, p_network: torch.Tensor,
                       p_colour: torch.Tensor, zone: torch.Tensor) -> torch.Tensor:
    """``p_colour`` corrected by ``refiner`` inside ``zone`` (bool, ``matte.open_zone``), computed on the
    box around that zone plus ``MARGIN``; (1, 1, h, w) tensors."""
    rows, columns = torch.nonzero(zone[0, 0].any(dim=1)), torch.nonzero(zone[0, 0].any(dim=0))
    if len(rows) == 0:
        return p_colour
    h, w = p_colour.shape[2:]
    y0, y1 = max(0, int(rows[0]) - MARGIN), min(h, int(rows[-1]) + 1 + MARGIN)
    x0, x1 = max(0, int(columns[0]) - MARGIN), min(w, int(columns[-1]) + 1 + MARGIN)
    box = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
    with torch.inference_mode():
        refined = refiner(*(t[box].contiguous(memory_format=torch.channels_last) for t in (colours, p_network, p_colour)))
    out = p_colour.clone()
    out[box] = torch.where(zone[box], refined.contiguous(), p_colour[box])
    return out


def save_refiner(refiner: MatteRefiner, path: Path, meta: dict[str, Any] | None = None) -> None:
    """fp16 weights, written atomically; read back with ``load_refiner`` (``weights_only=True``)."""
    state = {k: v.half().contiguous() for k, v in refiner.state_dict().items()}
    data = {"format": FORMAT, "width": refiner.width, "state_dict": state, "meta": meta or {}}
    write_atomic(path, lambda handle: torch.save(data, handle))


def load_refiner(path: Path) -> MatteRefiner:
    """A refiner file (fp32, eval mode, channels-last); a clear ValueError for anything else."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"missing format tag {FORMAT!r}")
        refiner = MatteRefiner(int(data["width"]))
        refiner.load_state_dict({k: v.float() for k, v in data["state_dict"].items()})
    except FileNotFoundError:
        raise ValueError(f"{path}: matte refiner file not found") from None
    except Exception as exc:  # unpickling and shape errors have many types; all mean "refuse"
        raise ValueError(f"{path}: not a matte refiner file ({type(exc).__name__}: {exc})") from exc
    return refiner.eval().to(memory_format=torch.channels_last)


@functools.cache
def embedded_refiner() -> MatteRefiner:
    """The refiner shipped inside the package (loaded once per process)."""
    return load_refiner(EMBEDDED_REFINER)
