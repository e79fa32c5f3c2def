"""The Replace Sky action: dialog with live preview -> full render -> layers.

The core stays up for the Krita session (``bridge_client.CoreClient``: started on first use, exits
with Krita); its calls run on a worker thread (``BackgroundCore``) and come back to Krita's UI thread
through a queued signal, so Krita never waits on the core. Errors are shown non-modally (a message
box that does not block, plus a floating message on the canvas), so a headless run never hangs.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable

from krita import Document, Extension, Krita, Node
from PyQt5.QtCore import QObject, Qt, pyqtSignal
from PyQt5.QtWidgets import QApplication, QMessageBox, QProgressDialog, QPushButton, QWidget

from . import bridge_client
from .dialog import ReplaceSkyDialog, make_non_blocking
from .layers import add_mask_result, add_replace_result
from .options import (
    LOOKS_KEY,
    SETTINGS_GROUP,
    SETTINGS_KEY,
    dialog_values_from,
    options_from_settings,
    settings_text,
)
from .pixels import PIXEL_FORMATS, color_space_problem, matte_coverage
from .profile import document_profile

ACTION_ID = "clnsod_replace_sky"
ERROR_BOX_NAME = "clnsod_error"
PROGRESS_NAME = "clnsod_progress"
TITLE = "Replace Sky (CLN-SOD)"
PLUGIN_DIR = bridge_client.plugin_dir_of(__file__)


class UiCalls(QObject):
    """Runs functions handed over from the worker thread on Krita's UI thread (a queued signal)."""

    call = pyqtSignal(object)

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.call.connect(self._run, Qt.QueuedConnection)

    def _run(self, function: Callable[[], None]) -> None:
        try:
            function()
        except Exception:  # noqa: BLE001 - a failure in a callback must not reach Krita's modal excepthook
            traceback.print_exc()

    def post(self, function: Callable[[], None]) -> None:
        self.call.emit(function)


