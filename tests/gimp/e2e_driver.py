"""GIMP batch driver for tests/test_gimp_e2e.py (never shipped).

Runs inside ``gimp-console-3.0 --batch-interpreter python-fu-eval``: loads the test photo, calls
``plug-in-clnsod-replace-sky`` non-interactively, and dumps what the test asserts on (layer tree,
raw pixels, error text, timings) into $CLNSOD_E2E_OUT/<case>/. It only collects; the checks live in
the pytest test, which has numpy and readable assertion messages. Any exception here makes
gimp-console exit non-zero, which the test reports.

Environment: CLNSOD_E2E_CASE = "run" (three procedure calls: neutral, harmonised with a sky file,
mask only on a shifted layer), "deep" (a harmonised call on CLNSOD_E2E_DEEP_INPUT, a 16-bit Display
P3 photo, as loaded and converted to 32-bit float linear; pixels dumped as 16-bit values in the
image's own colour space), "realism" (a calm lake with haze: reflection and haze layers), "gui"
(interactive, in gimp-3.0 under Xvfb, driven by gui_session.sh) or "broken-core" (one call expected
to fail), CLNSOD_E2E_INPUT (photo), CLNSOD_E2E_SKY (sky image file), CLNSOD_E2E_OUT (output folder).
"""

import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, Gio

PROCEDURE = "plug-in-clnsod-replace-sky"
CASE = os.environ["CLNSOD_E2E_CASE"]
OUT = os.environ["CLNSOD_E2E_OUT"]
PHOTO = os.environ["CLNSOD_E2E_INPUT"]


def load(path):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))


def save(image, path):
    if not Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path), None):
        raise RuntimeError(f"saving {path} failed")


def pixels(drawable, fmt):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))


def dump(folder, name, data):
    with open(os.path.join(folder, name), "wb") as handle:
        handle.write(data)


def tree(items):
    """Layer stack top to bottom, with masks, offsets and composite spaces."""
    nodes = []
    for item in items:
        node = {"name": item.get_name(), "size": [item.get_width(), item.get_height()],
                "offsets": list(item.get_offsets()[1:]), "group": item.is_group()}
        if isinstance(item, Gimp.Layer):
            node["mask"] = item.get_mask() is not None
            node["composite_space"] = item.get_composite_space().value_nick
        if item.is_group():
            node["children"] = tree(item.get_children())
        nodes.append(node)
    return nodes


def structure(image):
    return {"layers": tree(image.get_layers()), "channels": [c.get_name() for c in image.get_channels()],
            "channels_visible": [c.get_visible() for c in image.get_channels()],
            "size": [image.get_width(), image.get_height()]}


def call(image, **arguments):
    """Run the procedure non-interactively on the image's only layer; returns status, error, seconds."""
    procedure = Gimp.get_pdb().lookup_procedure(PROCEDURE)
    if procedure is None:
        raise RuntimeError(f"{PROCEDURE} is not registered (plug-in not installed or failed to load)")
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", image.get_layers()[:1])
    for name, value in arguments.items():
        config.set_property(name, value)
    start = time.monotonic()
    result = procedure.run(config)
    seconds = time.monotonic() - start
    status = result.index(0)
    error = result.index(1) if result.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else None
    return {"status": status.value_nick, "error": error, "seconds": round(seconds, 3),
            "last_error": Gimp.get_pdb().get_last_error()}


def flatten_and_save(image, folder, stem):
    """Flattened copy: raw RGB (for exact checks) and PNG; the layered image as XCF."""
    save(image, os.path.join(folder, f"{stem}.xcf"))
    copy = image.duplicate()
    flat = copy.flatten()
    dump(folder, f"{stem}_flat.raw", pixels(flat, "R'G'B' u8"))
    save(copy, os.path.join(folder, f"{stem}.png"))
    copy.delete()


def run_replace(folder, stem, offsets=(0, 0), **arguments):
    image = load(PHOTO)
    original = image.get_layers()[0]
    original.set_offsets(*offsets)  # a shifted layer exercises the canvas-sized channel's clipping
    before = pixels(original, "R'G'B'A u8")
    dump(folder, f"{stem}_before.raw", before)
    report = {"call": call(image, **arguments), "structure": structure(image)}
    after = pixels(original, "R'G'B'A u8")
    report["original_unchanged"] = after == before
    layers = {layer.get_name(): layer for layer in image.get_layers()}
    if "New sky" in layers:
        sky = layers["New sky"]
        dump(folder, f"{stem}_sky.raw", pixels(sky, "R'G'B'A u8"))
        if sky.get_mask() is not None:
            dump(folder, f"{stem}_layermask.raw", pixels(sky.get_mask(), "Y u8"))
    if "Foreground lighting" in layers:
        dump(folder, f"{stem}_lighting.raw", pixels(layers["Foreground lighting"], "R'G'B'A u8"))
    # Channels of 8-bit non-linear images are stored gamma-encoded: read them in their own encoding.
    u8_non_linear = image.get_precision() == Gimp.Precision.U8_NON_LINEAR
    report["precision"] = image.get_precision().value_nick
    for channel in image.get_channels():
        if channel.get_name() == "Sky mask":
            dump(folder, f"{stem}_channel.raw", pixels(channel, "Y' u8" if u8_non_linear else "Y u8"))
    selection = image.get_selection()
    report["selection_empty"] = bool(selection.is_empty(image))
    if not report["selection_empty"]:
        dump(folder, f"{stem}_selection.raw", pixels(selection, "Y u8"))
    flatten_and_save(image, folder, stem)
    reloaded = load(os.path.join(folder, f"{stem}.xcf"))
    report["reloaded_structure"] = structure(reloaded)
    reloaded.delete()
    image.delete()
    return report


