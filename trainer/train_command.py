"""``clnsod train``: train or fine-tune on skyseg-style or images/ + masks/ folders.

Loaded by the core's ``clnsod`` group through the ``clnsod.commands`` entry point; torch and the
trainer are imported only when the command runs, so ``clnsod --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from clnsod_core.options import DEVICES

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

    from trainer.train import TrainEvent


class TrainProgress:
    """Shows ``train()``'s events on stderr: the set-up lines, a progress bar labelled
    "epoch e/E loss x", one line per validation and the final weights line."""

    def __init__(self) -> None:
        self.bar: ProgressBar[int] | None = None
        self.on_terminal = sys.stderr.isatty()  # click redraws the bar in place only on a terminal

    def __call__(self, event: TrainEvent) -> None:
        if event.kind == "loaded":
            self.line(event.message)
            self.bar = click.progressbar(length=event.total_steps, label="training", file=sys.stderr,
                                         show_pos=True, show_eta=True)
            self.bar.update(event.step)  # a resumed run starts part-way
        elif event.kind == "step" and self.bar is not None:
            self.bar.label = f"epoch {event.epoch}/{event.epochs} loss {event.loss:.3f}"
            self.bar.update(1)
        elif event.kind == "validation":
            self.line(event.message)
        elif event.kind == "done":
            self.close()
            self.line(event.message)

    def line(self, text: str) -> None:
        """Print ``text`` below the bar; on a terminal the bar's line is kept and it continues below."""
        if not text:
            return
        if self.bar is not None and self.on_terminal:
            click.echo(err=True)
        click.echo(text, err=True)

    def close(self) -> None:
        """End the bar's line and show the cursor again (also when training fails)."""
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None


def _check_input_size(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value % 32:
        raise click.BadParameter(f"{value} is not a multiple of 32 (e.g. 320, 352, 384)")
    return value


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
@click.option("--anchor", "anchor", default=None, metavar="default|NAME|PATH|URL",
              help="Keep the fine-tuned network close to these weights (any --weights accepts) on the pixels where "
              "they agree with the label: an extra BCE toward their sky probability, so new data (interiors, your "
              "own photos) changes what they get wrong without losing what they get right.")
@click.option("--anchor-weight", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Weight of the --anchor term in the loss.")
@click.option("--input-size", type=click.IntRange(min=64), default=None, callback=_check_input_size,
              help="Working resolution in px (square, a multiple of 32). Default: that of the --init weights "
              "(320 from ImageNet). Weights of another size are moved to this one first (their context map "
              "resampled over the position grid, see trainer/input_size.py).")
@click.option("--no-context", is_flag=True, help="Ablation: drop the context-aware map and the affinity loss.")
@click.option("--no-affinity-loss", is_flag=True,
              help="Ablation: keep the context-aware map but train it through the sky BCE only (no pull toward A).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True, help="Steps.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps.")
@click.option("--no-validate", is_flag=True, help="Skip the per-epoch validation.")
@click.option("--freeze-norm", is_flag=True,
              help="Keep the BatchNorm statistics of the weights you start from (recommended when fine-tuning "
              "on a small or unusual mix, e.g. your own photos or interiors).")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Torch CPU threads per process (0 = default).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto: CUDA, then Apple MPS, then CPU. Under torchrun each process takes the GPU of its LOCAL_RANK.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-amp", is_flag=True, help="Train in fp32 (default: fp16 autocast on CUDA, bf16 on CPUs with native bf16; "
              "MPS always trains in fp32).")
def train_command(
    data: tuple[Path, ...], no_sky: tuple[Path, ...], exclude: tuple[Path, ...], out: Path, resume: bool,
    epochs: int, batch_size: int, lr: float, init: str, anchor: str | None, anchor_weight: float,
    input_size: int | None,
    no_context: bool, no_affinity_loss: bool, checkpoint_every: int, max_steps: int | None, no_validate: bool, freeze_norm: bool, threads: int,
    device: str, seed: int, no_amp: bool,
) -> None:
    """Train CLN-SOD. Under torchrun (``torchrun --nproc-per-node N --no-python clnsod train ...``) it runs DDP."""
    from clnsod_core.frontends.cli.common import DownloadProgress
    from clnsod_core.runtime import resolve_device
    from clnsod_core.weights.download import DownloadError
    from clnsod_core.weights.format import WeightsError
    from clnsod_core.weights.registry import resolve_weights
    from trainer.data import DatasetError
    from trainer.train import TrainConfig, format_dataset_metrics, train

    try:
        resolve_device(device)  # an unavailable device is a usage error, before any data is read
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None

    def weights_file(spec: str, option: str) -> str:
        try:
            name = None if spec == "default" else spec
            return str(resolve_weights(name, progress=DownloadProgress(f"downloading {spec}")))
        except (WeightsError, DownloadError) as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None

    imagenet = init == "imagenet"
    init_weights = None if imagenet else weights_file(init, "--init")
    anchor_weights = None if anchor is None else weights_file(anchor, "--anchor")
    cfg = TrainConfig(
        data=[str(d) for d in data], no_sky=[str(d) for d in no_sky], exclude=[str(f) for f in exclude],
        out=str(out), epochs=epochs, batch_size=batch_size, lr=lr, checkpoint_every=checkpoint_every, seed=seed,
        threads=threads, amp=not no_amp, imagenet_init=imagenet, init_weights=init_weights,
        anchor_weights=anchor_weights, anchor_weight=anchor_weight, device=device,
        max_steps=max_steps, validate=not no_validate, freeze_norm=freeze_norm,
        model={**({"use_context_prior": False} if no_context else {}),
               **({"input_size": input_size} if input_size else {})},
        affinity_weight=0.0 if no_affinity_loss else TrainConfig.affinity_weight,
    )
    progress = TrainProgress()
    try:
        metrics = train(cfg, resume=resume, on_event=progress)
    except (DatasetError, WeightsError, FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    for name, values in metrics.items():
        click.echo(f"{name:<12} {format_dataset_metrics(values)}")
