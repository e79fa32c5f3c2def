#!/usr/bin/env python3
"""Install (or remove) the CLN-SOD "Replace Sky" plugin for Krita or GIMP 3.

Run it with the Python that has CLN-SOD installed (e.g. ``.venv/bin/python install_plugin.py
krita``): that interpreter is recorded next to the plugin (core.json), because the editors' own
Pythons have no torch, and the core's option table is stored there too (options.json, from
``python -m clnsod_core.frontends.bridge --print-options``): the plugins build their dialogs,
defaults and checks from it. Standard library only; safe to run again (it replaces its previous
install).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
CLIENT = REPO / "plugin" / "common" / "bridge_client.py"
KRITA_NAME = "clnsod_sky"
GIMP_NAME = "clnsod-replace-sky"
KRITA_SOURCE = REPO / "plugin" / "krita" / KRITA_NAME
GIMP_SOURCE = REPO / "plugin" / "gimp" / GIMP_NAME
CORE_MODULE = "clnsod_core.frontends.bridge"
PRINT_OPTIONS_FLAG = "--print-options"
CORE_CONFIG = "core.json"  # names the plugins' bridge_client.py reads
OPTIONS_FILE = "options.json"


def _home_config(windows_env: str, mac: str, xdg_env: str, xdg_default: str, leaf: str) -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get(windows_env) or Path.home() / "AppData" / "Roaming") / leaf
    if sys.platform == "darwin":
        return Path.home() / mac / leaf
    return Path(os.environ.get(xdg_env) or Path.home() / xdg_default) / leaf


def krita_resource_dir() -> Path:
    """Where Krita looks for pykrita/ (Krita's "resource folder")."""
    return _home_config("APPDATA", "Library/Application Support", "XDG_DATA_HOME", ".local/share", "krita")


def kritarc_path() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "kritarc"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kritarc"


def gimp_profile_dir() -> Path:
    if os.environ.get("GIMP3_DIRECTORY"):
        return Path(os.environ["GIMP3_DIRECTORY"])
    return _home_config("APPDATA", "Library/Application Support", "XDG_CONFIG_HOME", ".config", "GIMP/3.0")


def core_option_table(python: Path) -> str:
    """The core's option table as JSON (``-m clnsod_core.frontends.bridge --print-options``).

    Running it also proves that ``python`` can run the core, so an interpreter without CLN-SOD is
    refused before anything is installed.
    """
    command = [str(python), "-m", CORE_MODULE, PRINT_OPTIONS_FLAG]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise SystemExit(f"error: cannot run {python}: {exc.strerror or exc}") from None
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"error: {python} cannot import clnsod_core or print its option table ({tail[0]}); "
                         "run this script with the Python of the environment where CLN-SOD is installed")
    try:
        table = json.loads(result.stdout)
    except ValueError as exc:
        raise SystemExit(f"error: {python} printed no option table ({exc}); is it the CLN-SOD of this folder?") from None
    if not (isinstance(table, dict) and isinstance(table.get("options_digest"), str) and "options" in table):
        raise SystemExit(f"error: {python} printed something that is not CLN-SOD's option table")
    return result.stdout


def assemble(source_dir: Path, target_dir: Path, python: Path, option_table: str) -> None:
    """Replace ``target_dir`` with a complete plugin folder: ``source_dir`` + the shared client +
    core.json (the core's Python) + options.json (``option_table``, from ``core_option_table``).

    Built next to the target, then swapped in, so an editor never sees half a plugin.
    """
    staging = target_dir.with_name(target_dir.name + ".installing")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source_dir, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(CLIENT, staging / CLIENT.name)
    (staging / CORE_CONFIG).write_text(json.dumps({"python": str(python), "source": str(REPO)}, indent=1) + "\n")
    (staging / OPTIONS_FILE).write_text(option_table, encoding="utf-8")
    shutil.rmtree(target_dir, ignore_errors=True)
    staging.rename(target_dir)


