#!/usr/bin/env python3
"""GIMP 3 plug-in "Replace Sky" (Filters > Sky > Replace Sky...) for CLN-SOD.

The plug-in holds no ML: it sends the active layer's pixels to the CLN-SOD core, which runs in a
separate process with the core's own Python (see plugin/PROTOCOL.md and bridge_client.py), and
turns the returned matte, sky and lighting into layers. Standard library + gi only, because GIMP
runs plug-ins with its own Python (3.13 on Debian 13), which has no torch.

Result (replace mode), in one undo group, above the untouched original layer:
    Horizon haze          (only with haze > 0)
    Reflection            (only where calm water reflected the old sky)
    Foreground lighting   (straight-alpha layer; transparent where nothing changes)
    New sky               (opaque sky, layer mask = the matte)
    <original layer>      (never modified)
plus a canvas-sized channel "Sky mask" holding the matte.
Mask-only mode adds only the "Sky mask" channel and loads it as the selection (so the user can
act on the sky at once); no layer is added and the original is not modified.
"""

from __future__ import annotations

import os
import sys
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, GLib, GObject

# install_plugin.py copies bridge_client.py, core.json and options.json (the core's option table) next to this file.
PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PLUGIN_DIR)
import bridge_client as bridge
import replace_sky_logic as logic

PROCEDURE = "plug-in-clnsod-replace-sky"
BINARY = "clnsod-replace-sky"
# Pixels go to the core in the image's own colour space (with its ICC profile) and at its depth:
# 8-bit images as RGBA8, deeper ones (16/32-bit integer, half and full float) as RGBA16.
EIGHT_BIT = (Gimp.Precision.U8_LINEAR, Gimp.Precision.U8_NON_LINEAR, Gimp.Precision.U8_PERCEPTUAL)
# The matte is coverage. Layer masks are stored linear and read as linear opacity when compositing,
# so the matte goes in as linear "Y u8": a 50 % matte gives 50 % opacity (exact, checked in GIMP 3.0.4).
MASK_FORMAT = "Y u8"
SKY_LAYER = "New sky"
LIGHTING_LAYER = "Foreground lighting"
MASK_CHANNEL = "Sky mask"
MASK_CHANNEL_COLOR = "#3070ff"
FLAGS = GObject.ParamFlags.READWRITE
_TABLE: bridge.OptionTable | None = None
_SKIES: tuple[bridge.SkyChoice, ...] | None = None


class PluginError(Exception):
    """A failure to report to the user as a GIMP error message."""


