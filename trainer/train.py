"""Training loop for CLN-SOD: AdamW, warm-up + cosine, validation, atomic resumable checkpoints.

Runs as one process or under ``torchrun`` (DDP: gloo on CPU, nccl on CUDA, one GPU per process).
Sample order is a permutation seeded by (seed, epoch) and each sample's augmentation generator is
seeded by (seed, epoch, step, rank, slot), so ``--resume`` replays exactly what an uninterrupted
run does.

``train()`` is a short loop over ``set_up``, ``train_step``, ``run_validation``,
``save_checkpoint`` and ``finish``. It prints nothing: it writes OUT/train.log and
OUT/metrics.jsonl, and reports progress as ``TrainEvent``s to an ``on_event`` callback, which the
``clnsod train`` command renders and other callers may ignore.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from clnsod_core.files import remove_stale_parts
from clnsod_core.masking.inference import predict_working_size, upsample_probability
from clnsod_core.masking.metrics import MetricAccumulator
from clnsod_core.network.backbones import get_backbone
from clnsod_core.network.config import ModelConfig
from clnsod_core.network.losses import anchor_loss, clnsod_loss
from clnsod_core.network.model import CLNSOD
from clnsod_core.runtime import resolve_device
from clnsod_core.weights.format import WeightsError, load_model, save_torch, save_weights

from .augment import AugmentConfig, augment, pure_sky_band
from .data import DatasetError, Sample, SampleRef, index_data_dir, index_no_sky, load_samples, read_exclusion_list
from .input_size import with_input_size

log = logging.getLogger("clnsod.train")
CHECKPOINT_NAME = "last.pt"
LOG_NAME = "train.log"
METRICS_NAME = "metrics.jsonl"
WEIGHTS_NAME = "weights.pt"

Metrics = dict[str, dict[str, float]]  # dataset name -> IoU, MAE, maxF, ... (see ``validate``)
EventKind = Literal["loaded", "step", "validation", "checkpoint", "done"]


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    no_sky: list[str] = field(default_factory=list)  # folders of photos without sky (all-foreground targets)
    exclude: list[str] = field(default_factory=list)  # lists of file names to leave out of no_sky
    epochs: int = 6
    batch_size: int = 8
    lr: float = 1e-3
    backbone_lr_scale: float = 0.4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    min_lr_ratio: float = 0.01
    affinity_weight: float = 1.0
    global_weight: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 20
    seed: int = 0
    threads: int = 0  # 0: leave torch's default
    amp: bool = True  # fp16 autocast on CUDA; bf16 on CPUs with native bf16 (see cpu_has_native_bf16); never on MPS
    imagenet_init: bool = True
    init_weights: str | None = None  # fine-tune from a CLN-SOD weights file
    anchor_weights: str | None = None  # keep close to this network where it agrees with the label (see anchor_loss)
    anchor_weight: float = 1.0  # the anchor term's weight in the total loss (used with anchor_weights)
    device: str = "auto"  # one of clnsod_core.options.DEVICES
    max_steps: int | None = None  # stop early (tests, smoke runs); schedule still spans all epochs
    validate: bool = True
    freeze_norm: bool = False  # keep BatchNorm statistics of the start weights (fine-tuning on new data)
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    augment: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainEvent:
    """One piece of progress, handed to ``train``'s ``on_event`` (by the main process only under DDP),
    so that the caller decides how to show it and ``train`` itself never prints.

    ``loaded``: set-up is done, ``step`` is where training starts (0, or the resumed step);
    ``step``: one optimiser step is done, ``loss`` is its total loss; ``validation``: ``metrics``
    of the epoch that just ended; ``checkpoint``: OUT/last.pt was written; ``done``: OUT/weights.pt
    was written, ``metrics`` are the last validation's (empty without validation).
    """

    kind: EventKind
    step: int  # optimiser steps done so far
    total_steps: int  # the step this run stops at: the schedule's length, or --max-steps if smaller
    epoch: int  # 1-based epoch of the latest step (1 before the first)
    epochs: int
    loss: float | None = None
    metrics: Metrics | None = None
    message: str = ""  # the line(s) written to train.log for this event, if any


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainingRun:
    """Everything a training job holds between steps: made by ``set_up``, advanced by ``train_step``."""

    cfg: TrainConfig  # the effective configuration (a resumed run takes the checkpoint's)
    out: Path
    dist: DistInfo
    device: torch.device
    samples: list[Sample]
    val_samples: list[Sample]  # empty on every process but the main one, and without validation
    donors: list[np.ndarray]  # pure sky bands pasted into other photos by the augmentation
    views: list[Sample]  # photos with some sky, pasted as window views into interiors
    aug: AugmentConfig
    size: int  # the network's input size
    model: CLNSOD
    anchor: CLNSOD | None  # the frozen network of ``cfg.anchor_weights``, in eval mode
    net: torch.nn.Module  # ``model``, wrapped in DistributedDataParallel when world > 1
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    autocast_dtype: torch.dtype | None  # None: no autocast (fp32)
    steps_per_epoch: int
    total_steps: int  # the schedule's length
    last_step: int  # where this run stops (``max_steps`` may end it early)
    on_event: Callable[[TrainEvent], None] | None
    log_handler: logging.Handler | None  # OUT/train.log (main process only)
    global_step: int = 0
    checkpoint_step: int | None = None  # the step OUT/last.pt holds, when this run wrote it
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per validation
    window_loss: float = 0.0  # sums over the steps since the last progress line in train.log
    window_steps: int = 0
    window_start: float = 0.0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def global_batch(self) -> int:
        return self.cfg.batch_size * self.dist.world


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX). Without it PyTorch emulates
    bf16 and autocast makes a training step about 7x slower than fp32 (measured on an AVX2 EPYC)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to ``min_ratio`` of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _param_groups(model: CLNSOD, cfg: TrainConfig) -> list[dict[str, Any]]:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        is_backbone = name.startswith("backbone.")
        no_decay = param.ndim <= 1
        groups.setdefault((is_backbone, no_decay), []).append(param)
    return [
        {
            "params": params,
            "lr": cfg.lr * (cfg.backbone_lr_scale if backbone else 1.0),
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
        }
        for (backbone, no_decay), params in sorted(groups.items())
    ]


def _step_generator(seed: int, epoch: int, step: int, rank: int, slot: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(((seed * 1_000_003 + epoch) * 1_000_033 + step) * 10_007 + rank * 131 + slot)
    return gen


def _epoch_order(seed: int, epoch: int, count: int) -> list[int]:
    gen = torch.Generator()
    gen.manual_seed(seed * 7919 + epoch)
    return torch.randperm(count, generator=gen).tolist()


def _make_batch(
    samples: list[Sample],
    indices: list[int],
    donors: list[np.ndarray],
    views: list[Sample],
    size: int,
    aug: AugmentConfig,
    seeds: tuple[int, int, int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    seed, epoch, step, rank = seeds
    images, masks, voids = [], [], []
    for slot, index in enumerate(indices):
        gen = _step_generator(seed, epoch, step, rank, slot)
        donor = donors[int(torch.randint(0, len(donors), (), generator=gen))] if donors else None
        view = views[int(torch.randint(0, len(views), (), generator=gen))] if views else None
        image, mask, void = augment(samples[index], size, aug, gen, donor, view)
        images.append(image)
        masks.append(mask)
        voids.append(void)
    return torch.stack(images), torch.stack(masks), torch.stack(voids)


def set_training_mode(model: torch.nn.Module, freeze_norm: bool) -> None:
    """Training mode; with ``freeze_norm`` the BatchNorm layers stay in eval mode, so fine-tuning keeps
    the running statistics of the weights it starts from instead of re-estimating them from small
    batches of the new mix (interiors, simulated looks), which shifted the outdoor results."""
    model.train()
    if freeze_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def validate(model: CLNSOD, samples: list[Sample], device: torch.device) -> Metrics:
    """Per-dataset IoU / MAE / maxF of raw probabilities at each photo's original size; afterwards every
    layer is back in the mode it was in (frozen BatchNorm layers stay frozen)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    per_dataset: dict[str, MetricAccumulator] = {}
    for sample in samples:
        prob = upsample_probability(predict_working_size(model, [sample.image], device)[0], sample.image.shape[:2])
        acc = per_dataset.setdefault(sample.ref.dataset, MetricAccumulator(stretch=False))
        acc.add(prob, sample.mask > 127, sample.void)
    for module, training in modes:
        module.training = training
    return {name: acc.result() for name, acc in sorted(per_dataset.items())}


