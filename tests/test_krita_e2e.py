"""End to end in the real Krita: fresh profile, install_plugin.py, the plugin driven through its menu
action and dialog by a test-only extension (tests/krita/), results checked here against the core.

Needs `krita`, `xvfb-run` and `xauth` (CI: apt-get install -y --no-install-recommends krita
python3-pyqt5 xvfb xauth). Skips only when krita is absent and CLNSOD_REQUIRE_HOSTS is unset.
Outputs go to $CLNSOD_E2E_OUT/krita when set (else a pytest temp folder).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PHOTOS, REPO
from PIL import Image

from clnsod_core.imaging.deep import encode_png

KRITA_TIMEOUT_S = 200
PHOTO_WIDTH = 800
WATER_PHOTO = "plasma_summer_1am.jpg"  # a calm lake mirroring the dawn sky
GROUP_LAYER = "Sky replacement"


DISPLAY_P3 = REPO / "tests" / "data" / "icc" / "DisplayP3-v4.icc"


def deep_p3_pixels(photo: Path) -> np.ndarray:
    """The test photo as a 16-bit Display P3 image (LittleCMS at 16 bits): a wide-gamut, deep document."""
    from clnsod_core.imaging.colour import SRGB, ColourSpace, convert

    rgb = np.asarray(Image.open(photo).convert("RGB"))
    return convert(rgb.astype(np.uint16) * 257, SRGB, ColourSpace(DISPLAY_P3.read_bytes()))


def _require_hosts() -> bool:
    return bool(os.environ.get("CLNSOD_REQUIRE_HOSTS"))


Launcher = Callable[[list[str], dict[str, str]], tuple[list[str], dict[str, str]]]


def prepare_workspace(base: Path, out_name: str) -> dict:
    """A fresh Krita profile under ``base`` with the plugin (install_plugin.py) and the test driver,
    the downscaled photo, and the environment Krita runs with (profile, driver settings)."""
    out = (Path(os.environ["CLNSOD_E2E_OUT"]) / out_name if os.environ.get("CLNSOD_E2E_OUT") else base / "out").resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    photo = out / "photo.png"
    with Image.open(PHOTOS / "Storm.jpg") as im:
        im = im.convert("RGB")
        im.resize((PHOTO_WIDTH, im.height * PHOTO_WIDTH // im.width), Image.Resampling.LANCZOS).save(photo)
    water_photo = out / "lake.png"
    with Image.open(PHOTOS / WATER_PHOTO) as im:
        im = im.convert("RGB")
        im.resize((PHOTO_WIDTH, im.height * PHOTO_WIDTH // im.width), Image.Resampling.LANCZOS).save(water_photo)
    deep_photo = out / "photo-p3-16bit.png"
    deep_photo.write_bytes(encode_png(deep_p3_pixels(photo), DISPLAY_P3.read_bytes(), None))
    for name in ("config", "data", "cache", "runtime", "tmp"):
        (base / name).mkdir()
    (base / "runtime").chmod(0o700)
    env = {"XDG_CONFIG_HOME": str(base / "config"), "XDG_DATA_HOME": str(base / "data"),
           "XDG_CACHE_HOME": str(base / "cache"), "XDG_RUNTIME_DIR": str(base / "runtime"),
           "TMPDIR": str(base / "tmp"), "CLNSOD_E2E_OUT": str(out), "CLNSOD_E2E_PHOTO": str(photo),
           "CLNSOD_E2E_DEEP_PHOTO": str(deep_photo), "CLNSOD_E2E_WATER_PHOTO": str(water_photo),
           "CLNSOD_E2E_WATCHDOG": str(KRITA_TIMEOUT_S - 30),
           "QT_QPA_PLATFORM": "xcb"}
    # The test driver is enabled first; the installer adds its own key to the same [python] section.
    (base / "config" / "kritarc").write_text("[python]\nenable_clnsod_e2e=true\n")
    install_env = {k: v for k, v in os.environ.items() if k != "CLNSOD_CORE_PYTHON"}
    install = subprocess.run([sys.executable, str(REPO / "install_plugin.py"), "krita"], env=dict(install_env, **env),
                             capture_output=True, text=True, timeout=120, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    pykrita = base / "data" / "krita" / "pykrita"
    assert (pykrita / "clnsod_sky" / "bridge_client.py").is_file() and (pykrita / "clnsod_sky.desktop").is_file()
    assert (pykrita / "clnsod_sky" / "options.json").is_file(), "install_plugin.py wrote no option table"
    shutil.copytree(REPO / "tests" / "krita" / "clnsod_e2e", pykrita / "clnsod_e2e")
    shutil.copy2(REPO / "tests" / "krita" / "clnsod_e2e.desktop", pykrita)
    return {"base": base, "out": out, "photo": photo, "water_photo": water_photo, "env": env,
            "plugin": pykrita / "clnsod_sky"}


def run_sessions(workspace: dict, launch: Launcher, sessions: tuple[str, ...] = ("main", "broken-core")) -> dict:
    """Runs Krita once per session of the driver; ``launch`` turns (krita argv, its environment) into
    the command actually run (directly here, or inside a chroot). Returns reports and paths."""
    out = workspace["out"]
    runs = {}
    for session in sessions:
        extra = {"CLNSOD_CORE_PYTHON": "/nonexistent/python"} if session == "broken-core" else {}
        start = time.monotonic()
        # -a picks the next free display from -n; a random start keeps parallel X users (CI jobs) apart.
        display = random.randrange(200, 900)
        argv = ["timeout", "-k", "10", str(KRITA_TIMEOUT_S), "xvfb-run", "-a", "-n", str(display),
                "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"]
        command, env = launch(argv, dict(workspace["env"], CLNSOD_E2E_SESSION=session, **extra))
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                              timeout=KRITA_TIMEOUT_S + 60)
        (out / f"krita_{session}.log").write_text(proc.stdout + proc.stderr)
        report_path = out / "report.json"
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
        if report_path.is_file():
            report_path.rename(out / f"report_{session}.json")
        runs[session] = {"rc": proc.returncode, "report": report, "seconds": round(time.monotonic() - start, 1)}
    (out / "timings.json").write_text(json.dumps({k: v["seconds"] for k, v in runs.items()}))
    return {"runs": runs, "out": out, "photo": workspace["photo"], "water_photo": workspace["water_photo"],
            "tmp": workspace["base"] / "tmp",
            "python": sys.executable, "plugin": workspace["plugin"]}


@pytest.fixture(scope="module")
def krita_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Runs both Krita sessions once in the host's Krita; returns their reports and paths."""
    missing = [tool for tool in ("krita", "xvfb-run", "xauth") if shutil.which(tool) is None]
    if missing:
        if shutil.which("krita") is None and not _require_hosts():
            pytest.skip("krita is not installed (apt-get install -y --no-install-recommends krita python3-pyqt5 "
                        "xvfb xauth); set CLNSOD_REQUIRE_HOSTS=1 to make this a failure")
        pytest.fail(f"missing for the Krita end-to-end test: {', '.join(missing)}")
    workspace = prepare_workspace(tmp_path_factory.mktemp("krita_e2e"), "krita")
    host_env = {k: v for k, v in os.environ.items() if k != "CLNSOD_CORE_PYTHON"}
    return run_sessions(workspace, lambda argv, env: (argv, dict(host_env, **env)))


