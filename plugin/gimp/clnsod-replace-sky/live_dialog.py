"""GIMP's Replace Sky dialog: GIMP's generated procedure dialog (sliders with number fields, GIMP's
reset and last-used values) with a live preview beside it, a sky gallery and saved looks.

The previews come from the CLN-SOD core that stays up for the GIMP session (``bridge_client``); its
calls run on a worker thread and their answers reach GTK's main loop through ``GLib.idle_add``, so
the dialog never freezes. Imported only for interactive runs (it loads GTK).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf, Gimp, GimpUi, Gio, GLib, Gtk

import bridge_client as bridge
import replace_sky_logic as logic

PREVIEW_SIZE = (640, 480)  # the preview is scaled to fit this
THUMB_WIDTH = 112
SETTLE_MS = 120  # a preview is asked for this long after the last change (a dragged slider settles)
LOOKS_FILE = "clnsod-looks.json"  # in GIMP's profile folder
NO_LOOK = "(choose a saved look)"


def on_main_loop(function: Callable[[], None]) -> None:
    """Run ``function`` on GTK's main loop (from the worker thread)."""
    def once() -> bool:
        function()
        return False

    GLib.idle_add(once)


class LiveDialog:
    """Builds the dialog around ``GimpUi.ProcedureDialog`` and keeps the preview in step with ``config``."""

    def __init__(self, procedure: Gimp.Procedure, config: Gimp.ProcedureConfig, table: bridge.OptionTable,
                 skies: tuple[bridge.SkyChoice, ...], session: bridge.PhotoSession, names: list[str],
                 opened: float) -> None:
        """``opened``: when the user chose the action (time.monotonic()), for the timing line."""
        self.config, self.table, self.skies, self.session = config, table, skies, session
        self.worker = bridge.BackgroundCore(on_main_loop)
        self.dialog = GimpUi.ProcedureDialog.new(procedure, config, "Replace Sky")
        self._settle: int | None = None
        self._before: GdkPixbuf.Pixbuf | None = None
        self._after: GdkPixbuf.Pixbuf | None = None
        self.previews = 0
        self.closed = False  # answers arriving after the dialog closed are dropped
        self.opened = opened
        for number in table.numbers:  # sliders with a number field, the table's steps and decimals
            scale = self.dialog.get_widget(logic.arg_name(number.key), GimpUi.SpinScale.__gtype__)
            scale.set_increments(number.step, number.step * 10)
            scale.set_digits(number.decimals)
        content = self.dialog.get_content_area()
        own = set(content.get_children())  # GIMP's own rows (Load/Save Settings) stay where they are
        self.dialog.fill([name for name in names if name != logic.SKY_PRESET_ARG])
        self._arrange([child for child in content.get_children() if child not in own])
        config.connect("notify", self._changed)
        self.worker.submit(session.open, self._show_original, self._show_problem)
        self._changed()

    # -- layout ------------------------------------------------------------------------------------

    def _arrange(self, filled: list[Gtk.Widget]) -> None:
        """[preview column | gallery, the settings ``filled`` in by ProcedureDialog.fill, looks] at the
        top of the dialog's content area."""
        content = self.dialog.get_content_area()
        settings = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        settings.pack_start(self._gallery(), False, False, 0)
        for child in filled:
            content.remove(child)
            settings.pack_start(child, False, False, 0)
        settings.pack_start(self._looks_row(), False, False, 6)
        scroll = Gtk.ScrolledWindow()
        scroll.set_policy(Gtk.PolicyType.NEVER, Gtk.PolicyType.AUTOMATIC)
        scroll.set_min_content_width(420)
        scroll.set_min_content_height(PREVIEW_SIZE[1] + 40)
        scroll.add(settings)
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=12)
        row.pack_start(self._preview_column(), True, True, 0)
        row.pack_start(scroll, False, True, 0)
        content.pack_start(row, True, True, 0)
        content.reorder_child(row, 0)
        row.show_all()

    def _preview_column(self) -> Gtk.Box:
        column = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        frame = Gtk.Frame()
        self.picture = Gtk.Image()
        self.picture.set_size_request(*PREVIEW_SIZE)
        frame.add(self.picture)
        column.pack_start(frame, True, True, 0)
        bar = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        self.before_after = Gtk.ToggleButton.new_with_mnemonic("_Before / after")
        self.before_after.set_tooltip_text("Pressed: the photo as it is; released: the preview of the result")
        self.before_after.connect("toggled", lambda _button: self._show_picture())
        self.spinner = Gtk.Spinner()
        self.status = Gtk.Label(label="Starting the CLN-SOD core...", xalign=0.0)
        self.status.set_line_wrap(True)
        bar.pack_start(self.before_after, False, False, 0)
        bar.pack_start(self.spinner, False, False, 0)
        bar.pack_start(self.status, True, True, 0)
        column.pack_start(bar, False, False, 0)
        self.spinner.start()
        return column

    def _gallery(self) -> Gtk.Frame:
        self.gallery = Gtk.FlowBox()
        # Alt+Y: into the gallery at the chosen sky (the flow box itself takes no focus), arrows, Space.
        self.gallery_title = Gtk.Label.new_with_mnemonic("Sk_y")
        frame = Gtk.Frame(label_widget=self.gallery_title)
        self.gallery.set_selection_mode(Gtk.SelectionMode.SINGLE)
        self.gallery.set_max_children_per_line(3)
        self.gallery.set_min_children_per_line(3)
        self.gallery.set_homogeneous(True)
        for choice in self.skies:
            cell = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=2)
            image = Gtk.Image()
            try:
                image.set_from_pixbuf(GdkPixbuf.Pixbuf.new_from_file_at_scale(choice.thumbnail, THUMB_WIDTH, -1, True))
            except (GLib.Error, TypeError):  # no thumbnail (an older core) or an unreadable one
                pass
            cell.pack_start(image, False, False, 0)
            cell.pack_start(Gtk.Label(label=choice.label), False, False, 0)
            cell.set_tooltip_text(choice.description or choice.label)
            child = Gtk.FlowBoxChild()
            child.add(cell)
            child.sky_name = choice.name  # type: ignore[attr-defined]
            self.gallery.add(child)
        if self.gallery.get_children():
            self.gallery_title.set_mnemonic_widget(self.gallery.get_children()[0])
        self._select_gallery(str(self.config.get_property(logic.SKY_PRESET_ARG)))
        self.gallery.connect("selected-children-changed", self._gallery_picked)
        self.gallery.connect("child-activated", lambda box, child: box.select_child(child))
        self.chosen = Gtk.Image()
        column = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
        column.pack_start(self.gallery, False, False, 0)
        column.pack_start(self.chosen, False, False, 0)
        frame.add(column)
        self._show_chosen_sky()
        return frame

    def _show_chosen_sky(self) -> None:
        """The chosen sky's thumbnail under the gallery (nothing for an image file: it may be huge)."""
        path = None if self.config.get_property(logic.SKY_FILE_ARG) is not None else logic.thumbnail_of(
            str(self.config.get_property(logic.SKY_PRESET_ARG)), self.skies)
        try:
            self.chosen.set_from_pixbuf(GdkPixbuf.Pixbuf.new_from_file_at_scale(path, 2 * THUMB_WIDTH, -1, True))
        except (GLib.Error, TypeError):  # no thumbnail, or a sky file
            self.chosen.clear()

    def _looks_row(self) -> Gtk.Box:
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        self.looks = Gtk.ComboBoxText()
        self.looks.set_tooltip_text("Saved looks: every setting of this dialog under a name")
        self._fill_looks()
        self.looks.connect("changed", self._look_picked)
        save = Gtk.Button.new_with_mnemonic("Sa_ve look...")
        save.connect("clicked", self._save_look)
        delete = Gtk.Button.new_with_mnemonic("Dele_te look")
        delete.connect("clicked", self._delete_look)
        label = Gtk.Label.new_with_mnemonic("Loo_k")
        label.set_mnemonic_widget(self.looks)
        for widget, expand in ((label, False), (self.looks, True), (save, False), (delete, False)):
            row.pack_start(widget, expand, expand, 0)
        return row

    # -- the sky gallery ---------------------------------------------------------------------------

    def _select_gallery(self, name: str) -> None:
        for child in self.gallery.get_children():
            if getattr(child, "sky_name", None) == name:
                self.gallery.select_child(child)
                self.gallery_title.set_mnemonic_widget(child)

    def _gallery_picked(self, _box: Gtk.FlowBox) -> None:
        chosen = self.gallery.get_selected_children()
        if not chosen:
            return
        self.gallery_title.set_mnemonic_widget(chosen[0])
        name = getattr(chosen[0], "sky_name", None)
        if name and name != self.config.get_property(logic.SKY_PRESET_ARG):
            self.config.set_property(logic.SKY_FILE_ARG, None)  # a gallery sky replaces a chosen file
            self.config.set_property(logic.SKY_PRESET_ARG, name)

    # -- previews ----------------------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The request options the dialog's settings mean (BridgeError if unusable)."""
        return self.table.validate(logic.options_from_config(self.config, self.table, self.skies))

    def _changed(self, *_args: object) -> None:
        self._show_chosen_sky()
        if self._settle is not None:
            GLib.source_remove(self._settle)
        self._settle = GLib.timeout_add(SETTLE_MS, self._ask_preview)

    def _ask_preview(self) -> bool:
        self._settle = None
        try:
            options = self.options()
        except bridge.BridgeError as exc:
            self._show_problem(str(exc))
            return False
        self.status.set_text("Updating the preview...")
        self.spinner.start()
        self.worker.preview(self.session, options, self._show_preview, self._show_problem)
        return False

    def _show_original(self, original: bridge.Preview) -> None:
        if self.closed:
            return
        self._before = _pixbuf(original)
        if self._after is None:
            self._show_picture()

    def _show_preview(self, preview: bridge.Preview | None) -> None:
        if preview is None or self.closed:
            return
        self._after = _pixbuf(preview)
        self.previews += 1
        said = (f"Preview updated in {preview.seconds:.2f} s" if preview.sky_found
                else "no sky found in this image: the result adds nothing")
        notice, self.session.notice = self.session.notice, ""
        self.status.set_text(f"{said}. {notice}" if notice else said)
        self.spinner.stop()
        self._show_picture()
        # One line per preview on stderr (GIMP's console): the GUI test waits on it and reads the timing.
        core = "started" if self.session.client.starts else "reused"
        print(f"clnsod: preview {self.previews} shown {time.monotonic() - self.opened:.3f} s after the action "
              f"(core {core})", file=sys.stderr, flush=True)

    def _show_problem(self, message: str) -> None:
        if self.closed:
            return
        self.status.set_text(message)
        self.spinner.stop()

    def _show_picture(self) -> None:
        shown = self._before if self.before_after.get_active() else (self._after or self._before)
        if shown is None:
            return
        scale = min(PREVIEW_SIZE[0] / shown.get_width(), PREVIEW_SIZE[1] / shown.get_height())
        self.picture.set_from_pixbuf(shown.scale_simple(max(1, round(shown.get_width() * scale)),
                                                        max(1, round(shown.get_height() * scale)),
                                                        GdkPixbuf.InterpType.BILINEAR))

    # -- looks ---------------------------------------------------------------------------------------

    def _looks_path(self) -> str:
        return os.path.join(Gimp.directory(), LOOKS_FILE)

    def _read_looks(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self._looks_path(), encoding="utf-8") as handle:
                return bridge.looks_from_text(handle.read(), self.table)
        except OSError:
            return {}

    def _write_looks(self, looks: dict[str, dict[str, Any]]) -> None:
        path = self._looks_path()
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(bridge.looks_to_text(looks))
        os.replace(path + ".tmp", path)
        self._fill_looks()

    def _fill_looks(self) -> None:
        self.looks.remove_all()
        self.looks.append("", NO_LOOK)
        for name in sorted(self._read_looks()):
            self.looks.append(name, name)
        self.looks.set_active(0)

    def _save_look(self, _button: Gtk.Button) -> None:
        ask = Gtk.Dialog(title="Save look", transient_for=self.dialog, modal=True)
        ask.add_buttons("_Cancel", Gtk.ResponseType.CANCEL, "_Save", Gtk.ResponseType.OK)
        ask.set_default_response(Gtk.ResponseType.OK)
        entry = Gtk.Entry(activates_default=True)
        ask.get_content_area().pack_start(Gtk.Label(label="Name of this look:", xalign=0.0), False, False, 6)
        ask.get_content_area().pack_start(entry, False, False, 6)
        ask.show_all()
        try:
            if ask.run() != Gtk.ResponseType.OK or not entry.get_text().strip():
                return
            name = entry.get_text().strip()
        finally:
            ask.destroy()
        try:
            options = self.options()
        except bridge.BridgeError as exc:
            self._show_problem(str(exc))
            return
        looks = self._read_looks()
        looks[name] = bridge.look_of(options, self.table)
        self._write_looks(looks)
        self.looks.set_active_id(name)

    def _delete_look(self, _button: Gtk.Button) -> None:
        name = self.looks.get_active_id()
        if name:
            looks = self._read_looks()
            looks.pop(name, None)
            self._write_looks(looks)

    def _look_picked(self, _combo: Gtk.ComboBoxText) -> None:
        name = self.looks.get_active_id()
        look = self._read_looks().get(name or "")
        if not look:
            return
        for key, value in look.items():
            if key == "mode":
                self.config.set_property(logic.MASK_ONLY_ARG, value == "mask")
            elif key == "sky":
                listed = next((choice for choice in self.skies if choice.request_sky == value), None)
                self.config.set_property(logic.SKY_FILE_ARG, None if listed else Gio.File.new_for_path(str(value)))
                if listed is not None:
                    self.config.set_property(logic.SKY_PRESET_ARG, listed.name)
                    self._select_gallery(listed.name)
            else:
                self.config.set_property(logic.arg_name(key), value)

    # -- running -------------------------------------------------------------------------------------

    def run(self) -> bool:
        """Show the dialog; True for OK. The worker is stopped either way (no preview runs on)."""
        try:
            return bool(self.dialog.run())
        finally:
            self.closed = True
            if self._settle is not None:
                GLib.source_remove(self._settle)
            self.worker.stop(wait=True)
            self.dialog.destroy()


def _pixbuf(picture: bridge.Preview) -> GdkPixbuf.Pixbuf:
    return GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(picture.rgb), GdkPixbuf.Colorspace.RGB, False, 8,
                                           picture.width, picture.height, 3 * picture.width)


def editor_pid() -> int:
    """GIMP's own process (each plug-in call is a child of it): the core lives as long as GIMP."""
    return os.getppid()
