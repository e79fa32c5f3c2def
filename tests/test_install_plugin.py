"""install_plugin.py on fresh profiles: files (incl. the core's option table), kritarc edits, idempotence,
uninstall, refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from clnsod_core.frontends.bridge import option_table

REPO = Path(__file__).resolve().parents[1]


def _install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "install_plugin.py"), *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **(env or {})})


def test_krita_install_is_idempotent_keeps_other_settings_and_uninstalls(tmp_path: Path) -> None:
    profile, kritarc = tmp_path / "krita", tmp_path / "config" / "kritarc"
    kritarc.parent.mkdir()
    kritarc.write_text("[General]\nLanguage=de\n\n[python]\nenable_other_plugin=true\n")
    args = ["krita", "--profile", str(profile), "--kritarc", str(kritarc)]
    first = _install(*args)
    assert first.returncode == 0, first.stderr
    package = profile / "pykrita" / "clnsod_sky"
    assert (profile / "pykrita" / "clnsod_sky.desktop").is_file()
    assert (package / "__init__.py").is_file() and (package / "bridge_client.py").is_file()
    assert json.loads((package / "core.json").read_text())["python"] == sys.executable
    assert json.loads((package / "options.json").read_text()) == option_table()  # the core's, for the dialog
    assert kritarc.read_text() == "[General]\nLanguage=de\n\n[python]\nenable_clnsod_sky=true\nenable_other_plugin=true\n"
    snapshot = {p.relative_to(profile): p.read_bytes() for p in profile.rglob("*") if p.is_file()}
    second = _install(*args)
    assert second.returncode == 0 and "already enabled" in second.stdout
    assert {p.relative_to(profile): p.read_bytes() for p in profile.rglob("*") if p.is_file()} == snapshot
    assert kritarc.read_text().count("enable_clnsod_sky") == 1
    gone = _install(*args, "--uninstall")
    assert gone.returncode == 0
    assert not package.exists() and not (profile / "pykrita" / "clnsod_sky.desktop").exists()
    assert kritarc.read_text() == "[General]\nLanguage=de\n\n[python]\nenable_other_plugin=true\n"


def test_krita_defaults_follow_xdg_folders(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = _install("krita", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "krita" / "pykrita" / "clnsod_sky" / "core.json").is_file()
    assert (tmp_path / "config" / "kritarc").read_text() == "[python]\nenable_clnsod_sky=true\n"


def test_gimp_install_is_executable_and_records_the_core(tmp_path: Path) -> None:
    result = _install("gimp", env={"GIMP3_DIRECTORY": str(tmp_path / "gimp3")})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "gimp3" / "plug-ins" / "clnsod-replace-sky"
    script = folder / "clnsod-replace-sky.py"
    assert script.is_file() and os.access(script, os.X_OK)
    assert (folder / "bridge_client.py").is_file()
    assert json.loads((folder / "core.json").read_text())["python"] == sys.executable
    assert json.loads((folder / "options.json").read_text()) == option_table()
    assert _install("gimp", "--uninstall", env={"GIMP3_DIRECTORY": str(tmp_path / "gimp3")}).returncode == 0
    assert not folder.exists()


def test_an_interpreter_without_the_core_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'clnsod_core'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    result = _install("gimp", "--profile", str(tmp_path / "g"), "--python", str(fake))
    assert result.returncode != 0
    assert "cannot import clnsod_core" in result.stderr and "No module named" in result.stderr
    assert not (tmp_path / "g").exists()


def test_an_interpreter_that_prints_no_option_table_is_refused(tmp_path: Path) -> None:
    """A python that runs but is not CLN-SOD's (prints something else) must not be recorded."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'Python 3.11.7'\n")
    fake.chmod(0o755)
    result = _install("krita", "--profile", str(tmp_path / "k"), "--kritarc", str(tmp_path / "kritarc"),
                      "--python", str(fake))
    assert result.returncode != 0 and "no option table" in result.stderr
    assert not (tmp_path / "k").exists() and not (tmp_path / "kritarc").exists()