def _rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain numbers, so checkpoints load with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    random.setstate(state["python"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint; a truncated or foreign file gives a clear error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"{path}: checkpoint is unreadable or truncated ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "global_step" not in state:
        raise RuntimeError(f"{path}: not a CLN-SOD training checkpoint")
    return state


def _batches(
    order: list[int], start: int, steps: int, batch: int, info: DistInfo
) -> Iterator[tuple[int, list[int]]]:
    global_batch = batch * info.world
    for pos in range(start, steps):
        first = pos * global_batch + info.rank * batch
        yield pos, order[first : first + batch]


def _collect_refs(cfg: TrainConfig, split: str) -> list[SampleRef]:
    refs: list[SampleRef] = []
    for root in cfg.data:
        refs.extend(index_data_dir(Path(root), split))
    excluded: set[str] = set()
    for listing in cfg.exclude:
        excluded |= read_exclusion_list(Path(listing))
    for root in cfg.no_sky:
        refs.extend(index_no_sky(Path(root), split, excluded))
    return refs


def _start_processes(device_name: str) -> tuple[DistInfo, torch.device]:
    """This process's rank and device; under torchrun also joins the process group, each process
    on its own CUDA device (LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, index=local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world <= 1:
        return DistInfo(), device
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), device


def _autocast_dtype(amp: bool, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """(autocast dtype or None for fp32, why autocast is off). fp16 on CUDA; bf16 only on CPUs that
    compute it natively; never on MPS (its autocast is missing or partial in the torch versions we allow)."""
    if not amp:
        return None, None
    if device.type == "cuda":
        return torch.float16, None
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16, None
    if device.type == "cpu":
        return None, ("bf16 autocast off: this CPU has no native bf16 (emulated bf16 trains ~7x slower); "
                      "training in fp32")
    return None, f"autocast off on {device.type}: training in fp32"


def _open_log(path: Path) -> logging.Handler:
    """Send the ``clnsod`` loggers to ``path`` for this run (and nowhere else: train() prints nothing)."""
    logger = logging.getLogger("clnsod")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return handler


def _close_log(handler: logging.Handler | None) -> None:
    """Detach the run's log file, so a later run in the same process does not write into it."""
    if handler is not None:
        logging.getLogger("clnsod").removeHandler(handler)
        handler.close()


def _note(lines: list[str], is_main: bool, text: str, level: int = logging.INFO) -> None:
    """Log a set-up line (main process only) and keep it for the ``loaded`` event."""
    if is_main:
        log.log(level, "%s", text)
        lines.append(text)


def _resume_config(
    cfg: TrainConfig, resume: bool, checkpoint_path: Path, lines: list[str], is_main: bool
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """With ``resume``: the checkpoint and its configuration (only out, max_steps and threads come
    from ``cfg``), so that the run continues exactly as it started."""
    if not resume:
        return cfg, None
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
    state = load_checkpoint(checkpoint_path)
    saved = {"no_sky": [], "exclude": [], **state["train_config"]}  # older checkpoints lack these
    asked = asdict(cfg)
    # The saved model config is complete; the one asked for names only what the user set (e.g. --no-context).
    asked["model"] = {**saved["model"], **asked["model"]}
    for key in ("data", "no_sky", "exclude", "batch_size", "seed", "model", "epochs"):
        if saved[key] != asked[key]:
            _note(lines, is_main, f"resume: {key} differs from the checkpoint ({asked[key]!r} vs {saved[key]!r}); "
                  "using the checkpoint's", logging.WARNING)
    return TrainConfig(**{**saved, "out": cfg.out, "max_steps": cfg.max_steps, "threads": cfg.threads}), state


def _start_weights(cfg: TrainConfig, resuming: bool) -> tuple[TrainConfig, CLNSOD | None]:
    """The CLN-SOD weights a new run fine-tunes from, if any; fine-tuning keeps their architecture
    (moved to another working size when the run asks for one)."""
    if resuming or not cfg.init_weights:
        return cfg, None
    init_model = _load_at_size(cfg.init_weights, cfg.model.get("input_size"))
    wanted = cfg.model.get("use_context_prior")
    if wanted is not None and wanted != init_model.config.use_context_prior:
        raise WeightsError(f"{cfg.init_weights}: these weights {'have' if not wanted else 'lack'} the "
                           "context-aware map; drop --no-context or start from other weights")
    return TrainConfig(**{**asdict(cfg), "model": init_model.config.to_dict()}), init_model


def _load_at_size(path: str, size: int | None) -> CLNSOD:
    """A weights file as a model, moved to working size ``size`` (None: keep its own)."""
    model = load_model(Path(path))
    if size is not None and size != model.config.input_size:
        model = with_input_size(model, size)
    return model


def _load_anchor(cfg: TrainConfig, size: int, device: torch.device) -> CLNSOD | None:
    """The frozen network a fine-tune stays close to (``--anchor``), at the run's working size."""
    if not cfg.anchor_weights:
        return None
    anchor = _load_at_size(cfg.anchor_weights, size)
    anchor.eval().requires_grad_(False)
    return anchor.to(device)


def _build_model(model_cfg: ModelConfig, cfg: TrainConfig, init_model: CLNSOD | None, resuming: bool) -> CLNSOD:
    """A seeded network (the seed fixes the heads' initialisation) with its start weights; a resumed
    run's weights come from the checkpoint later."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = CLNSOD(model_cfg)
    if not resuming:
        if init_model is not None:
            model.load_state_dict(init_model.state_dict())
        elif cfg.imagenet_init:
            get_backbone(model_cfg.backbone).load_imagenet(model.backbone)
    return model


def set_up(
    cfg: TrainConfig, resume: bool = False, on_event: Callable[[TrainEvent], None] | None = None
) -> TrainingRun:
    """Everything before the first step: processes and device, OUT/train.log, configuration (the
    checkpoint's when resuming), samples, model, optimiser and schedule, restored state. Ends with
    the ``loaded`` event."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info, device = _start_processes(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = _open_log(out / LOG_NAME) if info.is_main else None
    try:
        if info.is_main:
            remove_stale_parts(out)  # a checkpoint half-written when an earlier run was killed
        lines: list[str] = []
        checkpoint_path = out / CHECKPOINT_NAME
        cfg, state = _resume_config(cfg, resume, checkpoint_path, lines, info.is_main)
        cfg, init_model = _start_weights(cfg, state is not None)
        model_cfg = ModelConfig.from_dict(cfg.model)
        train_refs = _collect_refs(cfg, "train")
        if not train_refs:
            raise DatasetError(f"no training samples found in {', '.join(cfg.data)}")
        started = time.time()
        samples = load_samples(train_refs, 2 * model_cfg.input_size)
        val_samples = load_samples(_collect_refs(cfg, "val")) if cfg.validate and info.is_main else []
        donors = [band for band in (pure_sky_band(s) for s in samples) if band is not None]
        views = [s for s in samples if s.ref.mask is not None and 0.1 <= float((s.mask > 127).mean()) <= 0.9]
        _note(lines, info.is_main, f"loaded {len(samples)} train / {len(val_samples)} val samples "
              f"({len(donors)} sky donors, {len(views)} window views) in {time.time() - started:.1f}s; "
              f"{info.world} process(es) on {device}")

        model = _build_model(model_cfg, cfg, init_model, state is not None)
        model.to(device)
        anchor = _load_anchor(cfg, model_cfg.input_size, device)
        if anchor is not None:
            _note(lines, info.is_main, f"anchored to {cfg.anchor_weights} (weight {cfg.anchor_weight:g})")
        optimizer = torch.optim.AdamW(_param_groups(model, cfg))
        global_batch = cfg.batch_size * info.world
        steps_per_epoch = len(samples) // global_batch
        if steps_per_epoch == 0:
            raise DatasetError(f"{len(samples)} training samples is fewer than one batch of {global_batch}")
        total_steps = steps_per_epoch * cfg.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        )
        global_step, history = 0, []
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            global_step, history = state["global_step"], state["history"]
            _restore_rng(state["rng"])
            _note(lines, info.is_main, f"resumed from {checkpoint_path} at step {global_step}")
        net: torch.nn.Module = model
        if info.world > 1:
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        autocast_dtype, autocast_off = _autocast_dtype(cfg.amp, device)
        if autocast_off:
            _note(lines, info.is_main, autocast_off)
        run = TrainingRun(
            cfg=cfg, out=out, dist=info, device=device, samples=samples, val_samples=val_samples, donors=donors,
            views=views, aug=AugmentConfig(**cfg.augment), size=model_cfg.input_size, model=model, anchor=anchor, net=net,
            optimizer=optimizer, scheduler=scheduler,
            scaler=torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16),
            autocast_dtype=autocast_dtype, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
            last_step=total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps),
            on_event=on_event, log_handler=handler, global_step=global_step, history=history,
        )
        set_training_mode(model, cfg.freeze_norm)
        run.window_start = time.time()
        _emit(run, "loaded", message="\n".join(lines))
        return run
    except BaseException:
        _close_log(handler)
        raise


def train_step(run: TrainingRun, indices: list[int]) -> dict[str, float]:
    """One optimiser step on the samples at ``indices`` (this process's share of the global batch);
    returns the loss terms."""
    epoch = run.global_step // run.steps_per_epoch
    images, masks, voids = _make_batch(run.samples, indices, run.donors, run.views, run.size, run.aug,
                                       (run.cfg.seed, epoch, run.global_step, run.dist.rank))
    images, masks, voids = images.to(run.device), masks.to(run.device), voids.to(run.device)
    autocast = (torch.autocast(device_type=run.device.type, dtype=run.autocast_dtype)
                if run.autocast_dtype is not None else nullcontext())
    with autocast:
        output = run.net(images)
    losses = clnsod_loss(output.logits, output.context_map, masks, voids,
                         run.cfg.affinity_weight, run.cfg.global_weight)
    if run.anchor is not None:
        with torch.no_grad(), autocast:
            anchor_prob = torch.sigmoid(run.anchor(images).logits.float())
        anchored = anchor_loss(output.logits, anchor_prob, masks, voids)
        total = losses.pop("total") + run.cfg.anchor_weight * anchored
        losses = {**losses, "anchor": anchored, "total": total}
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(losses["total"]).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.global_step += 1
    return {name: value.item() for name, value in losses.items()}


def report_step(run: TrainingRun, losses: dict[str, float]) -> None:
    """The ``step`` event, and every ``log_every`` steps a line in train.log with the mean loss,
    learning rate and speed since the previous line."""
    run.window_loss += losses["total"]
    run.window_steps += 1
    if run.dist.is_main and run.global_step % run.cfg.log_every == 0:
        parts = " ".join(f"{name}={value:.4f}" for name, value in losses.items())
        rate = run.window_steps * run.global_batch / max(1e-9, time.time() - run.window_start)
        log.info("step %d/%d epoch %d %s mean_total=%.4f lr=%.2e %.1f img/s", run.global_step, run.total_steps,
                 _epoch(run), parts, run.window_loss / run.window_steps, run.scheduler.get_last_lr()[-1], rate)
        run.window_loss, run.window_steps, run.window_start = 0.0, 0, time.time()
    _emit(run, "step", loss=losses["total"])


def run_validation(run: TrainingRun, epoch: int) -> Metrics:
    """Validate after the last step of ``epoch`` (0-based): history, train.log, metrics.jsonl, event."""
    metrics = validate(run.model, run.val_samples, run.device)
    run.history.append({"epoch": epoch + 1, "step": run.global_step, "val": metrics})
    message = f"validation epoch {epoch + 1}: {_format_metrics(metrics)}"
    log.info("%s", message)
    with open(run.out / METRICS_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(run.history[-1]) + "\n")
    _emit(run, "validation", metrics=metrics, message=message)
    return metrics


def save_checkpoint(run: TrainingRun) -> None:
    """Write OUT/last.pt atomically (main process): everything ``--resume`` needs to replay exactly."""
    if not run.dist.is_main:
        return
    save_torch(
        {
            "global_step": run.global_step,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": _rng_state(),
            "history": run.history,
            "train_config": asdict(run.cfg),
        },
        run.checkpoint_path,
    )
    run.checkpoint_step = run.global_step
    _emit(run, "checkpoint")


def finish(run: TrainingRun) -> Metrics:
    """Last checkpoint (unless the loop just wrote it), the final fp16 OUT/weights.pt and the ``done``
    event; leaves the process group. Returns the last validation's metrics (empty without validation)."""
    if run.checkpoint_step != run.global_step:
        save_checkpoint(run)
    final: Metrics = run.history[-1]["val"] if run.history else {}
    if run.dist.is_main:
        weights = run.out / WEIGHTS_NAME
        meta = {"global_step": run.global_step, "train_config": asdict(run.cfg), "val": final}
        save_weights(run.model, weights, meta)
        message = f"wrote {weights} (fp16) after {run.global_step} steps"
        log.info("%s", message)
        _emit(run, "done", metrics=final, message=message)
    if run.dist.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final


def train(cfg: TrainConfig, resume: bool = False, on_event: Callable[[TrainEvent], None] | None = None) -> Metrics:
    """Run (or resume) a training job; returns the final validation metrics (may be empty).
    Progress goes to ``on_event`` (see ``TrainEvent``) and to OUT/train.log, never to stdout/stderr."""
    run = set_up(cfg, resume, on_event)
    try:
        while run.global_step < run.last_step:
            epoch, first_pos = divmod(run.global_step, run.steps_per_epoch)
            order = _epoch_order(run.cfg.seed, epoch, len(run.samples))
            for pos, indices in _batches(order, first_pos, run.steps_per_epoch, run.cfg.batch_size, run.dist):
                if run.global_step >= run.last_step:
                    break
                report_step(run, train_step(run, indices))
                epoch_done = pos == run.steps_per_epoch - 1
                if epoch_done and run.val_samples:
                    run_validation(run, epoch)
                if run.global_step % run.cfg.checkpoint_every == 0 or epoch_done:
                    save_checkpoint(run)
        return finish(run)
    finally:
        _close_log(run.log_handler)


def _epoch(run: TrainingRun) -> int:
    """1-based epoch of the latest step (1 before the first)."""
    return min(max(run.global_step - 1, 0) // run.steps_per_epoch, run.cfg.epochs - 1) + 1


def _emit(run: TrainingRun, kind: EventKind, loss: float | None = None, metrics: Metrics | None = None,
          message: str = "") -> None:
    """Hand an event to the caller; under DDP only the main process reports."""
    if run.on_event is not None and run.dist.is_main:
        run.on_event(TrainEvent(kind, run.global_step, run.last_step, _epoch(run), run.cfg.epochs,
                                loss, metrics, message))


def format_dataset_metrics(m: dict[str, float]) -> str:
    """One dataset's validation line: IoU/MAE/maxF, and false sky on its photos without sky."""
    text = f"IoU={m['iou']:.4f} MAE={m['mae']:.4f} maxF={m['max_f']:.4f}"
    if "no_sky_images" in m:
        text += (f" no-sky photos: {int(m['no_sky_images'])}, mean area called sky {100 * m['no_sky_mean_area']:.2f}%,"
                 f" clean {100 * m['no_sky_clean']:.1f}%")
    return text


def _format_metrics(metrics: Metrics) -> str:
    return "; ".join(f"{name}: {format_dataset_metrics(m)}" for name, m in metrics.items())
