"""The GIMP 3 plug-in, end to end inside the real GIMP 3.0 (Debian 13 chroot; Debian 12 has only 2.10).

``tests/gimp/build_chroot.sh`` builds (or reuses, cached outside the repo) the chroot;
``install_plugin.py gimp`` installs the plug-in into a fresh profile; ``gimp-console-3.0`` runs
``tests/gimp/e2e_driver.py``, which calls the procedure non-interactively and dumps what is asserted
here. The core's Python recorded in core.json is this venv's: the repository, the venv and the real
Python prefix are bind-mounted at their own paths inside a private mount namespace
(``tests/gimp/gimp_chroot.sh``), so that path works unchanged and no mount outlives the run.

Skipped only when not root or without debootstrap (and no cached chroot), unless
CLNSOD_REQUIRE_HOSTS=1 (CI), which turns that into a failure. Outputs go to $CLNSOD_E2E_OUT/gimp when set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PHOTOS, REPO
from PIL import Image

GIMP_TESTS = REPO / "tests" / "gimp"
sys.path[:0] = [str(REPO / "plugin" / "common"), str(REPO / "plugin" / "gimp" / "clnsod-replace-sky")]
import bridge_client
import replace_sky_logic

PHOTO = "aitzgorri_by_Aitzol_Berasategi.jpg"  # mountains under a clear sky: sky on top, grass below
SKY_IMAGE = "plasma_Kite.jpg"  # blue sky with clouds, used as a sky image file
WIDTH = 800
GIMP_TIMEOUT_S = 240
BROKEN_CORE_LIMIT_S = 10.0
REQUIRE_HOSTS = os.environ.get("CLNSOD_REQUIRE_HOSTS", "") not in ("", "0")


def skip_or_fail(reason: str) -> None:
    if REQUIRE_HOSTS:
        pytest.fail(f"{reason} (CLNSOD_REQUIRE_HOSTS is set)")
    pytest.skip(reason)


def cached_chroot_ready() -> bool:
    """True when build_chroot.sh would just reuse its cache (no debootstrap needed)."""
    script = (GIMP_TESTS / "build_chroot.sh").read_text()
    version = script.split('CHROOT_VERSION="', 1)[1].split('"', 1)[0]
    cache = Path(os.environ.get("CLNSOD_GIMP_CHROOT_CACHE", "/var/cache/clnsod-gimp-chroot"))
    return (cache / version / ".clnsod-chroot-complete").is_file()


@pytest.fixture(scope="module")
def chroot() -> Path:
    """The cached Debian 13 chroot with GIMP 3 (built on first use, ~40 s to 2.5 min)."""
    if os.geteuid() != 0:
        skip_or_fail("the GIMP 3 end-to-end test needs root (debootstrap, chroot, mount namespaces)")
    if not (cached_chroot_ready() or shutil.which("debootstrap") or REQUIRE_HOSTS):
        skip_or_fail("debootstrap is not installed (apt-get install debootstrap) and no cached GIMP 3 chroot exists")
    if not shutil.which("unshare"):
        skip_or_fail("unshare (util-linux) is missing")
    result = subprocess.run([str(GIMP_TESTS / "build_chroot.sh")], check=False, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, f"build_chroot.sh failed:\n{result.stderr[-3000:]}"
    return Path(result.stdout.strip().splitlines()[-1])


def core_binds() -> list[Path]:
    """Host paths the core's Python needs, mounted at the same paths in the chroot (read-only)."""
    paths = {REPO, Path(sys.prefix)}
    base = Path(sys.base_prefix).resolve()
    if base in (Path("/usr"), Path("/usr/local"), Path("/")):
        # A system Python: mounting its prefix would hide the chroot's own /usr, so only its
        # interpreter and standard library go in.
        paths |= {Path(os.path.realpath(sys.executable)), Path(sysconfig.get_paths()["stdlib"]),
                  Path(sysconfig.get_paths()["platstdlib"])}
    else:
        paths.add(base)
    resolved = sorted({Path(os.path.realpath(p)) for p in paths})
    return [p for p in resolved if not any(p != q and p.is_relative_to(q) for q in resolved)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fresh GIMP profile with the plug-in installed, the downscaled photo and a sky image."""
    work = tmp_path_factory.mktemp("gimp-e2e")
    out = (Path(os.environ["CLNSOD_E2E_OUT"]) / "gimp").resolve() if os.environ.get("CLNSOD_E2E_OUT") else work / "out"
    out.mkdir(parents=True, exist_ok=True)
    with Image.open(PHOTOS / PHOTO) as im:
        im.convert("RGB").resize((WIDTH, round(WIDTH * im.height / im.width)), Image.Resampling.LANCZOS).save(
            work / "photo.png")
    with Image.open(PHOTOS / SKY_IMAGE) as im:
        im.convert("RGB").resize((640, 400), Image.Resampling.LANCZOS).save(work / "sky.jpg", quality=92)
    profile = work / "profile"
    install = subprocess.run([sys.executable, str(REPO / "install_plugin.py"), "gimp", "--profile", str(profile)],
                             check=False, capture_output=True, text=True, timeout=180)
    assert install.returncode == 0, install.stdout + install.stderr
    plugin = profile / "plug-ins" / "clnsod-replace-sky"
    core = json.loads((plugin / "core.json").read_text())
    assert core["python"] == os.path.abspath(sys.executable)
    assert (plugin / "options.json").is_file(), "install_plugin.py wrote no option table"
    return {"work": work, "out": out, "profile": profile, "plugin": plugin}


def run_gimp(chroot: Path, workspace: dict[str, Path], case: str,
             extra_env: dict[str, str]) -> tuple[dict[str, Any], str, float]:
    """One GIMP run of the driver (gimp-console batch, or the GUI under Xvfb for case "gui");
    returns its report, its console output and the wall time."""
    work, out = workspace["work"], workspace["out"]
    env = {
        "HOME": "/root", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
        "GIMP3_DIRECTORY": str(workspace["profile"]),
        "CLNSOD_E2E_CASE": case, "CLNSOD_E2E_OUT": str(out),
        "CLNSOD_E2E_INPUT": str(work / "photo.png"), "CLNSOD_E2E_SKY": str(work / "sky.jpg"),
        **extra_env,
    }
    binds = [arg for path in core_binds() for arg in ("--ro", str(path))]
    binds += ["--rw", str(work)] + (["--rw", str(out)] if not out.is_relative_to(work) else [])
    driver = GIMP_TESTS / "e2e_driver.py"
    if case == "gui":
        gimp = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", str(GIMP_TESTS / "gui_session.sh"), str(driver),
                str(out)]
    else:
        gimp = ["gimp-console-3.0", "-i", "--batch-interpreter", "python-fu-eval",
                "-b", f"exec(open({str(driver)!r}).read())", "--quit"]
    command = [str(GIMP_TESTS / "gimp_chroot.sh"), str(chroot), *binds, "--",
               "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
               "timeout", str(GIMP_TIMEOUT_S - 10), *gimp]
    start = time.monotonic()
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=GIMP_TIMEOUT_S)
    seconds = time.monotonic() - start
    log = result.stdout + result.stderr
    (out / f"gimp-{case}.log").write_text(log)
    report_file = out / case / "report.json"
    assert result.returncode == 0 and report_file.is_file(), f"gimp-console exited {result.returncode}; log tail:\n{log[-4000:]}"
    return json.loads(report_file.read_text()), log, seconds


def core_outputs(photo: np.ndarray, options: dict[str, object], plugin: Path) -> dict[str, np.ndarray]:
    """What the core returns for these options, computed on the host through the same protocol,
    with the option table installed in ``plugin`` (the plug-in's folder)."""
    height, width = photo.shape[:2]
    rgba = np.dstack([photo, np.full((height, width), 255, np.uint8)])
    table = bridge_client.load_option_table(str(plugin))
    job = bridge_client.Job(width, height, "RGBA8", rgba.tobytes(), options, table)
    try:
        final = bridge_client.run_blocking(job, sys.executable, lambda event: None)
        assert final.kind == "done", final.message
        outputs = {"matte": np.frombuffer(job.read_output("matte"), np.uint8).reshape(height, width)}
        if options.get("mode", "replace") == "replace":
            for key in ("sky", "lighting"):
                outputs[key] = np.frombuffer(job.read_output(key), np.uint8).reshape(height, width, 4)
        return outputs
    finally:
        job.cleanup()


def expected_stack(photo: np.ndarray, core: dict[str, np.ndarray]) -> np.ndarray:
    """PROTOCOL.md §5 in 8-bit sRGB values: sky over the original through the matte, then lighting."""
    alpha = core["matte"][..., None] / 255.0
    over = np.round(alpha * core["sky"][..., :3] + (1 - alpha) * photo)
    light = core["lighting"][..., 3:4] / 255.0
    return np.round(light * core["lighting"][..., :3] + (1 - light) * over).astype(np.uint8)


def load_raw(folder: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.fromfile(folder / f"{name}.raw", np.uint8).reshape(shape)


def layer_names(structure: dict[str, Any]) -> list[str]:
    return [layer["name"] for layer in structure["layers"]]


def test_gimp_plugin_end_to_end(chroot: Path, workspace: dict[str, Path]) -> None:
    report, _, seconds = run_gimp(chroot, workspace, "run", {})
    folder = workspace["out"] / "run"
    photo = np.asarray(Image.open(workspace["work"] / "photo.png").convert("RGB"))
    h, w = photo.shape[:2]
    assert report["gimp_version"].startswith("3.0"), report["gimp_version"]

    neutral_core = core_outputs(photo, {"sky": "sunset", "recolour": 0.0, "relight": 0.0, "device": "cpu"},
                                workspace["plugin"])
    harmonised_core = core_outputs(photo, {"sky": str(workspace["work"] / "sky.jpg"), "device": "cpu"},
                                   workspace["plugin"])
    for stem, core in (("neutral", neutral_core), ("harmonised", harmonised_core)):
        run = report[stem]
        assert run["call"]["status"] == "success", run["call"]
        # Layer tree: lighting on top, masked sky directly above the original; one channel.
        for structure in (run["structure"], run["reloaded_structure"]):  # also after saving and reloading the XCF
            assert layer_names(structure) == ["Foreground lighting", "New sky", "Background"], structure
            assert [layer["mask"] for layer in structure["layers"]] == [False, True, False]
            assert structure["channels"] == ["Sky mask"] and structure["channels_visible"] == [False]
        assert [layer["composite_space"] for layer in run["structure"]["layers"][:2]] == ["rgb-perceptual"] * 2
        assert run["selection_empty"], "replace mode must not touch the selection"
        # The original layer is untouched.
        assert run["original_unchanged"]
        assert np.array_equal(load_raw(folder, f"{stem}_before", (h, w, 4))[..., :3], photo)
        # Layers carry exactly the core's outputs; mask and channel hold the matte.
        matte = core["matte"]
        assert np.array_equal(load_raw(folder, f"{stem}_layermask", (h, w)), matte)
        assert np.array_equal(load_raw(folder, f"{stem}_channel", (h, w)), matte)
        assert np.array_equal(load_raw(folder, f"{stem}_sky", (h, w, 4)), core["sky"])
        lighting = load_raw(folder, f"{stem}_lighting", (h, w, 4))
        assert np.array_equal(lighting[..., 3], core["lighting"][..., 3])
        visible = core["lighting"][..., 3] > 0
        assert np.array_equal(lighting[visible], core["lighting"][visible])
        # The matte is a real sky matte: sky on top, none in the bottom 25 % (grass).
        assert matte[: h // 10].mean() > 240 and matte[-h // 4:].max() == 0
        # The flattened image equals the protocol's stack exactly, and the PNG equals it.
        flat = load_raw(folder, f"{stem}_flat", (h, w, 3))
        assert np.array_equal(flat, expected_stack(photo, core))
        assert np.array_equal(np.asarray(Image.open(folder / f"{stem}.png").convert("RGB")), flat)
        # New sky in the sky region (17 % of this photo): where the matte is full and there is no
        # lighting, the result is the new sky exactly; the sky region changed clearly.
        sky_region, full = matte >= 128, (matte == 255) & ~visible
        assert sky_region.mean() > 0.1 and full.sum() > 10_000
        assert np.array_equal(flat[full], core["sky"][..., :3][full])
        assert np.abs(flat[sky_region].astype(int) - photo[sky_region]).mean() > 20, "the sky region did not change"

    # Neutral harmonisation: the lighting layer is empty and the foreground is bit-exact.
    lighting = load_raw(folder, "neutral_lighting", (h, w, 4))
    assert lighting[..., 3].max() == 0
    flat = load_raw(folder, "neutral_flat", (h, w, 3))
    untouched = neutral_core["matte"] == 0
    assert untouched.mean() > 0.3
    assert np.array_equal(flat[untouched], photo[untouched])
    # Harmonised: the lighting layer does something, and the stack is `clnsod replace`'s composite
    # (PROTOCOL.md §5: equal to 8-bit rounding).
    assert harmonised_core["lighting"][..., 3].max() > 0
    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer, load_sky

    composite = SkyReplacer(SkyMasker(device="cpu")).replace(
        photo, load_sky(workspace["work"] / "sky.jpg", 10**8), ReplaceOptions()).composite
    flat = load_raw(folder, "harmonised_flat", (h, w, 3))
    assert np.abs(flat.astype(int) - composite).max() <= 1

    # Mask only (layer shifted by (120, 60)): just the channel, also loaded as the selection.
    run = report["mask_only"]
    assert run["call"]["status"] == "success", run["call"]
    assert layer_names(run["structure"]) == ["Background"] and run["structure"]["channels"] == ["Sky mask"]
    assert run["original_unchanged"]
    expected = np.zeros((h, w), np.uint8)
    expected[60:, 120:] = neutral_core["matte"][: h - 60, : w - 120]
    assert np.array_equal(load_raw(folder, "mask_only_channel", (h, w)), expected)
    assert not run["selection_empty"]
    assert np.array_equal(load_raw(folder, "mask_only_selection", (h, w)), expected)
    assert seconds < GIMP_TIMEOUT_S


def test_gimp_plugin_keeps_depth_and_the_display_p3_space(chroot: Path, workspace: dict[str, Path]) -> None:
    """A 16-bit Display P3 photo, as loaded and converted to 32-bit float: the layers come back at the
    image's depth in Display P3, equal to the core's replacement of that photo in its own space, and
    GIMP's flattened result is that composite."""
    from clnsod_core.imaging.colour import SRGB, ColourSpace, convert
    from clnsod_core.imaging.deep import encode_png
    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer

    p3 = (REPO / "tests" / "data" / "icc" / "DisplayP3-v4.icc").read_bytes()
    photo = np.asarray(Image.open(workspace["work"] / "photo.png").convert("RGB"))
    h, w = photo.shape[:2]
    pixels16 = convert(photo.astype(np.uint16) * 257, SRGB, ColourSpace(p3))
    deep_input = workspace["work"] / "photo-p3-16bit.png"
    deep_input.write_bytes(encode_png(pixels16, p3, None))
    report, _, _ = run_gimp(chroot, workspace, "deep", {"CLNSOD_E2E_DEEP_INPUT": str(deep_input)})
    folder = workspace["out"] / "deep"
    result = SkyReplacer(SkyMasker(device="cpu")).replace(pixels16, "sunset", ReplaceOptions(), space=ColourSpace(p3))
    layers = result.editor_layers()
    visible = layers.lighting[..., 3] > 0
    assert visible.mean() > 0.3  # harmonised: the lighting layer covers the foreground
    assert (layers.sky % 257 != 0).mean() > 0.9  # more than 8 bits reach the layers
    # As loaded (16-bit integer) the layers are exact; converted to 32-bit float linear, GIMP stores
    # them as linear floats, read back here as 16-bit perceptual values: equal to that rounding.
    for stem, precision, tolerance in (("deep", "u16-non-linear", 0), ("deep_float", "float-linear", 2)):
        run = report[stem]
        assert run["call"]["status"] == "success", run["call"]
        assert run["precision"] == precision and run["profile"] is not None
        assert layer_names(run["structure"]) == ["Foreground lighting", "New sky", "Background"]
        assert run["original_unchanged"]
        before = np.fromfile(folder / f"{stem}_before.raw", np.uint16).reshape(h, w, 4)[..., :3].astype(np.int64)
        assert np.abs(before - pixels16).max() <= tolerance
        sky = np.fromfile(folder / f"{stem}_sky.raw", np.uint16).reshape(h, w, 4).astype(np.int64)
        lighting = np.fromfile(folder / f"{stem}_lighting.raw", np.uint16).reshape(h, w, 4).astype(np.int64)
        assert np.array_equal(np.fromfile(folder / f"{stem}_layermask.raw", np.uint8).reshape(h, w), layers.matte)
        assert np.abs(sky[..., :3] - layers.sky).max() <= tolerance and (sky[..., 3] == 65535).all()
        assert np.abs(lighting[..., 3] - layers.lighting[..., 3]).max() <= tolerance
        assert np.abs(lighting[visible] - layers.lighting[visible]).max() <= tolerance
        flat = np.fromfile(folder / f"{stem}_flat.raw", np.uint16).reshape(h, w, 3).astype(np.int64)
        error = np.abs(flat - result.composite)
        print(f"GIMP {precision}: flattened vs core composite, 16-bit units: mean {error.mean():.2f}, max {error.max()}")
        assert error.max() <= 4 + 2 * tolerance, (error.mean(), error.max())  # equal to 16-bit rounding


def test_gimp_plugin_reports_a_broken_core(chroot: Path, workspace: dict[str, Path]) -> None:
    """A core Python that does not exist gives a GIMP error (status + message), quickly, and no change."""
    report, log, seconds = run_gimp(chroot, workspace, "broken-core", {"CLNSOD_CORE_PYTHON": "/nonexistent/python"})
    call = report["broken"]["call"]
    assert call["status"] == "execution-error", call
    assert call["error"].startswith("Replace Sky: ") and "/nonexistent/python" in call["error"], call
    assert "CLNSOD_CORE_PYTHON" in call["error"], call
    assert call["seconds"] < BROKEN_CORE_LIMIT_S, call
    # GIMP itself reports it (an error dialog in the GUI, this line on the console).
    assert "Calling error for procedure 'plug-in-clnsod-replace-sky'" in log and "/nonexistent/python" in log, log
    assert seconds < 120
    assert layer_names(report["broken"]["structure"]) == ["Background"]
    assert report["broken"]["structure"]["channels"] == []


GUI_LOOK = {"sky": "blue-cumulus", "relight": 0.9, "recolour": 0.2, "halo": 0.0, "haze": 0.0}  # the saved look
PREVIEW_LINE = re.compile(r"clnsod: preview (\d+) shown ([0-9.]+) s after the action \(core (started|reused)\)")


def test_gimp_live_preview_dialog_and_undo(chroot: Path, workspace: dict[str, Path]) -> None:
    """Interactive runs in the GIMP GUI (Xvfb), keyboard only: the dialog shows a first preview, the
    preview changes after a slider move, a gallery sky and a saved look, OK renders exactly the core's
    result for those settings, one Ctrl+Z removes everything (Ctrl+Y brings it back); a second Replace
    Sky reuses the running core and, cancelled after its preview, leaves the image as it was."""
    table = bridge_client.load_option_table(str(workspace["plugin"]))
    look = bridge_client.look_of(table.validate(GUI_LOOK), table)
    (workspace["profile"] / "clnsod-looks.json").write_text(bridge_client.looks_to_text({"Test look": look}))
    relight = next(spec.label for spec in replace_sky_logic.argument_specs(table) if spec.name == "relight")
    relight_key = relight[relight.index("_") + 1].lower()
    report, log, _ = run_gimp(chroot, workspace, "gui", {"CLNSOD_E2E_RELIGHT_KEY": relight_key})
    gui = report["gui"]
    assert gui["call"]["status"] == "success", (gui["call"], log[-3000:])
    added = (["Foreground lighting", "New sky", "Background"], ["Sky mask"])
    assert (layer_names(gui["structure"]), gui["structure"]["channels"]) == added
    assert (layer_names(gui["after_undo"]), gui["after_undo"]["channels"]) == (["Background"], [])
    assert (layer_names(gui["after_redo"]), gui["after_redo"]["channels"]) == added

    photo = np.asarray(Image.open(workspace["work"] / "photo.png").convert("RGB"))
    h, w = photo.shape[:2]
    core = core_outputs(photo, dict(look, device="cpu"), workspace["plugin"])
    folder = workspace["out"] / "gui"
    assert np.array_equal(load_raw(folder, "gui_layermask", (h, w)), core["matte"])
    assert np.array_equal(load_raw(folder, "gui_sky", (h, w, 4)), core["sky"])
    assert np.array_equal(load_raw(folder, "gui_lighting", (h, w, 4)), core["lighting"])

    shots = [np.asarray(Image.open(folder / f"dialog-{n}.png").convert("RGB")).astype(int)
             for n in ("1", "2", "gallery", "3")]
    preview_part = [shot[:, : shot.shape[1] // 2] for shot in shots]  # the preview is the dialog's left side
    for before, after, what in zip(preview_part, preview_part[1:], ("slider", "gallery sky", "look")):
        assert np.abs(before - after).mean() > 0.5, f"the preview did not follow the {what}"
    lines = PREVIEW_LINE.findall(log)
    firsts = [(float(seconds), core_state) for number, seconds, core_state in lines if number == "1"]
    assert len(firsts) == 2, lines
    assert firsts[0][1] == "started" and firsts[1][1] == "reused", firsts
    assert firsts[1][0] < firsts[0][0], f"the second Replace Sky was not faster: {firsts}"

    again = gui["again"]
    assert again["call"]["status"] == "cancel", again["call"]
    assert again["structure"] == gui["after_redo"] and again["pixels_unchanged"] and again["dirty_unchanged"]


def test_gimp_plugin_adds_reflection_and_haze_layers(chroot: Path, workspace: dict[str, Path]) -> None:
    """A calm lake with haze 0.5: "Reflection" and "Horizon haze" above the lighting, and GIMP's flattened
    image equals the core's composite (8-bit rounding of each layer's blend)."""
    from clnsod_core.compositing.compose import Harmonisation
    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer

    lake = workspace["work"] / "lake.png"
    with Image.open(PHOTOS / "plasma_summer_1am.jpg") as im:
        im.convert("RGB").resize((WIDTH, round(WIDTH * im.height / im.width)), Image.Resampling.LANCZOS).save(lake)
    report, log, _ = run_gimp(chroot, workspace, "realism", {"CLNSOD_E2E_INPUT": str(lake)})
    run = report["realism"]
    assert run["call"]["status"] == "success", (run["call"], log[-3000:])
    expected = ["Horizon haze", "Reflection", "Foreground lighting", "New sky", "Background"]
    assert layer_names(run["structure"]) == expected and layer_names(run["reloaded_structure"]) == expected
    assert run["original_unchanged"]
    photo = np.asarray(Image.open(lake).convert("RGB"))
    h, w = photo.shape[:2]
    options = ReplaceOptions(harmonisation=Harmonisation(haze=0.5))
    composite = SkyReplacer(SkyMasker(device="cpu")).replace(photo, "blue-cumulus", options).composite
    flat = load_raw(workspace["out"] / "realism", "realism_flat", (h, w, 3)).astype(int)
    assert np.abs(flat - composite).max() <= 3 and np.abs(flat - composite).mean() < 0.5
