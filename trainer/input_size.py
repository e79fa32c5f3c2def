"""Move a trained CLN-SOD network to another working resolution.

Everything in the network is convolutional except the context-aware map's 1x1 conv, which has one
output channel (and one BatchNorm channel) per stride-16 feature position: channel j answers "does
this position belong with position j". Those channels form a grid over the image, so at another
input size they are resampled as a grid (bilinear, corners aligned, like the image itself); every
other weight is kept. The result works at once (the skyseg val IoU of v5 moved from 320 to 384 px
went up on every dataset before any training) and is the start for fine-tuning at the new size.

    python -m trainer.input_size IN.pt 384 -o OUT.pt
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from clnsod_core.network.model import CLNSOD
from clnsod_core.weights.format import (
    WeightsError,
    load_model,
    read_weights,
    save_weights,
)

CONTEXT_MAP_PREFIX = "context.to_map."


def resample_positions(values: torch.Tensor, side: int, new_side: int) -> torch.Tensor:
    """(side², ...) per-position values -> (new_side², ...), resampled over the position grid."""
    rest = values.shape[1:]
    grid = values.float().reshape(side, side, -1).permute(2, 0, 1).unsqueeze(0)
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bilinear", align_corners=True)
    return grid[0].permute(1, 2, 0).reshape(new_side * new_side, *rest).to(values.dtype)


def with_input_size(model: CLNSOD, input_size: int) -> CLNSOD:
    """A copy of ``model`` working at ``input_size`` (square, a multiple of 32)."""
    config = replace(model.config, input_size=input_size)  # validates the size
    resized = CLNSOD(config)
    side, new_side = model.config.context_side, config.context_side
    state = {}
    for name, value in model.state_dict().items():
        per_position = name.startswith(CONTEXT_MAP_PREFIX) and value.dim() >= 1 and value.shape[0] == side * side
        state[name] = resample_positions(value, side, new_side) if per_position else value
    resized.load_state_dict(state)
    return resized.eval()


def convert_file(src: Path, input_size: int, out: Path) -> None:
    model = load_model(src)
    meta = {"input_size_from": {"weights": str(src), "input_size": model.config.input_size},
            "source_meta": read_weights(src).get("meta", {})}
    save_weights(with_input_size(model, input_size), out, meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("input_size", type=int, help="new working size in px (square, a multiple of 32)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        convert_file(args.weights, args.input_size, args.out)
    except (WeightsError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
