"""The core that stays up for an editor session (clnsod_core/frontends/core_server.py), driven through
the plugins' own client (plugin/common/bridge_client.py): a real core process on a real Unix socket,
the real model and real photos. The "editor" is a `sleep` process the test owns and ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

sys.path.insert(0, str(REPO / "plugin" / "common"))
import bridge_client as bc  # noqa: E402 - the plugins' standard-library client

PHOTO_WIDTH = 1200


@pytest.fixture(scope="module")
def table() -> bc.OptionTable:
    printed = subprocess.run([sys.executable, "-m", "clnsod_core.frontends.bridge", "--print-options"],
                             capture_output=True, text=True, check=True)
    return bc.OptionTable.from_data(json.loads(printed.stdout))


@pytest.fixture()
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen]:
    """A stand-in editor process (the core watches its pid) and a private runtime folder."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with Image.open(REPO / "examples" / "sunset.jpg") as im:
        im = im.convert("RGB")
        return np.asarray(im.resize((PHOTO_WIDTH, im.height * PHOTO_WIDTH // im.width), Image.Resampling.LANCZOS))


def open_session(table: bc.OptionTable, editor: subprocess.Popen, photo: np.ndarray) -> bc.PhotoSession:
    h, w = photo.shape[:2]
    rgba = np.dstack([photo, np.full((h, w), 255, np.uint8)])
    job = bc.Job(w, h, "RGBA8", rgba.tobytes(), {}, table)
    session = bc.PhotoSession(bc.CoreClient(sys.executable, "test", editor.pid), job)
    session.open()
    return session


def core_pid(client: bc.CoreClient) -> int:
    return int(client.call("hello")["pid"])


def test_previews_recompute_only_what_a_setting_reaches_and_ok_renders_exactly_replace(
        table: bc.OptionTable, editor: subprocess.Popen, photo: np.ndarray) -> None:
    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer

    session = open_session(table, editor, photo)
    try:
        assert session.original is not None and session.original.width == 1000  # reduced to screen size
        options = table.validate({"sky": "blue-cumulus", "device": "cpu"})
        first = session.preview(options)
        assert first is not None and first.sky_found
        assert set(first.recomputed) == {"matte", "sky", "placement", "composite", "overlays"}
        seen = {first.rgb}
        for change, stages in (({"relight": 0.9}, {"composite"}), ({"haze": 0.6}, {"overlays"}),
                               ({"sky_scale": 1.6}, {"placement", "composite", "overlays"}),
                               ({"sky": "stormy"}, {"sky", "placement", "composite", "overlays"}),
                               ({"edge_fade": 20.0}, {"matte", "sky", "placement", "composite", "overlays"})):
            options = dict(options, **change)
            shown = session.preview(options)
            assert shown is not None and set(shown.recomputed) == stages, (change, shown.recomputed)
            assert shown.rgb not in seen, f"{change} did not change the preview"
            seen.add(shown.rgb)
        mask_view = session.preview(dict(options, mode="mask"))
        assert mask_view is not None and mask_view.recomputed == ()  # the matte is remembered

        done = session.render(options, lambda event: None)
        assert done.kind == "done" and set(done.files or {}) == {"matte", "sky", "lighting", "haze"}
        expected = SkyReplacer(SkyMasker(device="cpu")).replace(
            photo, "stormy", ReplaceOptions.from_flat(dict(table.defaults, **options))).editor_layers()
        h, w = photo.shape[:2]
        assert session.job.read_output("matte") == expected.matte.tobytes()
        rgba = np.frombuffer(session.job.read_output("lighting"), np.uint8).reshape(h, w, 4)
        assert np.array_equal(rgba, expected.lighting)
        sky = np.frombuffer(session.job.read_output("sky"), np.uint8).reshape(h, w, 4)[..., :3]
        assert np.array_equal(sky, expected.sky)
    finally:
        session.close()
    assert not os.path.exists(session.job.dir)


def test_a_second_dialog_reuses_the_core_and_the_network_answer(table: bc.OptionTable, editor: subprocess.Popen,
                                                                 photo: np.ndarray) -> None:
    first = open_session(table, editor, photo)
    first.preview(table.validate({"device": "cpu"}))
    pid = core_pid(first.client)
    first.close()
    first.client.disconnect()
    client = bc.CoreClient(sys.executable, "test", editor.pid)
    assert client.call("hello")["pid"] == pid and client.starts == 0  # connected to the running core
    h, w = photo.shape[:2]
    job = bc.Job(w, h, "RGBA8", np.dstack([photo, np.full((h, w), 255, np.uint8)]).tobytes(), {}, table)
    answer = client.call("open", job=job.dir)
    assert answer["network_remembered"] is True  # same pixels: the network does not run again
    client.call("close", session=answer["session"])
    job.cleanup()


def test_the_core_exits_with_the_editor_and_deletes_open_job_folders(table: bc.OptionTable,
                                                                     editor: subprocess.Popen,
                                                                     photo: np.ndarray) -> None:
    session = open_session(table, editor, photo[:300, :400].copy())
    core = session.client._process  # started by this client: a child of the test, reaped by poll()
    assert core is not None and core.pid == core_pid(session.client)
    editor.kill()
    editor.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (os.path.exists(session.job.dir) or core.poll() is None):
        time.sleep(0.1)
    assert core.poll() == 0, "the core outlived its editor"
    assert not os.path.exists(session.job.dir), "the copy of the photo was left behind"
    assert not os.path.exists(session.client.path)


def test_a_crashed_core_is_restarted_and_the_preview_goes_on(table: bc.OptionTable, editor: subprocess.Popen,
                                                             photo: np.ndarray) -> None:
    session = open_session(table, editor, photo[:400, :600].copy())
    try:
        options = table.validate({"device": "cpu"})
        assert session.preview(options) is not None
        os.kill(core_pid(session.client), signal.SIGKILL)
        shown = session.preview(dict(options, relight=0.9))
        assert shown is not None and shown.sky_found
        assert session.notice == bc.RESTARTED_MESSAGE and session.client.starts == 2
    finally:
        session.close()


def test_cancel_stops_a_render_and_bad_requests_get_one_clear_error(table: bc.OptionTable,
                                                                   editor: subprocess.Popen,
                                                                   photo: np.ndarray) -> None:
    session = open_session(table, editor, photo)
    try:
        session.cancel_render()  # before the render is even sent: deterministic
        assert session.render(table.validate({"device": "cpu"}), lambda event: None).message == "cancelled"
        assert not os.path.exists(os.path.join(session.job.dir, "sky.raw"))
        with pytest.raises(bc.BridgeError, match="bad request from the plugin: unknown option"):
            session.client.call("preview", session=session.id, options={"recolor": 1})
        with pytest.raises(bc.BridgeError, match="no open session"):
            session.client.call("preview", session="s999", options={})
        with pytest.raises(bc.BridgeError, match="sky image unusable"):
            bad = os.path.join(session.job.dir, "not-a-sky.jpg")
            Path(bad).write_text("text")
            session.preview(table.validate({"sky": bad, "device": "cpu"}))
        assert session.preview(table.validate({"device": "cpu"})) is not None  # still serving
    finally:
        session.close()


def test_previews_asked_while_one_runs_coalesce_to_the_newest(table: bc.OptionTable, editor: subprocess.Popen,
                                                              photo: np.ndarray) -> None:
    session = open_session(table, editor, photo)
    shown: list[bc.Preview] = []
    finished = threading.Event()
    worker = bc.BackgroundCore(lambda function: function())  # results run on the worker: enough here
    try:
        for relight in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
            worker.preview(session, table.validate({"relight": relight, "device": "cpu"}), shown.append,
                           lambda message: pytest.fail(message))
        worker.submit(lambda: None, lambda _result: finished.set(), lambda message: None)
        assert finished.wait(60)
        newest = session.preview(table.validate({"relight": 0.6, "device": "cpu"}))
        assert 1 <= len(shown) <= 2 and shown[-1].rgb == newest.rgb  # the newest settings, not all six
    finally:
        worker.stop()
        session.close()


def test_the_socket_folder_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    (shared / f"clnsod-{os.getuid()}").mkdir(parents=True, mode=0o755)
    (shared / f"clnsod-{os.getuid()}").chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with pytest.raises(bc.BridgeError, match="private"):
        bc.core_socket_path("test", os.getpid())


def test_a_sky_file_previews_from_a_reduced_copy_and_renders_at_full_size(
        table: bc.OptionTable, editor: subprocess.Popen, photo: np.ndarray, tmp_path: Path) -> None:
    from conftest import PHOTOS

    from clnsod_core.masking.inference import SkyMasker
    from clnsod_core.replace import ReplaceOptions, SkyReplacer, load_sky

    sky_file = tmp_path / "big-sky.png"  # larger than any preview needs: previews use a reduced copy
    with Image.open(PHOTOS / "plasma_Kite.jpg") as im:
        im.convert("RGB").crop((0, 0, im.width, im.height // 2)).save(sky_file)
    session = open_session(table, editor, photo)
    try:
        options = table.validate({"sky": str(sky_file), "device": "cpu", "recolour": 0.0, "relight": 0.0})
        first = session.preview(options)
        again = session.preview(dict(options, halo=0.3))
        assert first is not None and again is not None and "sky" not in again.recomputed
        assert session.render(options, lambda event: None).kind == "done"
        expected = SkyReplacer(SkyMasker(device="cpu")).replace(
            photo, load_sky(sky_file, 10**9), ReplaceOptions.from_flat(dict(table.defaults, **options))).editor_layers()
        h, w = photo.shape[:2]
        sky = np.frombuffer(session.job.read_output("sky"), np.uint8).reshape(h, w, 4)[..., :3]
        assert np.array_equal(sky, expected.sky), "the render did not use the full-size sky file"
    finally:
        session.close()