def option_table() -> bridge.OptionTable:
    """The core's option table from options.json, read once per plug-in process (GIMP starts one
    process to register the procedure and one per run)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = bridge.load_option_table(PLUGIN_DIR)
    return _TABLE


def sky_choices(table: bridge.OptionTable) -> tuple[bridge.SkyChoice, ...]:
    """Presets and the user's sky library, asked of the core once per plug-in process (GIMP starts
    one per run, so skies added since show up); the presets alone if the core cannot say."""
    global _SKIES
    if _SKIES is None:
        try:
            _SKIES, _why = bridge.list_skies(bridge.core_python(PLUGIN_DIR), table)
        except bridge.BridgeError:
            _SKIES = bridge.preset_choices(table)
    return _SKIES


class ReplaceSky(Gimp.PlugIn):
    """Registers and runs ``plug-in-clnsod-replace-sky``."""

    def do_query_procedures(self) -> list[str]:
        return [PROCEDURE]

    def do_set_i18n(self, name: str) -> bool:
        return False  # no translations shipped

    def do_create_procedure(self, name: str) -> Gimp.Procedure:
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("RGB*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("_Replace Sky...")
        procedure.add_menu_path("<Image>/Filters/Sky")
        procedure.set_documentation(
            "Replace the sky of the active layer (CLN-SOD)",
            "Finds the sky with the CLN-SOD network and adds, above the untouched layer, a 'New sky' "
            "layer masked by the sky matte and a 'Foreground lighting' layer, plus a 'Sky mask' channel. "
            "A sky image file, when given, is used instead of the preset. Mask only adds just the "
            "'Sky mask' channel and selects it.",
            name,
        )
        procedure.set_attribution("CLN-SOD", "CLN-SOD authors", "2025")
        try:
            table = option_table()
        except bridge.BridgeError:
            return procedure  # registered without settings: running it reports the missing table
        add_arguments(procedure, table, sky_choices(table))
        return procedure

    def run(self, procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image,
            drawables: list[Gimp.Drawable], config: Gimp.ProcedureConfig, data: object) -> Gimp.ValueArray:
        """Dialog (interactive only), then the core, then the layers; every failure becomes an error."""
        try:
            table = option_table()
            if run_mode == Gimp.RunMode.INTERACTIVE:
                if not run_interactive(procedure, config, table, image, drawables):
                    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
            else:
                replace_sky(image, drawables, config, table)
        except (PluginError, bridge.BridgeError) as exc:
            return failure(procedure, str(exc))
        except Exception as exc:  # noqa: BLE001 - never let a bug crash the plug-in with a bare traceback
            return failure(procedure, f"internal error in the Replace Sky plug-in: {type(exc).__name__}: {exc}")
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def failure(procedure: Gimp.Procedure, message: str) -> Gimp.ValueArray:
    """EXECUTION_ERROR with the message: GIMP shows it in an error dialog (interactive runs) and
    hands it to the caller (scripts, batch)."""
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(f"Replace Sky: {message}"))


def add_arguments(procedure: Gimp.Procedure, table: bridge.OptionTable, skies: tuple[bridge.SkyChoice, ...]) -> None:
    """The same settings as the Krita dialog, generated from the core's option table."""
    for spec in logic.argument_specs(table, skies):
        if spec.kind == "choice":
            choice = Gimp.Choice.new()
            for index, (value, label) in enumerate(spec.choices):
                choice.add(value, index, label, "")
            procedure.add_choice_argument(spec.name, spec.label, spec.help, choice, str(spec.default), FLAGS)
        elif spec.kind == "file":
            procedure.add_file_argument(spec.name, spec.label, spec.help, Gimp.FileChooserAction.OPEN, True, None,
                                        FLAGS)
        elif spec.kind == "double":
            procedure.add_double_argument(spec.name, spec.label, spec.help, float(spec.minimum), float(spec.maximum),
                                          float(spec.default), FLAGS)
        elif spec.kind == "int":
            procedure.add_int_argument(spec.name, spec.label, spec.help, int(spec.minimum), int(spec.maximum),
                                       int(spec.default), FLAGS)
        elif spec.kind == "boolean":
            procedure.add_boolean_argument(spec.name, spec.label, spec.help, bool(spec.default), FLAGS)
        else:
            raise PluginError(f"internal error: argument kind {spec.kind!r}")


