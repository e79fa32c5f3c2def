"""The plugin <-> core exchange: the real core process, driven by the plugins' own client.

These run the same client code the Krita and GIMP plugins run (plugin/common/bridge_client.py)
against the real ``python -m clnsod_core.frontends.bridge`` with the embedded weights.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clnsod_core.arrays import to_u8, to_u16
from clnsod_core.compositing.compose import Harmonisation, SkyPlacement
from clnsod_core.compositing.layers import lighting_layer, normal_blend, sky_over_original
from clnsod_core.compositing.skies import PRESETS
from clnsod_core.frontends import bridge as core_bridge
from clnsod_core.masking.inference import SkyMasker
from clnsod_core.masking.matte import MatteOptions
from clnsod_core.options import OPTIONS
from clnsod_core.replace import ReplaceOptions, SkyReplacer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin" / "common"))
import bridge_client  # noqa: E402  (stdlib-only plugin module, not a package)

# The plugins' option table, as install_plugin.py stores it: the real core's (no copy, no mock).
TABLE = bridge_client.OptionTable.from_data(json.loads(json.dumps(core_bridge.option_table())))


@pytest.fixture(scope="module")
def photo(landscape_photo: Path) -> np.ndarray:
    with Image.open(landscape_photo) as im:
        return np.asarray(im.convert("RGB").resize((480, 320)))


@pytest.fixture(scope="module")
def replacer() -> SkyReplacer:
    return SkyReplacer(SkyMasker(device="cpu"))


def _bgra(rgb: np.ndarray) -> bytes:
    h, w = rgb.shape[:2]
    out = np.full((h, w, 4), 255, np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = rgb[..., 2], rgb[..., 1], rgb[..., 0]
    return out.tobytes()


def _rgba_from(data: bytes, h: int, w: int, pixel_format: str) -> np.ndarray:
    px = np.frombuffer(data, np.uint8).reshape(h, w, 4)
    return px[..., [2, 1, 0, 3]] if pixel_format == "BGRA8" else px.copy()


def _run(job: bridge_client.Job) -> tuple[bridge_client.Event, list[bridge_client.Event]]:
    progress: list[bridge_client.Event] = []
    final = bridge_client.run_blocking(job, sys.executable, progress.append)
    return final, progress


def test_lighting_layer_rebuilds_the_composite_over_sky_and_original(photo: np.ndarray, replacer: SkyReplacer) -> None:
    options = ReplaceOptions(harmonisation=Harmonisation(recolour=0.8, relight=0.8, halo=0.5))
    result = replacer.replace(photo, "golden-hour", options)
    matte, sky = to_u8(result.matte), to_u8(result.sky)
    layer = lighting_layer(photo, sky, matte, result.composite)
    below = (sky_over_original(photo, sky, matte) * 255 + 0.5).astype(np.uint8)
    stacked = normal_blend(below, layer)
    error = np.abs(stacked.astype(int) - result.composite.astype(int))
    assert error.max() <= 3 and error.mean() < 0.3
    fg = matte == 0
    assert (layer[..., 3][fg] > 0).mean() > 0.5  # harmonisation really changed the foreground
    assert layer[..., 3][matte == 255].max() == 0  # pure sky needs no lighting


def test_lighting_layer_is_transparent_without_harmonisation(photo: np.ndarray, replacer: SkyReplacer) -> None:
    options = ReplaceOptions(harmonisation=Harmonisation(recolour=0.0, relight=0.0))
    result = replacer.replace(photo, "sunset", options)
    layer = lighting_layer(photo, to_u8(result.sky), to_u8(result.matte), result.composite)
    assert layer[..., 3].max() == 0


def test_replace_job_layers_match_the_cli_composite(photo: np.ndarray, replacer: SkyReplacer) -> None:
    h, w = photo.shape[:2]
    pixels = _bgra(photo)
    options = {"sky": "dramatic-clouds", "recolour": 0.5, "relight": 0.3, "edge_shift": 2.0, "sky_scale": 1.3,
               "sky_shift_x": 0.1, "sky_flip": True, "device": "cpu"}
    job = bridge_client.Job(w, h, "BGRA8", pixels, options, TABLE)
    try:
        final, progress = _run(job)
        assert final.kind == "done", final.message
        assert sorted(os.listdir(job.dir)) == ["input.raw", "lighting.raw", "matte.raw", "request.json", "sky.raw"]
        assert os.stat(job.dir).st_mode & 0o777 == 0o700  # private: other users cannot read the photo
        assert os.stat(os.path.join(job.dir, "input.raw")).st_mode & 0o777 == 0o600
        assert [e.fraction for e in progress] == sorted(e.fraction for e in progress) and len(progress) >= 4
        matte = np.frombuffer(job.read_output("matte"), np.uint8).reshape(h, w)
        sky = _rgba_from(job.read_output("sky"), h, w, "BGRA8")
        lighting = _rgba_from(job.read_output("lighting"), h, w, "BGRA8")
        with open(os.path.join(job.dir, "input.raw"), "rb") as handle:
            assert handle.read() == pixels  # the plugin's copy of the original is untouched
    finally:
        job.cleanup()
    assert not os.path.exists(job.dir)
    assert (sky[..., 3] == 255).all()
    expected = replacer.replace(photo, "dramatic-clouds", ReplaceOptions(
        matte=MatteOptions(edge_shift=2.0), placement=SkyPlacement(scale=1.3, shift_x=0.1, flip=True),
        harmonisation=Harmonisation(recolour=0.5, relight=0.3)))
    assert np.array_equal(matte, to_u8(expected.matte))
    below = (sky_over_original(photo, sky[..., :3], matte) * 255 + 0.5).astype(np.uint8)
    stacked = normal_blend(below, lighting)
    assert np.abs(stacked.astype(int) - expected.composite.astype(int)).max() <= 3


ICC = Path(__file__).parent / "data" / "icc"


@pytest.mark.parametrize("pixel_format", ["RGBA16", "BGRA16", "RGBAF32", "RGBAF16"])
def test_deep_display_p3_image_gets_layers_at_its_depth_and_in_its_space(photo: np.ndarray, replacer: SkyReplacer,
                                                                         pixel_format: str) -> None:
    """A 16-bit or float image in Display P3 (as Krita and GIMP hold them): the layers come back in that
    depth and space, and stacked they equal the core's own replacement of that image."""
    from clnsod_core.compositing.compose import lowest_sky_line, place_sky, sky_region_height
    from clnsod_core.imaging.colour import SRGB, ColourSpace, convert
    from clnsod_core.replace import preset_sky

    p3 = (ICC / "DisplayP3-v4.icc").read_bytes()
    space = ColourSpace(p3)
    image16 = convert(photo.astype(np.uint16) * 257, SRGB, space)
    h, w = photo.shape[:2]
    fmt = core_bridge.PIXEL_FORMATS[pixel_format]
    data = np.empty((h, w, 4), fmt.dtype)
    scale = 65535.0 if np.dtype(fmt.dtype).kind == "f" else 1.0
    for channel, position in enumerate(fmt.order):
        data[..., position] = image16[..., channel] / scale
    data[..., 3] = 65535 / scale
    options = {"sky": "sunset", "relight": 0.3, "device": "cpu"}
    job = bridge_client.Job(w, h, pixel_format, data.tobytes(), options, TABLE, icc_profile=p3)
    try:
        final, _ = _run(job)
        assert final.kind == "done", final.message
        layers = {key: np.frombuffer(job.read_output(key), fmt.dtype).reshape(h, w, 4) for key in ("sky", "lighting")}
        matte = np.frombuffer(job.read_output("matte"), np.uint8).reshape(h, w)
    finally:
        job.cleanup()
    sky, lighting = ((layers[key][..., [*fmt.order, 3]].astype(np.float64) * scale / 65535) for key in ("sky", "lighting"))
    seen = to_u16(data[..., list(fmt.order)].astype(np.float32) * np.float32(scale / 65535))  # half floats round
    expected = replacer.replace(seen, "sunset", ReplaceOptions(harmonisation=Harmonisation(relight=0.3)), space=space)
    photo_f = seen.astype(np.float64) / 65535
    m = matte[..., None] / 255.0
    below = sky[..., :3] * m + photo_f * (1 - m)
    a = lighting[..., 3:]
    stacked = lighting[..., :3] * a + below * (1 - a)
    step = 1 / 1023 if pixel_format == "RGBAF16" else 1 / 65535  # half floats hold ~10 bits in [0.5, 1]
    assert np.abs(stacked - expected.composite / 65535).max() <= 3 * step
    # The sky layer is the sRGB preset converted into Display P3 (rendered and placed as the core
    # does for this matte), not the sRGB numbers pasted in.
    bottom = lowest_sky_line(expected.matte)
    preset = preset_sky("sunset", w, sky_region_height(h, bottom), 0)
    sky_srgb = place_sky(preset, h, w, bottom, SkyPlacement())
    region = matte == 255
    assert np.abs(sky[..., :3] - convert(sky_srgb, SRGB, space))[region].mean() < 1 / 255
    assert np.abs(sky[..., :3] - sky_srgb)[region].mean() > 4 / 255


