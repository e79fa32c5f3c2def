"""``batch --manifest FILE``: a CSV or JSON record pairing every output with its original and the
settings that made it, so a listing can link a virtually enhanced photo to the original."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click

from clnsod_core import __version__
from clnsod_core.compositing.disclosure import replacement_time
from clnsod_core.files import write_atomic
from clnsod_core.frontends.cli.runners import REPLACED_AT
from clnsod_core.jobs import JobSummary
from clnsod_core.options import OPTIONS

MANIFEST_SUFFIXES = (".csv", ".json")
COLUMNS = ("original", "outputs", "status", "detail")
# The settings that change a replacement's look (the rest, such as the device, only change how it runs).
_LOOK_GROUPS = ("sky", "edge", "foreground", "output")


def check_manifest_path(path: Path | None) -> None:
    if path is not None and path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise click.UsageError(f"--manifest must end in {' or '.join(MANIFEST_SUFFIXES)}, got {path.name!r}")


def settings_of(flags: dict[str, Any]) -> dict[str, Any]:
    return {o.name: flags[o.name] for o in OPTIONS if o.group in _LOOK_GROUPS and o.name in flags}


def _run_time(flags: dict[str, Any]) -> str:
    return str(flags.get(REPLACED_AT) or replacement_time())


def write_manifest(path: Path, summary: JobSummary, kind: str, flags: dict[str, Any]) -> None:
    """One row per photo found (written, no sky, skipped because done before, failed), written atomically."""
    rows = [{"original": str(o.source), "outputs": [str(p) for p in o.outputs], "status": o.status,
             "detail": o.detail} for o in sorted(summary.outcomes.values(), key=lambda o: str(o.source))]
    header = {"tool": f"CLN-SOD {__version__}", "created": _run_time(flags), "output": kind,
              "settings": settings_of(flags)}
    if path.suffix.lower() == ".json":
        data = json.dumps({**header, "photos": rows}, indent=1).encode("utf-8")
    else:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow([*COLUMNS, "tool", "created", "settings"])
        settings = json.dumps(header["settings"], sort_keys=True)
        for row in rows:
            writer.writerow([row["original"], ";".join(row["outputs"]), row["status"], row["detail"],
                             header["tool"], header["created"], settings])
        data = text.getvalue().encode("utf-8")
    try:
        write_atomic(path, lambda handle: handle.write(data))
    except OSError as exc:
        raise click.ClickException(f"cannot write the manifest {path} ({exc.strerror or exc})") from None
