"""Training the matte refiner (``clnsod_core/masking/refiner.py``) against a network's own answers.

Each example is a training photo augmented as ``clnsod train`` does (thin structures drawn across
its sky more often: they are what the refiner is for) at a random guide size between 512 and 1024
px; the network predicts at its working size, the colour model refines that at the guide's size,
exactly as the matte does at inference, and crops centred in the open zone keep the guide's
colours, both probabilities and the soft target. The refiner then learns, on those crops only, to
move the colour model's answer toward the target inside the open zone (BCE on soft targets + L1;
void pixels and settled pixels carry no loss). Examples are made once and kept in RAM (the network
and the colour model cost far more than a refiner step).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from clnsod_core.masking.inference import predict_working_size
from clnsod_core.masking.matte import MatteOptions, guide_probabilities, open_zone
from clnsod_core.masking.refiner import MatteRefiner, save_refiner
from clnsod_core.network.model import CLNSOD

from .augment import AugmentConfig, augment
from .data import Sample
from .draws import randint

log = logging.getLogger("clnsod.refiner")


@dataclass(frozen=True)
class RefinerConfig:
    examples: int = 2400  # augmented photos; each gives ``crops_per_example`` crops
    crops_per_example: int = 2
    crop: int = 256
    min_side: int = 512  # guide sizes drawn per example (multiples of 32)
    max_side: int = 1024
    steps: int = 2600
    batch: int = 16
    lr: float = 3e-3
    width: int = 16
    seed: int = 0
    thin_structure_prob: float = 0.6


@dataclass
class Crops:
    colours: torch.Tensor  # (N, 3, C, C) uint8
    maps: torch.Tensor  # (N, 4, C, C) float16: network p, colour-model p, target, weight (0 void/settled, 1 open)


def make_crops(model: CLNSOD, samples: list[Sample], cfg: RefinerConfig) -> Crops:
    """``cfg.examples`` augmented photos (drawn with replacement, seeded) -> crops in their open zones
    (the matte's default colour zone and filter radius)."""
    options = MatteOptions()
    aug = replace(AugmentConfig(), thin_structure_prob=cfg.thin_structure_prob, window_prob=0.0)
    colours_out, maps_out = [], []
    started = time.monotonic()
    for k in range(cfg.examples):
        gen = torch.Generator()
        gen.manual_seed(cfg.seed * 1_000_003 + k)
        sample = samples[randint(gen, 0, len(samples) - 1)]
        side = 32 * randint(gen, cfg.min_side // 32, cfg.max_side // 32)
        image, target, void = augment(sample, side, aug, gen, None)
        guide_u8 = (image * 255 + 0.5).to(torch.uint8)  # (3, side, side), what inference reads
        prob = predict_working_size(model, [guide_u8.permute(1, 2, 0).numpy()], torch.device("cpu"))[0]
        # as edge_aware_model makes them, from the 8-bit guide
        p_network, p_colour = guide_probabilities(guide_u8[None].float() / 255.0, prob, options)
        zone = open_zone(p_colour, max(1, round(options.radius * side)))[0, 0]
        centres = torch.nonzero(zone)
        if len(centres) == 0:
            continue
        weight = (zone & ~void[0]).float()[None, None]
        maps = torch.cat([p_network, p_colour, target[None], weight], dim=1)[0]
        half = cfg.crop // 2
        for _ in range(cfg.crops_per_example):
            cy, cx = (int(v) for v in centres[randint(gen, 0, len(centres) - 1)])
            y0, x0 = min(max(0, cy - half), side - cfg.crop), min(max(0, cx - half), side - cfg.crop)
            window = (slice(None), slice(y0, y0 + cfg.crop), slice(x0, x0 + cfg.crop))
            colours_out.append(guide_u8[window].clone())
            maps_out.append(maps[window].half())
        if (k + 1) % 200 == 0:
            log.info("examples %d/%d (%.0f s)", k + 1, cfg.examples, time.monotonic() - started)
    if not colours_out:
        raise ValueError(f"none of {cfg.examples} examples left the matte anything open to learn from "
                         "(photos without sky, or skies the network and colour model already settle)")
    return Crops(torch.stack(colours_out), torch.stack(maps_out))


def refiner_loss(refiner: MatteRefiner, colours: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Soft-target BCE + L1 over the open, labelled pixels of a batch of crops."""
    maps = maps.float()
    p_network, p_colour, target, weight = maps[:, 0:1], maps[:, 1:2], maps[:, 2:3], maps[:, 3:4]
    pred = refiner(colours.float() / 255.0, p_network, p_colour).clamp(1e-5, 1 - 1e-5)
    per_pixel = F.binary_cross_entropy(pred, target, reduction="none") + (pred - target).abs()
    return (per_pixel * weight).sum() / weight.sum().clamp(min=1.0)


def train_refiner(crops: Crops, cfg: RefinerConfig, out: Path) -> MatteRefiner:
    """AdamW with cosine decay over ``cfg.steps`` batches of random crops (flipped left-right at
    random); the fp16 refiner is written to ``out`` at the end."""
    torch.manual_seed(cfg.seed)
    refiner = MatteRefiner(cfg.width)
    optimiser = torch.optim.AdamW(refiner.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps)))
    gen = torch.Generator()
    gen.manual_seed(cfg.seed)
    count = crops.colours.shape[0]
    started, running = time.monotonic(), 0.0
    for step in range(cfg.steps):
        index = torch.randint(0, count, (cfg.batch,), generator=gen)
        colours, maps = crops.colours[index], crops.maps[index]
        if bool(torch.rand((), generator=gen) < 0.5):
            colours, maps = colours.flip(-1), maps.flip(-1)
        loss = refiner_loss(refiner, colours, maps)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        value = float(loss.detach())
        running = 0.98 * running + 0.02 * value if step else value
        if (step + 1) % 100 == 0:
            log.info("step %d/%d loss %.4f (%.0f s)", step + 1, cfg.steps, running, time.monotonic() - started)
    save_refiner(refiner, out, {"steps": cfg.steps, "examples": cfg.examples, "seed": cfg.seed})
    return refiner.eval()


def main(argv: list[str] | None = None) -> None:
    """``python -m trainer.refiner_train --data FOLDER --weights NET.pt --out REFINER.pt``"""
    import argparse

    from clnsod_core.runtime import tune_allocator
    from clnsod_core.weights.format import load_model
    from clnsod_core.weights.registry import resolve_weights

    from .data import index_data_dir, load_samples

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True,
                        help="training folder with sky labels (skyseg layout or images/ + masks/); repeatable")
    parser.add_argument("--weights", default=None, help="the network whose answers are refined (default: the embedded one)")
    parser.add_argument("--out", required=True, help="refiner file to write (fp16)")
    parser.add_argument("--examples", type=int, default=RefinerConfig.examples)
    parser.add_argument("--steps", type=int, default=RefinerConfig.steps)
    parser.add_argument("--batch-size", type=int, default=RefinerConfig.batch)
    parser.add_argument("--seed", type=int, default=RefinerConfig.seed)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if min(args.examples, args.steps, args.batch_size) < 1:
        parser.error("--examples, --steps and --batch-size must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(resolve_weights(args.weights))
    refs = [ref for folder in args.data for ref in index_data_dir(Path(folder), "train") if ref.mask is not None]
    samples = load_samples(refs, max_short_side=RefinerConfig.max_side)
    cfg = RefinerConfig(examples=args.examples, steps=args.steps, batch=args.batch_size, seed=args.seed)
    log.info("%d training photos; making %d examples", len(samples), cfg.examples)
    train_refiner(make_crops(model, samples, cfg), cfg, Path(args.out))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