def in_space(drawable, encoding):
    """A babl format name for ``encoding`` in the drawable's own colour space (plain names mean sRGB)."""
    return Babl.get_name(Babl.format_with_space(encoding, drawable.get_format()))


def run_deep(folder, stem, precision=None):
    """A 16-bit Display P3 photo (converted to ``precision`` first if given), harmonised replacement:
    everything dumped as 16-bit perceptual values in the image's own space."""
    image = load(os.environ["CLNSOD_E2E_DEEP_INPUT"])
    if precision is not None:
        image.convert_precision(precision)
    original = image.get_layers()[0]
    rgba16 = in_space(original, "R'G'B'A u16")
    before = pixels(original, rgba16)
    dump(folder, f"{stem}_before.raw", before)
    report = {"call": call(image, sky="sunset", device="cpu"), "structure": structure(image),
              "precision": image.get_precision().value_nick,
              "profile": image.get_color_profile().get_label() if image.get_color_profile() else None}
    report["original_unchanged"] = pixels(original, rgba16) == before
    layers = {layer.get_name(): layer for layer in image.get_layers()}
    if "New sky" in layers:
        dump(folder, f"{stem}_sky.raw", pixels(layers["New sky"], rgba16))
        dump(folder, f"{stem}_layermask.raw", pixels(layers["New sky"].get_mask(), "Y u8"))
    if "Foreground lighting" in layers:
        dump(folder, f"{stem}_lighting.raw", pixels(layers["Foreground lighting"], rgba16))
    copy = image.duplicate()
    flat = copy.flatten()
    dump(folder, f"{stem}_flat.raw", pixels(flat, in_space(flat, "R'G'B' u16")))
    copy.delete()
    image.delete()
    return report


def wait_for(path, seconds=90):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {path}")
        time.sleep(0.2)


def run_gui(folder):
    """Interactive runs in the GUI: gui_session.sh works the live-preview dialog and presses OK, then
    Ctrl+Z and Ctrl+Y in the image window (the stack is recorded after each step: one undo step must
    undo it all); then a second Replace Sky, cancelled after its first preview, must leave the image
    exactly as it was."""
    image = load(PHOTO)
    Gimp.Display.new(image)
    report = {"call": call(image, **{"run-mode": Gimp.RunMode.INTERACTIVE}), "structure": structure(image)}
    layers = {layer.get_name(): layer for layer in image.get_layers()}
    if "New sky" in layers:
        dump(folder, "gui_sky.raw", pixels(layers["New sky"], "R'G'B'A u8"))
        dump(folder, "gui_layermask.raw", pixels(layers["New sky"].get_mask(), "Y u8"))
    if "Foreground lighting" in layers:
        dump(folder, "gui_lighting.raw", pixels(layers["Foreground lighting"], "R'G'B'A u8"))
    for step in ("undo", "redo"):
        open(os.path.join(folder, f"ready-for-{step}"), "w").close()
        wait_for(os.path.join(folder, f"{step}-done"))
        time.sleep(1.0)  # let GIMP finish the action before reading the image
        report[f"after_{step}"] = structure(image)
    before = {layer.get_name(): pixels(layer, "R'G'B'A u8") for layer in image.get_layers()}
    dirty = image.is_dirty()
    report["again"] = {"call": call(image, **{"run-mode": Gimp.RunMode.INTERACTIVE}), "structure": structure(image)}
    report["again"]["pixels_unchanged"] = before == {layer.get_name(): pixels(layer, "R'G'B'A u8")
                                                     for layer in image.get_layers()}
    report["again"]["dirty_unchanged"] = image.is_dirty() == dirty
    image.clean_all()  # no "unsaved changes" prompt on --quit
    return report


def main():
    folder = os.path.join(OUT, CASE)
    os.makedirs(folder, exist_ok=True)
    report = {"case": CASE, "gimp_version": Gimp.version()}
    if CASE == "run":
        neutral = {"sky": "sunset", "recolour": 0.0, "relight": 0.0, "device": "cpu"}
        report["neutral"] = run_replace(folder, "neutral", **neutral)
        sky_file = Gio.File.new_for_path(os.environ["CLNSOD_E2E_SKY"])
        report["harmonised"] = run_replace(folder, "harmonised", **{"sky-file": sky_file, "device": "cpu"})
        report["mask_only"] = run_replace(folder, "mask_only", offsets=(120, 60), **{"mask-only": True, "device": "cpu"})
    elif CASE == "deep":
        report["deep"] = run_deep(folder, "deep")
        report["deep_float"] = run_deep(folder, "deep_float", Gimp.Precision.FLOAT_LINEAR)
    elif CASE == "realism":  # CLNSOD_E2E_INPUT is a calm lake here: Reflection and Horizon haze layers
        report["realism"] = run_replace(folder, "realism", sky="blue-cumulus", haze=0.5, device="cpu")
    elif CASE == "gui":
        report["gui"] = run_gui(folder)
    elif CASE == "broken-core":
        image = load(PHOTO)
        report["broken"] = {"call": call(image, device="cpu"), "structure": structure(image)}
        image.delete()
    else:
        raise RuntimeError(f"unknown case {CASE}")
    with open(os.path.join(folder, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)


main()
