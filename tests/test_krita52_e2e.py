"""The Krita plugin end to end in the real Krita 5.2 (Debian 13 chroot; the host's Debian 12 has 5.1).

Same driver (tests/krita/clnsod_e2e) and checks as tests/test_krita_e2e.py, but Krita 5.2 runs inside
``tests/gimp/build_chroot.sh krita`` (a cached trixie chroot of its own) under Xvfb, through
``tests/gimp/gimp_chroot.sh`` so the core's Python recorded by install_plugin.py works unchanged.
What differs on 5.2: the plugin creates the transparency mask through the Python API (5.1 needs Krita's
action and an undone temporary layer); on both the result is ONE undo step.

Skipped only when not root or without debootstrap (and no cached chroot), unless
CLNSOD_REQUIRE_HOSTS=1 (CI), which turns that into a failure. Outputs go to $CLNSOD_E2E_OUT/krita52 when set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from test_gimp_e2e import core_binds
from test_krita_e2e import (
    check_deep_case,
    check_float_case,
    check_realism_case,
    check_replace_case,
    prepare_workspace,
    run_sessions,
)

BUILD = REPO / "tests" / "gimp" / "build_chroot.sh"
IN_CHROOT = REPO / "tests" / "gimp" / "gimp_chroot.sh"
CACHE = Path(os.environ.get("CLNSOD_KRITA_CHROOT_CACHE", "/var/cache/clnsod-krita-chroot"))
REQUIRE_HOSTS = os.environ.get("CLNSOD_REQUIRE_HOSTS", "") not in ("", "0")


def skip_or_fail(reason: str) -> None:
    if REQUIRE_HOSTS:
        pytest.fail(f"{reason} (CLNSOD_REQUIRE_HOSTS is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chroot() -> Path:
    """The cached Debian 13 chroot with Krita 5.2 (built on first use, about 2 min)."""
    if os.geteuid() != 0:
        skip_or_fail("the Krita 5.2 end-to-end test needs root (debootstrap, chroot, mount namespaces)")
    cached = any(CACHE.glob("*/.clnsod-chroot-complete"))
    if not (cached or shutil.which("debootstrap") or REQUIRE_HOSTS):
        skip_or_fail("debootstrap is not installed (apt-get install debootstrap) and no cached Krita 5.2 chroot exists")
    if not shutil.which("unshare"):
        skip_or_fail("unshare (util-linux) is missing")
    result = subprocess.run([str(BUILD), "krita"], check=False, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"build_chroot.sh krita failed:\n{result.stderr[-3000:]}"
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def krita_run(chroot: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Runs the driver's main session once in Krita 5.2 (the broken-core session does not depend on
    the Krita version and runs in tests/test_krita_e2e.py)."""
    workspace = prepare_workspace(tmp_path_factory.mktemp("krita52_e2e"), "krita52")
    binds = [arg for path in core_binds() for arg in ("--ro", str(path))]
    binds += ["--rw", str(workspace["base"])]
    if not workspace["out"].is_relative_to(workspace["base"]):
        binds += ["--rw", str(workspace["out"])]

    def launch(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        inner = {"HOME": str(workspace["base"]), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **env}
        command = [str(IN_CHROOT), str(chroot), *binds, "--", "/usr/bin/env", "-i",
                   *(f"{k}={v}" for k, v in inner.items()), *argv]
        return command, dict(os.environ)

    return run_sessions(workspace, launch, sessions=("main",))


def test_krita52_replace_is_one_undo_step(krita_run: dict, tmp_path: Path) -> None:
    report = krita_run["runs"]["main"]["report"]
    assert str(report.get("krita_version", "")).startswith("5.2"), report.get("krita_version")
    # Layers and mask are assembled detached and join the image with one command: one undo removes
    # everything, nothing is left to undo, and one redo brings it all back.
    check_replace_case(krita_run, tmp_path, [["ORIGINAL"]])


def test_krita52_other_cases(krita_run: dict) -> None:
    """Mask-only, cancel and a bad sky file behave on 5.2 as on 5.1."""
    import test_krita_e2e

    test_krita_e2e.test_mask_only_in_real_krita(krita_run)
    test_krita_e2e.test_cancel_and_core_error_in_real_krita(krita_run)


def test_krita52_16_bit_display_p3_and_float_documents(krita_run: dict) -> None:
    check_deep_case(krita_run)
    check_float_case(krita_run)


def test_krita52_reflection_and_haze_layers(krita_run: dict) -> None:
    check_realism_case(krita_run)