class ReplaceSkyExtension(Extension):
    """Adds Tools > Scripts > Replace Sky; one photo at a time."""

    def __init__(self, parent) -> None:
        super().__init__(parent)
        self._ui = UiCalls(self)
        self._worker = bridge_client.BackgroundCore(self._ui.post)
        self._client: bridge_client.CoreClient | None = None
        self._session: bridge_client.PhotoSession | None = None
        self._progress: QProgressDialog | None = None
        self._doc: Document | None = None
        self._source: Node | None = None
        self._options: dict[str, object] = {}
        self._error_box: QMessageBox | None = None
        self._table: bridge_client.OptionTable | None = None
        self._dialog: ReplaceSkyDialog | None = None
        self._opened_at = 0.0
        self.timings: dict[str, float] = {}  # seconds from the action to the dialog's first pictures (tests)
        self.last_outcome = ""  # how the last full render ended: done, no sky, cancelled or the error (tests)

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        action = window.createAction(ACTION_ID, "Replace Sky...", "tools/scripts")
        action.setToolTip("Replace the sky of the active layer (adds new layers, leaves the photo untouched)")
        action.triggered.connect(self.open_dialog)

    # -- UI -------------------------------------------------------------------------------------------

    def _main_window(self) -> QWidget | None:
        window = Krita.instance().activeWindow()
        return window.qwindow() if window is not None else None

    def show_message(self, message: str, kind: QMessageBox.Icon = QMessageBox.Warning) -> None:
        """Non-modal: Krita keeps running and nothing waits for the user to close it. ``kind``
        Information is for answers that are not failures (no sky found)."""
        window = Krita.instance().activeWindow()
        view = window.activeView() if window is not None else None
        icon = "dialog-information" if kind == QMessageBox.Information else "dialog-warning"
        if view is not None:
            view.showFloatingMessage(f"Replace Sky: {message}", Krita.instance().icon(icon), 8000, 1)
        if self._error_box is not None:
            self._error_box.close()
        box = QMessageBox(kind, TITLE, message, QMessageBox.Close, self._main_window())
        box.setObjectName(ERROR_BOX_NAME)
        box.setWindowModality(Qt.NonModal)
        box.setAttribute(Qt.WA_DeleteOnClose, True)
        box.destroyed.connect(self._forget_error_box)
        box.show()
        self._error_box = box

    def _forget_error_box(self) -> None:
        self._error_box = None

    def option_table(self) -> bridge_client.OptionTable:
        """The core's option table (options.json beside the plugin), read once: it only changes when
        install_plugin.py runs again, which needs a Krita restart anyway."""
        if self._table is None:
            self._table = bridge_client.load_option_table(PLUGIN_DIR)
        return self._table

    def core_client(self, python: str) -> bridge_client.CoreClient:
        """The client of the core that serves this Krita process (started on first use)."""
        if self._client is None or self._client.python != python:
            self._client = bridge_client.CoreClient(python, "krita", os.getpid())
        return self._client

    def open_dialog(self) -> None:
        if self._session is not None:
            self.show_message("a sky replacement is already open or running; finish or cancel it first")
            return
        self._opened_at = time.monotonic()
        session = None
        try:
            doc, node = self._check_document()
            table = self.option_table()
            python = bridge_client.core_python(PLUGIN_DIR)
            stored = options_from_settings(Krita.instance().readSetting(SETTINGS_GROUP, SETTINGS_KEY, ""), table)
            pixels = bytes(node.pixelData(0, 0, doc.width(), doc.height()))
            job = bridge_client.Job(doc.width(), doc.height(), PIXEL_FORMATS[doc.colorDepth()], pixels, stored,
                                    table, icc_profile=document_profile(doc))
            session = bridge_client.PhotoSession(self.core_client(python), job)
        except bridge_client.BridgeError as exc:
            self.show_message(str(exc))
            return
        skies, sky_note = self._list_skies(table, python)
        looks = self._looks(table)
        dialog = ReplaceSkyDialog(table, dialog_values_from(stored, table, skies), self._main_window(), skies,
                                  sky_note, sorted(looks))
        make_non_blocking(dialog)
        # Held here and connected to bound methods, never to a lambda holding the dialog: PyQt's
        # garbage collector can free such a lambda (a cycle through its own sender) while the dialog
        # is open, and Krita then crashes when OK calls it.
        self._dialog, self._session, self._doc, self._source = dialog, session, doc, node
        self.timings, self.last_outcome = {}, ""
        dialog.accepted.connect(self._accepted)
        dialog.rejected.connect(self._rejected)
        dialog.request_preview.connect(self._preview)
        dialog.save_look.connect(self._save_look)
        dialog.delete_look.connect(self._delete_look)
        dialog.picked_look.connect(self._pick_look)
        dialog.destroyed.connect(self._forget_dialog)
        dialog.set_busy("Starting the CLN-SOD core..." if session.client.starts == 0 else "Opening the photo...")
        self._worker.submit(session.open, self._on_opened, self._on_preview_failed)
        dialog.open()

    def _list_skies(self, table: bridge_client.OptionTable, python: str) -> tuple:
        """Presets and the user's library with thumbnails, asked of the core each time (skies may have
        been added since); the presets alone, and why, if that fails."""
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            return bridge_client.list_skies(python, table)
        finally:
            QApplication.restoreOverrideCursor()

    def _forget_dialog(self) -> None:
        self._dialog = None

    # -- previews -------------------------------------------------------------------------------------

    def _on_opened(self, original: bridge_client.Preview) -> None:
        self.timings["original_s"] = round(time.monotonic() - self._opened_at, 3)
        if self._dialog is not None:
            self._dialog.show_original(original)

    def _dialog_options(self) -> dict[str, object] | None:
        """The open dialog's options; None when it is closed or they are unusable (said in the dialog)."""
        if self._dialog is None:
            return None
        try:
            return self._dialog.options()
        except bridge_client.BridgeError as exc:
            self._dialog.show_message(str(exc))
            return None

    def _preview(self) -> None:
        dialog, session, options = self._dialog, self._session, self._dialog_options()
        if dialog is None or session is None or options is None:
            return
        dialog.set_busy("Updating the preview...")
        self._worker.preview(session, options, self._on_preview, self._on_preview_failed)

    def _on_preview(self, preview: bridge_client.Preview | None) -> None:
        if preview is None or self._dialog is None or self._session is None:
            return
        self.timings.setdefault("first_preview_s", round(time.monotonic() - self._opened_at, 3))
        self._dialog.show_preview(preview, self._session.notice)
        self._session.notice = ""

    def _on_preview_failed(self, message: str) -> None:
        if self._dialog is not None:
            self._dialog.show_message(message)

    # -- looks ----------------------------------------------------------------------------------------

    def _looks(self, table: bridge_client.OptionTable) -> dict:
        return bridge_client.looks_from_text(Krita.instance().readSetting(SETTINGS_GROUP, LOOKS_KEY, ""), table)

    def _save_look(self, name: str) -> None:
        dialog, options = self._dialog, self._dialog_options()
        if dialog is None or options is None:
            return
        looks = self._looks(dialog.table)
        looks[name] = bridge_client.look_of(options, dialog.table)
        Krita.instance().writeSetting(SETTINGS_GROUP, LOOKS_KEY, bridge_client.looks_to_text(looks))
        dialog.set_looks(sorted(looks))
        dialog.looks.setCurrentIndex(dialog.looks.findData(name))

    def _delete_look(self, name: str) -> None:
        dialog = self._dialog
        if dialog is None:
            return
        looks = self._looks(dialog.table)
        looks.pop(name, None)
        Krita.instance().writeSetting(SETTINGS_GROUP, LOOKS_KEY, bridge_client.looks_to_text(looks))
        dialog.set_looks(sorted(looks))

    def _pick_look(self, name: str) -> None:
        dialog = self._dialog
        if dialog is None:
            return
        look = self._looks(dialog.table).get(name, {})
        try:
            current = dialog.options()
        except bridge_client.BridgeError:
            current = {}
        dialog.set_values(dialog_values_from(dict(current, **look), dialog.table, dialog.skies))

    # -- the full-resolution render ---------------------------------------------------------------------

    def _rejected(self) -> None:
        """Cancel: nothing was added to the document; the core forgets the photo, the job folder goes."""
        session, self._session = self._session, None
        self._doc = self._source = None
        if session is not None:
            self._worker.submit(session.close, lambda _none: None, lambda _message: None)

    def _accepted(self) -> None:
        dialog, session = self._dialog, self._session
        if dialog is None or session is None:
            return
        try:
            options = dialog.options()
            self._check_document()
        except bridge_client.BridgeError as exc:
            self._rejected()
            self.show_message(str(exc))
            return
        Krita.instance().writeSetting(SETTINGS_GROUP, SETTINGS_KEY, settings_text(options, dialog.table))
        self._options = options
        self._progress = self._make_progress()
        post = self._ui.post
        self._worker.submit(lambda: session.render(options, lambda event: post(lambda: self._on_progress(event))),
                            self._on_rendered, self._on_failed)

    def _check_document(self) -> tuple:
        doc = Krita.instance().activeDocument()
        if doc is None:
            raise bridge_client.BridgeError("open a photo first")
        problem = color_space_problem(doc.colorModel(), doc.colorDepth())
        node = doc.activeNode()
        if problem is None and node is not None:
            problem = color_space_problem(node.colorModel(), node.colorDepth())
        if problem:
            raise bridge_client.BridgeError(problem)
        if node is None or node.type() != "paintlayer":
            raise bridge_client.BridgeError("select the photo's paint layer in the Layers docker first")
        return doc, node

    def _make_progress(self) -> QProgressDialog:
        progress = QProgressDialog("Rendering at full resolution...", "Cancel", 0, 1000, self._main_window())
        progress.setObjectName(PROGRESS_NAME)
        progress.setWindowTitle(TITLE)
        progress.setWindowModality(Qt.NonModal)  # Krita stays usable while the core works
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.setMinimumDuration(0)
        progress.canceled.connect(self.cancel)
        progress.setValue(0)
        progress.show()
        return progress

    def cancel(self) -> None:
        """Cancel (or Escape) in the progress dialog. Qt hides the dialog at once; it comes back saying
        "Cancelling..." until the core confirms the render stopped: until then a new Replace Sky is
        refused, and the artist should see why."""
        if self._session is not None:
            if self._progress is not None:
                self._progress.setLabelText("Cancelling...")
                for button in self._progress.findChildren(QPushButton):
                    button.setEnabled(False)
                self._progress.show()
            self._session.cancel_render()

    def _on_progress(self, event: bridge_client.Event) -> None:
        if self._progress is not None:
            self._progress.setValue(int(event.fraction * 1000))
            self._progress.setLabelText(event.message[:1].upper() + event.message[1:] + "...")

    def _on_failed(self, message: str) -> None:
        self._end_run()
        self.show_message(message)

    def _on_rendered(self, event: bridge_client.Event) -> None:
        session, doc, node = self._session, self._doc, self._source
        if session is not None and session.stop.is_set():  # Cancel pressed as the core finished: honour it
            event = bridge_client.Event("error", message="cancelled")
        self.last_outcome = event.message if event.kind == "error" else "done" if event.sky_found else "no sky"
        try:
            if event.kind == "error":
                self._end_run()
                if event.message != "cancelled":
                    self.show_message(event.message)
                return
            if not event.sky_found:  # no layers for a photo without sky: say so instead
                self._end_run()
                self.show_message(bridge_client.NO_SKY_MESSAGE, QMessageBox.Information)
                return
            if session is None or doc is None or node is None:
                return
            if not any(open_doc == doc for open_doc in Krita.instance().documents()):
                raise bridge_client.BridgeError("the document was closed before the new sky was ready")
            job = session.job
            matte = job.read_output("matte")
            if self._options.get("mode") == "mask":
                add_mask_result(doc, node, matte)
                summary = "sky mask added and the sky selected"
            else:
                add_replace_result(doc, node, matte, job.read_output("sky"), job.read_output("lighting"),
                                   job.read_overlays(event.files or {}))
                summary = "new sky added"
            coverage = matte_coverage(matte)
            window = Krita.instance().activeWindow()
            view = window.activeView() if window is not None else None
            if view is not None:
                view.showFloatingMessage(f"Replace Sky: {summary}; sky covers {coverage:.0%} of the image",
                                         Krita.instance().icon("dialog-information"), 4000, 2)
        except bridge_client.BridgeError as exc:
            self._end_run()
            self.show_message(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a host API surprise must still end the run and reach the user
            traceback.print_exc()
            self._end_run()
            self.show_message(f"could not build the layers: {type(exc).__name__}: {exc}")
            return
        self._end_run()

    def _end_run(self) -> None:
        """Close the progress dialog; the core forgets the photo and the job folder is deleted."""
        if self._progress is not None:
            self._progress.canceled.disconnect(self.cancel)  # closing a QProgressDialog emits canceled
            self._progress.close()
            self._progress.deleteLater()
            self._progress = None
        self._rejected()