def test_mask_job_writes_only_the_matte(photo: np.ndarray, replacer: SkyReplacer) -> None:
    h, w = photo.shape[:2]
    rgba = np.dstack([photo, np.full((h, w), 255, np.uint8)])
    job = bridge_client.Job(w, h, "RGBA8", rgba.tobytes(), {"mode": "mask", "edge_fade": 3.0}, TABLE)
    try:
        final, _ = _run(job)
        assert final.kind == "done", final.message
        assert final.files == {"matte": "matte.raw"}
        matte = np.frombuffer(job.read_output("matte"), np.uint8).reshape(h, w)
    finally:
        job.cleanup()
    assert np.array_equal(matte, to_u8(replacer.matte(photo, MatteOptions(edge_fade=3.0))))
    assert matte[: h // 4].mean() > 200 and matte[-h // 4 :].mean() < 30  # sky on top, ground below


def test_unusable_sky_file_is_one_clear_error(tmp_path: Path, photo: np.ndarray) -> None:
    bad_sky = tmp_path / "sky.jpg"
    bad_sky.write_bytes(b"<html>not a picture</html>")
    h, w = photo.shape[:2]
    job = bridge_client.Job(w, h, "BGRA8", _bgra(photo), {"sky": str(bad_sky)}, TABLE)
    try:
        final, _ = _run(job)
    finally:
        job.cleanup()
    assert final.kind == "error"
    assert str(bad_sky) in final.message and "not an image" in final.message


def _raw_job(tmp_path: Path, request: dict[str, object], pixels: bytes) -> Path:
    job_dir = tmp_path / "job"
    job_dir.mkdir(mode=0o700)
    (job_dir / "request.json").write_text(json.dumps(request))
    (job_dir / "input.raw").write_bytes(pixels)
    return job_dir


def _core(job_dir: Path) -> tuple[int, list[dict[str, object]]]:
    proc = subprocess.run([sys.executable, "-m", "clnsod_core.frontends.bridge", str(job_dir)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


GOOD = {"protocol": core_bridge.PROTOCOL, "options_digest": core_bridge.options_digest(), "width": 4, "height": 2, "pixel_format": "RGBA8"}


@pytest.mark.parametrize(("change", "message"), [
    ({"output": "/tmp/evil.png"}, "unknown request field(s): output"),
    ({"files": {"matte": "../../evil"}}, "unknown request field(s): files"),
    ({"width": 5}, "input.raw holds 32 bytes"),
    ({"protocol": 1}, "protocol 1 not supported"),
    ({"options_digest": "0" * 64}, "reinstall it with install_plugin.py"),
    ({"pixel_format": "ARGB8"}, "pixel_format must be one of"),
    ({"recolour": "lots"}, "'recolour' must be float"),
    ({"mode": "paint"}, "mode must be"),
])
def test_malformed_requests_exit_2_and_write_nothing(tmp_path: Path, change: dict[str, object], message: str) -> None:
    job_dir = _raw_job(tmp_path, {**GOOD, **change}, bytes(32))
    code, events = _core(job_dir)
    assert code == 2
    assert message in str(events[-1]["error"])
    assert sorted(p.name for p in job_dir.iterdir()) == ["input.raw", "request.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job"]


def test_a_shared_or_symlinked_job_folder_is_refused(tmp_path: Path) -> None:
    job_dir = _raw_job(tmp_path, GOOD, bytes(32))
    job_dir.chmod(0o755)
    code, events = _core(job_dir)
    assert code == 2 and "must be private" in str(events[-1]["error"])
    job_dir.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(job_dir)
    code, events = _core(link)
    assert code == 2 and "symlink" in str(events[-1]["error"])
    elsewhere = tmp_path / "secret.json"
    elsewhere.write_text(json.dumps(GOOD))
    (job_dir / "request.json").unlink()
    (job_dir / "request.json").symlink_to(elsewhere)
    code, events = _core(job_dir)
    assert code == 2 and "cannot read request.json" in str(events[-1]["error"])


def test_outputs_replace_planted_symlinks_instead_of_writing_through_them(tmp_path: Path, photo: np.ndarray) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    h, w = photo.shape[:2]
    job = bridge_client.Job(w, h, "BGRA8", _bgra(photo), {"mode": "mask"}, TABLE)
    try:
        os.symlink(victim, os.path.join(job.dir, "matte.raw"))
        final, _ = _run(job)
        assert final.kind == "done", final.message
        assert not os.path.islink(os.path.join(job.dir, "matte.raw"))
    finally:
        job.cleanup()
    assert victim.read_text() == "precious"


def test_missing_or_broken_core_python_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bridge_client.PYTHON_OVERRIDE, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(bridge_client.BridgeError, match="core Python not found: .*nowhere"):
        bridge_client.core_python(str(tmp_path))
    monkeypatch.delenv(bridge_client.PYTHON_OVERRIDE)
    with pytest.raises(bridge_client.BridgeError, match="not configured"):
        bridge_client.core_python(str(tmp_path))
    (tmp_path / "core.json").write_text(json.dumps({"python": sys.executable}))
    assert bridge_client.core_python(str(tmp_path)) == sys.executable
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n")
    crashing.chmod(0o755)
    job = bridge_client.Job(1, 1, "RGBA8", bytes(4), {}, TABLE)
    try:
        final = bridge_client.run_blocking(job, str(crashing), lambda _e: None)
    finally:
        job.cleanup()
    assert final.kind == "error"
    assert "stopped unexpectedly (exit status 1)" in final.message and "No module named torch" in final.message


def test_core_environment_drops_the_hosts_python_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHOME", "/opt/krita/python")
    monkeypatch.setenv("PYTHONPATH", "/opt/krita/lib")
    monkeypatch.setenv("CLNSOD_CACHE_DIR", "/tmp/cache")
    env = bridge_client.core_environment()
    assert "PYTHONHOME" not in env and "PYTHONPATH" not in env
    assert env["CLNSOD_CACHE_DIR"] == "/tmp/cache"


def test_plugin_options_match_the_core() -> None:
    """The plugins' table is the core's: same presets, devices, defaults; every value the dialogs allow
    is one the core accepts, and one step past a bound is refused before a job starts."""
    assert TABLE.presets == tuple(PRESETS) and TABLE.digest == core_bridge.options_digest()
    request_options = {o.name: o for o in OPTIONS if "bridge" in o.surfaces or "dialog" in o.surfaces}
    assert TABLE.defaults == {name: o.default for name, o in request_options.items()}
    assert TABLE.devices == request_options["device"].choices and TABLE.modes == request_options["mode"].choices
    for option in TABLE.numbers:
        for value in (option.minimum, option.maximum):
            opts = TABLE.validate({option.key: option.from_widget(value)})
            ReplaceOptions.from_flat(opts).validate()
        with pytest.raises(bridge_client.BridgeError, match=re.escape(f"{option.label} must be between")):
            TABLE.validate({option.key: option.maximum + 1})
    with pytest.raises(bridge_client.BridgeError, match="unknown option"):
        TABLE.validate({"quality": 90})  # a CLI-only option is not part of a request


def test_core_stops_when_the_plugin_goes_away(landscape_photo: Path) -> None:
    """A plugin that dies (or is killed by its host) closes the core's stdin: the core must exit."""
    with Image.open(landscape_photo) as im:
        big = np.asarray(im.convert("RGB").resize((4000, 3000)))
    job = bridge_client.Job(4000, 3000, "BGRA8", _bgra(big), {"sky": "sunset"}, TABLE)
    try:
        process = subprocess.Popen(job.command(sys.executable), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=bridge_client.core_environment(), text=True)
        assert process.stdout is not None and process.stdin is not None
        first = bridge_client.parse_event(process.stdout.readline())
        assert first is not None and first.kind == "progress"
        process.stdin.close()
        code = process.wait(timeout=30)
        rest = process.stdout.read()
        left_behind = os.path.exists(job.dir)
    finally:
        job.cleanup()
    assert code == core_bridge.EXIT_ORPHANED
    assert '"done"' not in rest
    assert not left_behind  # nobody is left to delete the copy of the photo: the core did
