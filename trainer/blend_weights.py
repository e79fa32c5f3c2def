"""Blend two CLN-SOD weights files of the same architecture: (1 - alpha) * START + alpha * TUNED.

Weight-space ensembling of a model and its fine-tuned self (WiSE-FT, Wortsman et al. 2022) keeps
most of what fine-tuning taught (here: interiors, windows, night) while giving back much of what
it cost on the original data. Fine-tunes made with ``--freeze-norm`` share the start's BatchNorm
statistics, so the blend is exact for them. Integer buffers (step counters) are taken from TUNED.

    python -m trainer.blend_weights START.pt TUNED.pt --alpha 0.5 -o BLEND.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from clnsod_core.weights.format import WeightsError, load_model, read_weights, save_weights


def blend_state(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    if start.keys() != tuned.keys():
        raise WeightsError("the two weights files have different layers; only the same architecture can be blended")
    out = {}
    for name, value in tuned.items():
        base = start[name]
        if base.shape != value.shape:
            raise WeightsError(f"{name}: shapes differ ({tuple(base.shape)} vs {tuple(value.shape)})")
        if value.is_floating_point():
            out[name] = (base.float() * (1 - alpha) + value.float() * alpha).to(value.dtype)
        else:
            out[name] = value.clone()
    return out


def blend_files(start: Path, tuned: Path, alpha: float, out: Path) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    start_model, tuned_model = load_model(start), load_model(tuned)
    if start_model.config != tuned_model.config:
        raise WeightsError(f"{start} and {tuned} have different model configurations")
    tuned_model.load_state_dict(blend_state(start_model.state_dict(), tuned_model.state_dict(), alpha))
    meta = {"blend": {"start": str(start), "tuned": str(tuned), "alpha": alpha},
            "tuned_meta": read_weights(tuned).get("meta", {})}
    save_weights(tuned_model, out, meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("start", type=Path)
    parser.add_argument("tuned", type=Path)
    parser.add_argument("--alpha", type=float, required=True, help="share of TUNED (0 = START, 1 = TUNED)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        blend_files(args.start, args.tuned, args.alpha, args.out)
    except (WeightsError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