def run_interactive(procedure: Gimp.Procedure, config: Gimp.ProcedureConfig, table: bridge.OptionTable,
                    image: Gimp.Image, drawables: list[Gimp.Drawable]) -> bool:
    """The live-preview dialog, then the full render with its settings; False when cancelled.

    The photo goes to the core that stays up for the GIMP session once, when the dialog opens; the
    dialog (imported here, so headless runs never load GTK) previews every change, and OK renders the
    full-resolution layers of exactly those settings in the same core."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    import live_dialog

    opened = time.monotonic()
    layer = the_layer(drawables)
    GimpUi.init(BINARY)
    job, rgba_format = layer_job(image, layer, {}, table)
    client = bridge.CoreClient(bridge.core_python(PLUGIN_DIR), "gimp", live_dialog.editor_pid())
    session = bridge.PhotoSession(client, job)
    try:
        dialog = live_dialog.LiveDialog(procedure, config, table, sky_choices(table), session,
                                        logic.argument_names(table), opened)
        if not dialog.run():
            return False
        options = dialog.options()
        Gimp.progress_init("Replace Sky: rendering at full resolution")
        try:
            final = session.render(options, report_progress)
            outputs = read_results(job, options, final)
        finally:
            Gimp.progress_end()
    finally:
        session.close()
        client.disconnect()
    if outputs is not None:
        add_results(image, layer, options, rgba_format, *outputs)
    return True


def the_layer(drawables: list[Gimp.Drawable]) -> Gimp.Layer:
    """The one layer to work on; channels and layer masks are refused with a clear message."""
    if len(drawables) != 1:
        raise PluginError(f"select exactly one layer ({len(drawables)} selected)")
    drawable = drawables[0]
    if not isinstance(drawable, Gimp.Layer):  # Gimp.LayerMask is a Gimp.Channel, so refused too
        raise PluginError("select a layer (not a channel or a layer mask)")
    return drawable


def replace_sky(image: Gimp.Image, drawables: list[Gimp.Drawable], config: Gimp.ProcedureConfig,
                table: bridge.OptionTable) -> None:
    """Non-interactive runs (scripts, batch): one core process for this call, then the layers."""
    layer = the_layer(drawables)
    options = logic.options_from_config(config, table, sky_choices(table))
    python = bridge.core_python(PLUGIN_DIR)
    job, rgba_format = layer_job(image, layer, options, table)
    Gimp.progress_init("Replace Sky: starting the CLN-SOD core")
    try:
        outputs = read_results(job, job.options, bridge.run_blocking(job, python, report_progress))
    finally:
        job.cleanup()
        Gimp.progress_end()
    if outputs is not None:
        add_results(image, layer, job.options, rgba_format, *outputs)


def layer_job(image: Gimp.Image, layer: Gimp.Layer, options: dict[str, object],
              table: bridge.OptionTable) -> tuple[bridge.Job, str]:
    """The layer's pixels (at the image's depth, in its own space) in a private job folder."""
    width, height = layer.get_width(), layer.get_height()
    rgba_format, pixel_format = exchange_format(image, layer)
    pixels = read_pixels(layer, rgba_format, width, height)
    job = bridge.Job(width, height, pixel_format, pixels, options, table, icc_profile=image_profile(image))
    return job, rgba_format


def read_results(job: bridge.Job, options: dict[str, object],
                 final: bridge.Event) -> tuple[bytes, bytes, bytes, list[tuple[str, bytes]]] | None:
    """(matte, sky, lighting, overlays) the core wrote; None (and a message) for a photo without sky."""
    if final.kind != "done":
        raise PluginError(final.message)
    if not final.sky_found:  # a photo without sky gets a message, not empty layers
        Gimp.message(f"Replace Sky: {bridge.NO_SKY_MESSAGE}")
        return None
    if options["mode"] != "replace":
        return job.read_output("matte"), b"", b"", []
    return (job.read_output("matte"), job.read_output("sky"), job.read_output("lighting"),
            job.read_overlays(final.files or {}))


def add_results(image: Gimp.Image, layer: Gimp.Layer, options: dict[str, object], rgba_format: str, matte: bytes,
                sky: bytes, lighting: bytes, overlays: list[tuple[str, bytes]]) -> None:
    """Everything the image gains, added after the core succeeded, as one undo step."""
    image.undo_group_start()
    try:
        channel = add_mask_channel(image, layer, matte)
        if options["mode"] == "mask":
            image.select_item(Gimp.ChannelOps.REPLACE, channel)
        else:
            add_result_layers(image, layer, sky, lighting, matte, rgba_format, overlays)
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


def report_progress(event: bridge.Event) -> None:
    Gimp.progress_set_text(f"Replace Sky: {event.message}" if event.message else "Replace Sky")
    Gimp.progress_update(event.fraction)


def exchange_format(image: Gimp.Image, layer: Gimp.Layer) -> tuple[str, str]:
    """(babl format name, protocol pixel format): perceptually encoded RGBA in the image's own space
    (babl's plain "R'G'B'A" names mean sRGB), 8 or 16 bits by the image's precision."""
    deep = image.get_precision() not in EIGHT_BIT
    encoding = "R'G'B'A u16" if deep else "R'G'B'A u8"
    return Babl.get_name(Babl.format_with_space(encoding, layer.get_format())), ("RGBA16" if deep else "RGBA8")


def image_profile(image: Gimp.Image) -> bytes | None:
    """The image's ICC profile, or None for an image without one (GIMP's built-in sRGB)."""
    profile = image.get_color_profile()
    return bytes(profile.get_icc_profile()) if profile is not None else None


def read_pixels(drawable: Gimp.Drawable, fmt: str, width: int, height: int) -> bytes:
    rect = Gegl.Rectangle.new(0, 0, width, height)
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))


