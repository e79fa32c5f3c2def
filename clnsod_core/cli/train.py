"""``clnsod train``: train or fine-tune on skyseg-style or images/ + masks/ folders."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train")
@click.option("--data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset folder: an index.jsonl (skyseg layout) or images/ + masks/ (+ void/). Repeatable.")
@click.option("--no-sky", "no_sky", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of photos with no sky at all (e.g. interiors): trained as all foreground; a fixed "
              "20 % of them (grouped by the name before the first '_') is held out for validation. Repeatable.")
@click.option("--exclude", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File listing names (one per line, '#' comments) of --no-sky photos to leave out because "
              "they do show some sky. Repeatable.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoints (last.pt), train.log, metrics.jsonl and the final weights.pt.")
@click.option("--resume", is_flag=True, help="Continue exactly from OUT/last.pt.")
@click.option("--epochs", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Per process.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--init", "init", default="default", show_default=True, metavar="default|imagenet|NAME|PATH|URL",
              help="Start from the embedded weights (fine-tuning), ImageNet (needs the train extra), "
              "or any weights --weights accepts.")
@click.option("--no-context", is_flag=True, help="Ablation: drop the context-aware map and the affinity loss.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True, help="Steps.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps.")
@click.option("--no-validate", is_flag=True, help="Skip the per-epoch validation.")
@click.option("--freeze-norm", is_flag=True,
              help="Keep the BatchNorm statistics of the weights you start from (recommended when fine-tuning "
              "on a small or unusual mix, e.g. your own photos or interiors).")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Torch CPU threads per process (0 = default).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-amp", is_flag=True, help="Train in fp32 (default: fp16 autocast on CUDA, bf16 on CPUs with native bf16).")
def train_command(
    data: tuple[Path, ...], no_sky: tuple[Path, ...], exclude: tuple[Path, ...], out: Path, resume: bool,
    epochs: int, batch_size: int, lr: float, init: str,
    no_context: bool, checkpoint_every: int, max_steps: int | None, no_validate: bool, freeze_norm: bool, threads: int,
    device: str, seed: int, no_amp: bool,
) -> None:
    """Train CLN-SOD. Under torchrun (``torchrun --nproc-per-node N --no-python clnsod train ...``) it runs DDP."""
    from trainer.data import DatasetError
    from trainer.train import TrainConfig, format_dataset_metrics, train

    from ..download import DownloadError
    from ..registry import resolve_weights
    from ..weights_io import WeightsError
    from .common import DownloadProgress

    init_weights, imagenet = None, init == "imagenet"
    if not imagenet:
        try:
            spec = None if init == "default" else init
            init_weights = str(resolve_weights(spec, progress=DownloadProgress(f"downloading {init}")))
        except (WeightsError, DownloadError) as exc:
            raise click.BadParameter(str(exc), param_hint="--init") from None
    cfg = TrainConfig(
        data=[str(d) for d in data], no_sky=[str(d) for d in no_sky], exclude=[str(f) for f in exclude], out=str(out), epochs=epochs, batch_size=batch_size, lr=lr,
        checkpoint_every=checkpoint_every, seed=seed, threads=threads, amp=not no_amp, imagenet_init=imagenet,
        init_weights=init_weights, device=device, max_steps=max_steps, validate=not no_validate,
        freeze_norm=freeze_norm,
        model={"use_context_prior": False} if no_context else {},
    )
    try:
        metrics = train(cfg, resume=resume)
    except (DatasetError, WeightsError, FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    for name, values in metrics.items():
        click.echo(f"{name:<12} {format_dataset_metrics(values)}")
