"""``clnsod`` command line: a click group whose commands each live in their own module."""

from __future__ import annotations

import click

from .. import __version__
from ..runtime import tune_allocator
from .eval import eval_command
from .labels import refine_labels_command
from .mask import batch_command, mask_command, replace_command
from .skies import skies_group
from .train import train_command
from .weights import weights_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="clnsod")
def main() -> None:
    """CLN-SOD: offline sky masks and sky replacement.

    Exit codes: 0 all good, 1 some inputs failed (each reported on one line), 2 usage error.
    """
    tune_allocator()


main.add_command(mask_command)
main.add_command(replace_command)
main.add_command(batch_command)
main.add_command(skies_group)
main.add_command(train_command)
main.add_command(refine_labels_command)
main.add_command(eval_command)
main.add_command(weights_group)
