"""Click flags derived from the option table (``clnsod_core/options.py``): nothing is re-declared here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from clnsod_core.compositing.preset_names import PRESET_DESCRIPTIONS
from clnsod_core.options import CLI, Option, on

F = TypeVar("F", bound=Callable[..., Any])
METAVARS = {"sky": "PRESET|NAME|FILE", "weights": "NAME|PATH|URL"}


def click_option(opt: Option) -> Callable[[F], F]:
    """The ``--flag`` for one declared option; its parameter name is the option's name."""
    help_text = opt.help + (f" Presets: {', '.join(PRESET_DESCRIPTIONS)}." if opt.name == "sky" else "")
    if opt.kind == "bool":
        return click.option(opt.flag, opt.name, is_flag=True, default=opt.default_in_cli, help=help_text)
    kinds: dict[str, Any] = {
        "float": lambda: click.FloatRange(opt.minimum, opt.maximum),
        "int": lambda: click.IntRange(opt.minimum, opt.maximum),  # type: ignore[arg-type]
        "choice": lambda: click.Choice(opt.choices),
        "text": lambda: click.STRING,
    }
    return click.option(opt.flag, opt.name, type=kinds[opt.kind](), default=opt.default_in_cli,
                        show_default=opt.default_in_cli is not None, metavar=METAVARS.get(opt.name), help=help_text)


def cli_options(*groups: str, exclude: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Every CLI option of the given groups ("sky", "edge", "foreground", "output", "model"), in table
    order, but those named in ``exclude``."""
    chosen = [opt for opt in on(CLI) if opt.group in groups and opt.name not in exclude]

    def decorate(func: F) -> F:
        for opt in reversed(chosen):
            func = click_option(opt)(func)
        return func

    return decorate


REPLACE_GROUPS = ("sky", "edge", "foreground", "output", "model")
MASK_GROUPS = ("edge", "model")
