"""The ``clnsod`` command: one module per command; ``train`` and ``refine-labels`` come from the
``trainer`` package through the ``clnsod.commands`` entry points (the core never imports it)."""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

import click

from clnsod_core import __version__
from clnsod_core.frontends.cli.batch import batch_command
from clnsod_core.frontends.cli.eval import eval_command
from clnsod_core.frontends.cli.formats import formats_command
from clnsod_core.frontends.cli.mask import mask_command
from clnsod_core.frontends.cli.replace import replace_command
from clnsod_core.frontends.cli.skies import skies_group
from clnsod_core.frontends.cli.video import video_command
from clnsod_core.frontends.cli.weights import weights_group
from clnsod_core.imaging.io import PhotoWarning
from clnsod_core.runtime import tune_allocator

PLUGIN_GROUP = "clnsod.commands"  # entry points: name -> click command (see pyproject.toml)
TRAINER_COMMANDS = ("train", "refine-labels")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="clnsod")
def main() -> None:
    """CLN-SOD: offline sky masks and sky replacement.

    Exit codes: 0 all good, 1 some inputs failed (each reported on one line), 2 usage error.
    """
    tune_allocator()
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Photo warnings (bits lost, ...) as one 'warning: ...' line; others as Python prints them."""
    if issubclass(category, PhotoWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def _missing_trainer(name: str) -> click.Command:
    """Stands in for a trainer command when the trainer package is not installed: says how to get it."""
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   help="(needs the trainer package)", add_help_option=False)
    def command() -> None:
        raise click.ClickException(f"'clnsod {name}' is provided by the trainer package, which is not installed "
                                   "here; install CLN-SOD from its source folder: pip install -e '.[train]'")

    return command


for _command in (mask_command, replace_command, batch_command, video_command, skies_group, formats_command,
                 eval_command, weights_group):
    main.add_command(_command)
for _entry in entry_points(group=PLUGIN_GROUP):
    main.add_command(_entry.load(), _entry.name)
for _name in TRAINER_COMMANDS:
    if _name not in main.commands:
        main.add_command(_missing_trainer(_name))