def set_kritarc_enabled(kritarc: Path, enabled: bool) -> bool:
    """Set or remove ``enable_clnsod_sky=true`` under [python], leaving every other line alone."""
    key = f"enable_{KRITA_NAME}"
    lines = kritarc.read_text(encoding="utf-8").splitlines() if kritarc.is_file() else []
    kept, section, python_at = [], "", None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped
            if section == "[python]":
                python_at = len(kept) + 1
        elif section == "[python]" and stripped.split("=", 1)[0].strip() == key:
            continue
        kept.append(line)
    if enabled:
        if python_at is None:
            kept += ([""] if kept and kept[-1].strip() else []) + ["[python]"]
            python_at = len(kept)
        kept.insert(python_at, f"{key}=true")
    new_text = "\n".join(kept) + ("\n" if kept else "")
    if kritarc.is_file() and kritarc.read_text(encoding="utf-8") == new_text:
        return False
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    tmp = kritarc.with_name(kritarc.name + ".clnsod-tmp")
    tmp.write_text(new_text, encoding="utf-8")
    os.replace(tmp, kritarc)
    return True


def install_krita(profile: Path, kritarc: Path, python: Path, option_table: str, uninstall: bool) -> None:
    pykrita = profile / "pykrita"
    package, desktop = pykrita / KRITA_NAME, pykrita / f"{KRITA_NAME}.desktop"
    if uninstall:
        shutil.rmtree(package, ignore_errors=True)
        desktop.unlink(missing_ok=True)
        set_kritarc_enabled(kritarc, False)
        print(f"removed {package} and {desktop}; disabled {KRITA_NAME} in {kritarc}")
        return
    pykrita.mkdir(parents=True, exist_ok=True)
    assemble(KRITA_SOURCE, package, python, option_table)
    shutil.copy2(REPO / "plugin" / "krita" / f"{KRITA_NAME}.desktop", desktop)
    changed = set_kritarc_enabled(kritarc, True)
    print(f"installed {package} and {desktop}")
    print(f"{'enabled' if changed else 'already enabled'}: [python] enable_{KRITA_NAME}=true in {kritarc}")
    print(f"core Python: {python}")
    print("restart Krita, then use Tools > Scripts > Replace Sky")


def install_gimp(profile: Path, python: Path, option_table: str, uninstall: bool) -> None:
    target = profile / "plug-ins" / GIMP_NAME
    if uninstall:
        shutil.rmtree(target, ignore_errors=True)
        print(f"removed {target}")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    assemble(GIMP_SOURCE, target, python, option_table)
    script = target / f"{GIMP_NAME}.py"
    script.chmod(0o755)
    print(f"installed {target} ({script.name} executable)")
    print(f"core Python: {python}")
    print("restart GIMP, then use Filters > Sky > Replace Sky...")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host", choices=["krita", "gimp"])
    parser.add_argument("--uninstall", action="store_true", help="remove the plugin instead")
    parser.add_argument("--profile", type=Path, default=None,
                        help="Krita resource folder (holds pykrita/) or GIMP 3 profile folder (holds plug-ins/); "
                        "default: the editor's standard per-user folder")
    parser.add_argument("--kritarc", type=Path, default=None, help="Krita settings file to enable the plugin in")
    parser.add_argument("--python", type=Path, default=Path(sys.executable),
                        help="the core's Python, recorded for the plugin (default: this interpreter)")
    args = parser.parse_args(argv)
    python = Path(os.path.abspath(args.python))
    option_table = "" if args.uninstall else core_option_table(python)
    try:
        if args.host == "krita":
            install_krita(args.profile or krita_resource_dir(), args.kritarc or kritarc_path(), python, option_table,
                          args.uninstall)
        else:
            install_gimp(args.profile or gimp_profile_dir(), python, option_table, args.uninstall)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