def _main(krita_run: dict) -> dict:
    run = krita_run["runs"]["main"]
    report = run["report"]
    assert report.get("finished"), f"Krita session did not finish: {report}"
    assert not report["errors"], "\n".join(report["errors"])
    return report


def _rgb_of_bgra(raw: bytes, w: int, h: int) -> np.ndarray:
    return np.frombuffer(raw, np.uint8).reshape(h, w, 4)[..., [2, 1, 0, 3]]


def _core_outputs(krita_run: dict, options: dict, tmp: Path) -> dict:
    """What the core itself produces for the same photo and options (independent of Krita)."""
    photo = np.asarray(Image.open(krita_run["photo"]).convert("RGB"))
    h, w = photo.shape[:2]
    job = tmp / "job"
    job.mkdir(mode=0o700)
    bgra = np.dstack([photo[..., 2], photo[..., 1], photo[..., 0], np.full((h, w), 255, np.uint8)])
    (job / "input.raw").write_bytes(bgra.tobytes())
    # The digest of the table install_plugin.py gave the plugin: the core must accept it.
    table = json.loads((krita_run["plugin"] / "options.json").read_text())
    request = dict(options, protocol=table["protocol"], options_digest=table["options_digest"], width=w, height=h,
                   pixel_format="BGRA8")
    (job / "request.json").write_text(json.dumps(request))
    result = subprocess.run([krita_run["python"], "-m", "clnsod_core.frontends.bridge", str(job)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = {name: (job / f"{name}.raw").read_bytes() for name in ("matte", "sky", "lighting")}
    outputs.update(photo=photo, w=w, h=h)
    return outputs


def _kra_layers(path: Path) -> list:
    """(name, nodetype, passthrough, children) from the saved .kra's maindoc.xml, top to bottom."""
    with zipfile.ZipFile(path) as kra:
        root = ET.fromstring(kra.read("maindoc.xml"))
    ns = {"k": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    image = root.find("k:IMAGE", ns) if ns else root.find("IMAGE")

    def walk(layers_element) -> list:
        rows = []
        if layers_element is None:
            return rows
        for layer in layers_element:
            children = []
            for sub in layer:
                children += walk(sub) if sub.tag.endswith(("layers", "masks")) else []
            rows.append((layer.get("name"), layer.get("nodetype"), layer.get("passthrough"), children))
        return rows

    return walk(image.find("k:layers", ns) if ns else image.find("layers"))


def assert_kra_stack(kra: list, original: str) -> None:
    """The saved .kra: the pass-through result group (lighting over masked sky) above the original."""
    assert [row[:3] for row in kra] == [(GROUP_LAYER, "grouplayer", "1"), (original, "paintlayer", None)]
    group = kra[0][3]
    assert [row[:2] for row in group] == [("Foreground lighting", "paintlayer"), ("New sky", "paintlayer")]
    assert [row[:2] for row in group[1][3]] == [("Sky mask", "transparencymask")]


RESULT_LAYERS = [["Foreground lighting", "paintlayer", []],
                 ["New sky", "paintlayer", [["Sky mask", "transparencymask", []]]]]


def check_replace_case(krita_run: dict, tmp_path: Path, undo_trees: list) -> None:
    """Everything about the "replace" case; ``undo_trees`` is the expected tree after each undo step
    (original = "ORIGINAL"; global selection masks filtered out), which differs between Krita versions."""
    report = _main(krita_run)
    case = report["cases"]["replace"]
    assert krita_run["runs"]["main"]["rc"] == 0, "Krita did not quit cleanly"
    assert case["action_found"] and "Replace Sky" in case["action_text"]
    assert case["progress_seen"], "no progress dialog while the core ran"
    assert "error_text" not in case, case.get("error_text")
    assert case["outcome"] == "done"
    # Layer tree, top to bottom (PROTOCOL.md section 5, in a pass-through group that only serves undo):
    # lighting, sky + its mask, above the untouched original.
    original = case["before_tree"][0]
    assert case["after_tree"] == [[GROUP_LAYER, "grouplayer", RESULT_LAYERS], original]
    assert case["original_untouched"]
    assert not case["has_selection"], "the user's (empty) selection was not restored"
    layers_only = [[row for row in tree if row[1] != "selectionmask"] for tree in case["undo_trees"]]
    assert layers_only == [[original if row == "ORIGINAL" else row for row in tree] for tree in undo_trees]
    assert case["original_untouched_after_undo"]
    # Krita's undo action names the next step ("Undo <name>"), plain "Undo" when there is none left.
    assert case["undo_text_after"].strip() == "Undo", f"more undo steps than {len(undo_trees)}: {case['undo_text_after']}"
    assert len(case["undo_names"]) == len(undo_trees) and len(case["redo_names"]) == len(undo_trees), case["redo_names"]
    assert case["redo_tree"] == case["after_tree"], "redo did not bring the whole result back"
    # The saved .kra has the same stack, the group in pass-through mode, and Krita reopens it as such.
    assert_kra_stack(_kra_layers(krita_run["out"] / "replace.kra"), original[0])
    assert case["reloaded_tree"] == case["after_tree"]

    # Layers hold exactly what the core computes for this photo and these options.
    core = _core_outputs(krita_run, {"sky": "sunset", "recolour": 0.0, "relight": 0.0, "halo": 0.0,
                                      "device": "cpu"}, tmp_path)
    w, h, out = core["w"], core["h"], krita_run["out"]
    assert case["size"] == [w, h]
    assert (out / "replace_mask.raw").read_bytes() == core["matte"]
    assert (out / "replace_reloaded_mask.raw").read_bytes() == core["matte"], "the mask changed in the .kra"
    assert (out / "replace_sky.bgra").read_bytes() == core["sky"]
    assert (out / "replace_lighting.bgra").read_bytes() == core["lighting"]
    matte = np.frombuffer(core["matte"], np.uint8).reshape(h, w)
    assert matte[: h // 5].mean() > 200 and matte[-h // 4:].mean() < 20, "matte does not look like Storm's sky"
    lighting = _rgb_of_bgra(core["lighting"], w, h)
    assert lighting[..., 3].max() == 0, "with recolour = relight = halo = 0 the lighting layer must be empty"

    # The flattened export: new sky where the matte is 255, the untouched photo where it is 0, a blend between.
    flat = np.asarray(Image.open(out / "replace.png").convert("RGBA"))
    assert flat.shape == (h, w, 4) and (flat[..., 3] == 255).all()
    sky = _rgb_of_bgra(core["sky"], w, h)[..., :3].astype(int)
    photo = core["photo"].astype(int)
    full, none = matte == 255, matte == 0
    assert full.sum() > 0.2 * w * h and none.sum() > 0.2 * w * h
    assert (flat[..., :3][full] == sky[full]).all(), "sky region of the flattened image is not the new sky"
    assert (flat[..., :3][none] == photo[none]).all(), "foreground pixels changed where the matte is 0"
    alpha = matte[..., None] / 255.0
    expected = sky * alpha + photo * (1 - alpha)
    assert np.abs(flat[..., :3] - expected).max() <= 2, "sky edge is not matte-blended"


def test_replace_sky_layers_in_real_krita(krita_run: dict, tmp_path: Path) -> None:
    # Undo: ONE step. The stack is assembled detached and added with one command; 5.1's mask comes from
    # Krita's action on a temporary layer whose two commands are undone again (layers.py).
    check_replace_case(krita_run, tmp_path, [["ORIGINAL"]])


def check_live_preview_cases(krita_run: dict, tmp_path: Path) -> None:
    """The dialog's live preview: a first preview, a new picture after a slider move and after a gallery
    sky, OK renders exactly the core's result for the previewed settings; a second Replace Sky reuses the
    running core and Cancel after previews leaves the document as it was."""
    report = _main(krita_run)
    case = report["cases"]["preview"]
    assert "error_text" not in case, case.get("error_text")
    previews = case["previews"]
    assert len(previews) == 3 and len(set(previews)) == 3, "the preview did not change after each setting"
    assert case["first_preview_s"] is not None and len(case["update_s"]) == 2
    assert case["core_starts"] == 1
    original = case["before_tree"][0]
    assert case["after_tree"] == [[GROUP_LAYER, "grouplayer", RESULT_LAYERS], original] and case["original_untouched"]
    core = _core_outputs(krita_run, {"sky": "blue-cumulus", "recolour": 0.0, "relight": 0.8, "halo": 0.0,
                                      "haze": 0.0, "device": "cpu"}, tmp_path)
    out = krita_run["out"]
    assert (out / "preview_mask.raw").read_bytes() == core["matte"]
    assert (out / "preview_sky.bgra").read_bytes() == core["sky"]
    assert (out / "preview_lighting.bgra").read_bytes() == core["lighting"]
    assert (out / "krita-dialog.png").stat().st_size > 10_000, "no screenshot of the dialog"

    again = report["cases"]["preview_again"]
    assert "error_text" not in again, again.get("error_text")
    assert again["core_starts"] == 1, "the second Replace Sky started another core"
    assert again["trigger_to_preview_s"] < case["trigger_to_preview_s"], (again, case)
    assert len(set(again["previews"])) == 2
    assert again["after_tree"] == again["before_tree"] and again["original_untouched"]
    assert again["modified"] is False, "Cancel after previews modified the document"


def test_live_preview_dialog_in_real_krita(krita_run: dict, tmp_path: Path) -> None:
    check_live_preview_cases(krita_run, tmp_path)


def test_mask_only_in_real_krita(krita_run: dict) -> None:
    case = _main(krita_run)["cases"]["mask"]
    assert "error_text" not in case, case.get("error_text")
    assert case["original_untouched"]
    names = [row[:2] for row in case["after_tree"] if row[1] != "selectionmask"]
    assert names == [["Sky mask", "paintlayer"], case["before_tree"][0][:2]]
    w, h = case["size"]
    out = krita_run["out"]
    gray = np.frombuffer((out / "mask_mask.raw").read_bytes(), np.uint8).reshape(h, w, 4)
    replace_matte = np.frombuffer((out / "replace_mask.raw").read_bytes(), np.uint8).reshape(h, w)
    assert (gray[..., 3] == 255).all()
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert (gray[..., 0] == replace_matte).all(), "mask-only layer differs from the replace run's matte"
    selection = np.frombuffer((out / "mask_selection.raw").read_bytes(), np.uint8).reshape(h, w)
    assert (selection == replace_matte).all(), "document selection is not the sky"


def test_cancel_and_core_error_in_real_krita(krita_run: dict) -> None:
    report = _main(krita_run)
    cancel = report["cases"]["cancel"]
    assert cancel["progress_seen"] and "error_text" not in cancel
    assert cancel["cancelling_shown"], "the progress dialog did not stay up saying Cancelling..."
    assert cancel["after_tree"] == cancel["before_tree"], "cancel left layers behind"
    assert cancel["outcome"] == "cancelled", f"the render was not stopped: it ended {cancel['outcome']!r}"
    assert cancel["original_untouched"]
    bad = report["cases"]["bad_sky"]
    assert "not_an_image.jpg" in bad.get("error_text", ""), bad
    assert bad["error_modal"] is False
    assert bad["after_tree"] == bad["before_tree"]
    leftovers = [p.name for p in krita_run["tmp"].glob("clnsod-*")]
    assert not leftovers, f"job folders left behind: {leftovers}"


def test_broken_core_path_reaches_user_and_krita_quits(krita_run: dict) -> None:
    run = krita_run["runs"]["broken-core"]
    report = run["report"]
    assert report.get("finished") and not report["errors"], report
    case = report["cases"]["broken_core"]
    assert "/nonexistent/python" in case.get("error_text", ""), case
    assert case["error_modal"] is False
    assert case["after_tree"] == case["before_tree"]
    assert run["rc"] == 0, f"Krita did not quit cleanly (exit status {run['rc']})"


def check_deep_case(krita_run: dict) -> None:
    """A 16-bit Display P3 document: the layers come back at 16 bits in Display P3 (the core got the
    document's own profile) and equal the core's replacement of that image in that space."""
    from clnsod_core.compositing.compose import Harmonisation
    from clnsod_core.imaging.colour import ColourSpace
    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer

    report = _main(krita_run)
    case = report["cases"]["deep"]
    assert "error_text" not in case, case.get("error_text")
    assert case["color_space"][:2] == ["RGBA", "U16"], case["color_space"]
    original = case["before_tree"][0]
    assert case["after_tree"] == [[GROUP_LAYER, "grouplayer", RESULT_LAYERS], original]
    assert case["original_untouched"]
    pixels16 = deep_p3_pixels(krita_run["photo"])
    h, w = pixels16.shape[:2]
    options = ReplaceOptions(harmonisation=Harmonisation(recolour=0.35, relight=0.4, halo=0.2))  # the driver's
    result = SkyReplacer(SkyMasker(device="cpu")).replace(pixels16, "sunset", options,
                                                          space=ColourSpace(DISPLAY_P3.read_bytes()))
    layers = result.editor_layers()
    out = krita_run["out"]
    bgra = {key: np.frombuffer((out / f"deep_{key}.bgra").read_bytes(), "<u2").reshape(h, w, 4)[..., [2, 1, 0, 3]]
            for key in ("sky", "lighting")}
    assert (out / "deep_mask.raw").read_bytes() == layers.matte.tobytes()
    assert np.array_equal(bgra["sky"][..., :3], layers.sky) and (bgra["sky"][..., 3] == 65535).all()
    assert (layers.sky % 257 != 0).mean() > 0.9  # values between 8-bit steps reach the layer
    assert np.array_equal(bgra["lighting"], layers.lighting)
    assert (layers.lighting[..., 3] > 0).mean() > 0.3  # harmonised: the lighting layer covers the foreground


def check_float_case(krita_run: dict) -> None:
    """A 32-bit float document in Krita's linear sRGB (sRGB-elle-V2-g10): float layers that equal the
    core's replacement of those pixels in that (linear) space, at 16-bit precision."""
    from clnsod_core.arrays import to_u16
    from clnsod_core.compositing.compose import Harmonisation
    from clnsod_core.imaging.colour import ColourSpace
    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer

    report = _main(krita_run)
    case = report["cases"]["float"]
    assert "error_text" not in case, case.get("error_text")
    assert case["color_space"] == ["RGBA", "F32", "sRGB-elle-V2-g10.icc"], case["color_space"]
    assert case["after_tree"][0] == [GROUP_LAYER, "grouplayer", RESULT_LAYERS] and case["original_untouched"]
    w, h = case["size"]
    out = krita_run["out"]
    original = np.frombuffer((out / "float_original.raw").read_bytes(), "<f4").reshape(h, w, 4)
    profile = next(Path(p) for p in ("/usr/share/color/icc/krita/sRGB-elle-V2-g10.icc",
                                     "/usr/share/krita/profiles/sRGB-elle-V2-g10.icc") if Path(p).is_file())
    options = ReplaceOptions(harmonisation=Harmonisation(recolour=0.35, relight=0.4, halo=0.2))
    result = SkyReplacer(SkyMasker(device="cpu")).replace(to_u16(original[..., :3]), "sunset", options,
                                                          space=ColourSpace(profile.read_bytes()))
    layers = result.editor_layers()
    floats = {key: np.frombuffer((out / f"float_{key}.bgra").read_bytes(), "<f4").reshape(h, w, 4)
              for key in ("sky", "lighting")}
    assert (out / "float_mask.raw").read_bytes() == layers.matte.tobytes()
    assert np.array_equal(to_u16(floats["sky"][..., :3]), layers.sky)
    assert np.array_equal(to_u16(floats["lighting"]), layers.lighting)
    assert (layers.lighting[..., 3] > 0).mean() > 0.3


def test_16_bit_display_p3_document_in_real_krita(krita_run: dict) -> None:
    check_deep_case(krita_run)


def test_float_linear_document_in_real_krita(krita_run: dict) -> None:
    check_float_case(krita_run)


def check_realism_case(krita_run: dict) -> None:
    """A calm lake with --haze 0.5: the group also holds "Reflection" and "Horizon haze" on top, each
    equal to the core's layer, and the document exported flat equals the core's composite."""
    from clnsod_core.compositing.compose import Harmonisation
    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer

    report = _main(krita_run)
    case = report["cases"]["realism"]
    assert "error_text" not in case, case.get("error_text")
    original = case["before_tree"][0]
    overlays = [["Horizon haze", "paintlayer", []], ["Reflection", "paintlayer", []]]
    assert case["after_tree"] == [[GROUP_LAYER, "grouplayer", overlays + RESULT_LAYERS], original]
    assert case["original_untouched"]
    photo = np.asarray(Image.open(krita_run["water_photo"]).convert("RGB"))
    h, w = photo.shape[:2]
    options = ReplaceOptions(harmonisation=Harmonisation(recolour=0.0, relight=0.0, haze=0.5))  # the driver's
    result = SkyReplacer(SkyMasker(device="cpu")).replace(photo, "blue-cumulus", options)
    layers = result.editor_layers()
    out = krita_run["out"]
    for key, layer in (("reflection", layers.reflection), ("haze", layers.haze)):
        got = np.frombuffer((out / f"realism_{key}.bgra").read_bytes(), np.uint8).reshape(h, w, 4)[..., [2, 1, 0, 3]]
        visible = layer[..., 3] > 0
        assert np.array_equal(got[..., 3], layer[..., 3]) and np.array_equal(got[visible], layer[visible]), key
    flat = np.asarray(Image.open(out / "realism.png").convert("RGB")).astype(int)
    assert np.abs(flat - result.composite).max() <= 3


def test_reflection_and_haze_layers_in_real_krita(krita_run: dict) -> None:
    check_realism_case(krita_run)