def write_pixels(drawable: Gimp.Drawable, fmt: str, x: int, y: int, width: int, height: int, data: bytes) -> None:
    buffer = drawable.get_buffer()
    buffer.set(Gegl.Rectangle.new(x, y, width, height), fmt, data)
    buffer.flush()
    drawable.update(x, y, width, height)


def add_result_layers(image: Gimp.Image, original: Gimp.Layer, sky: bytes, lighting: bytes, matte: bytes,
                      rgba_format: str, overlays: list[tuple[str, bytes]]) -> None:
    """"New sky" (masked by the matte), "Foreground lighting", then the overlays the core made
    ("Reflection", "Horizon haze"), all directly ABOVE the original, in that order upwards.

    Why above and not below: the original is usually opaque, so anything placed below it would be
    hidden. The sky's layer mask lets the original show through where there is no sky, and the
    lighting layer (on top) then turns "sky over original" into "sky over harmonised foreground".
    The original layer itself is never written to.
    """
    width, height = original.get_width(), original.get_height()
    _, offset_x, offset_y = original.get_offsets()
    parent = original.get_parent()
    position = image.get_item_position(original)  # inserting at this index puts a layer right above it

    sky_layer = new_layer(image, SKY_LAYER, width, height, offset_x, offset_y)
    image.insert_layer(sky_layer, parent, position)
    write_pixels(sky_layer, rgba_format, 0, 0, width, height, sky)
    mask = sky_layer.create_mask(Gimp.AddMaskType.BLACK)
    sky_layer.add_mask(mask)
    write_pixels(mask, MASK_FORMAT, 0, 0, width, height, matte)

    for name, pixels in [(LIGHTING_LAYER, lighting), *overlays]:  # each inserted at ``position``: above the last
        added = new_layer(image, name, width, height, offset_x, offset_y)
        image.insert_layer(added, parent, position)
        write_pixels(added, rgba_format, 0, 0, width, height, pixels)


def new_layer(image: Gimp.Image, name: str, width: int, height: int, offset_x: int, offset_y: int) -> Gimp.Layer:
    """An RGBA layer that blends in sRGB-encoded values, as the core composes (so the stack equals
    `clnsod replace`'s composite to rounding at the image's depth); GIMP's default would blend in linear light."""
    layer = Gimp.Layer.new(image, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    layer.set_composite_space(Gimp.LayerColorSpace.RGB_PERCEPTUAL)
    layer.set_offsets(offset_x, offset_y)
    return layer


def channel_format(image: Gimp.Image) -> str:
    """Encoding that makes the channel's stored values equal the matte.

    GIMP stores channels of 8-bit non-linear images gamma-encoded ("Y' u8", for old XCF files) and
    linear otherwise, and copies stored values unchanged between a channel and the selection; writing
    in the channel's own encoding makes "Channel to Selection" select exactly the matte.
    """
    return "Y' u8" if image.get_precision() == Gimp.Precision.U8_NON_LINEAR else "Y u8"


def add_mask_channel(image: Gimp.Image, layer: Gimp.Layer, matte: bytes) -> Gimp.Channel:
    """The matte as a canvas-sized channel "Sky mask" (layer offsets applied, off-canvas parts cut)."""
    canvas_width, canvas_height = image.get_width(), image.get_height()
    color = Gegl.Color.new(MASK_CHANNEL_COLOR)
    channel = Gimp.Channel.new(image, MASK_CHANNEL, canvas_width, canvas_height, 50.0, color)
    channel.set_visible(False)  # a visible channel tints the canvas display; the user shows it on demand
    image.insert_channel(channel, None, 0)
    width, height = layer.get_width(), layer.get_height()
    _, offset_x, offset_y = layer.get_offsets()
    part = logic.visible_part(offset_x, offset_y, width, height, canvas_width, canvas_height)
    if part is not None:
        x, y, w, h = part
        write_pixels(channel, channel_format(image), offset_x + x, offset_y + y, w, h,
                     logic.crop_plane(matte, width, 1, x, y, w, h))
    return channel


Gimp.main(ReplaceSky.__gtype__, sys.argv)
