"""The Replace Sky action: dialog -> job -> core process (async, cancellable) -> layers.

Errors are shown non-modally (a message box that does not block, plus a floating message on the
canvas), so nothing waits on the user and a headless run can never hang on a dialog.
"""

from __future__ import annotations

import traceback

from krita import Document, Extension, Krita, Node
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QApplication, QMessageBox, QProgressDialog, QWidget

from . import bridge_client
from .dialog import ReplaceSkyDialog, make_non_blocking
from .layers import add_mask_result, add_replace_result
from .options import (
    SETTINGS_GROUP,
    SETTINGS_KEY,
    build_options,
    dialog_values_from,
    options_from_settings,
    settings_text,
)
from .pixels import PIXEL_FORMATS, color_space_problem, matte_coverage
from .profile import document_profile
from .runner import CoreRun

ACTION_ID = "clnsod_replace_sky"
ERROR_BOX_NAME = "clnsod_error"
PROGRESS_NAME = "clnsod_progress"
TITLE = "Replace Sky (CLN-SOD)"
PLUGIN_DIR = bridge_client.plugin_dir_of(__file__)


class ReplaceSkyExtension(Extension):
    """Adds Tools > Scripts > Replace Sky; one run at a time."""

    def __init__(self, parent) -> None:
        super().__init__(parent)
        self._run: CoreRun | None = None
        self._progress: QProgressDialog | None = None
        self._doc: Document | None = None
        self._source: Node | None = None
        self._options: dict[str, object] = {}
        self._error_box: QMessageBox | None = None
        self._table: bridge_client.OptionTable | None = None
        self._dialog: ReplaceSkyDialog | None = None

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

    def open_dialog(self) -> None:
        if self._run is not None:
            self.show_message("a sky replacement is already running; wait for it or cancel it")
            return
        try:
            self._check_document()
            table = self.option_table()
        except bridge_client.BridgeError as exc:
            self.show_message(str(exc))
            return
        skies, sky_note = self._list_skies(table)
        stored = options_from_settings(Krita.instance().readSetting(SETTINGS_GROUP, SETTINGS_KEY, ""), table)
        dialog = ReplaceSkyDialog(table, dialog_values_from(stored, table, skies), self._main_window(), skies, sky_note)
        make_non_blocking(dialog)
        # Held here and connected to bound methods, never to a lambda holding the dialog: PyQt's
        # garbage collector can free such a lambda (a cycle through its own sender) while the dialog
        # is open, and Krita then crashes when OK calls it.
        self._dialog = dialog
        dialog.accepted.connect(self._accepted)
        dialog.destroyed.connect(self._forget_dialog)
        dialog.open()

    def _list_skies(self, table: bridge_client.OptionTable) -> tuple:
        """Presets and the user's library with thumbnails, asked of the core each time (skies may have
        been added since); the presets alone, and why, if that fails."""
        try:
            python = bridge_client.core_python(PLUGIN_DIR)
        except bridge_client.BridgeError as exc:
            return bridge_client.preset_choices(table), str(exc)
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            return bridge_client.list_skies(python, table)
        finally:
            QApplication.restoreOverrideCursor()

    def _forget_dialog(self) -> None:
        self._dialog = None

    def _accepted(self) -> None:
        dialog = self._dialog
        if dialog is None:
            return
        try:
            options = build_options(dialog.values(), dialog.table, dialog.skies)
        except bridge_client.BridgeError as exc:
            self.show_message(str(exc))
            return
        Krita.instance().writeSetting(SETTINGS_GROUP, SETTINGS_KEY, settings_text(options, dialog.table))
        self.start(options)

    # -- the run --------------------------------------------------------------------------------------

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

    def start(self, options: dict[str, object]) -> None:
        """Read the active layer, write the job and start the core; returns at once."""
        job: bridge_client.Job | None = None
        try:
            doc, node = self._check_document()
            python = bridge_client.core_python(PLUGIN_DIR)
            pixels = bytes(node.pixelData(0, 0, doc.width(), doc.height()))
            job = bridge_client.Job(doc.width(), doc.height(), PIXEL_FORMATS[doc.colorDepth()], pixels, options,
                                    self.option_table(), icc_profile=document_profile(doc))
        except bridge_client.BridgeError as exc:
            if job is not None:
                job.cleanup()
            self.show_message(str(exc))
            return
        self._doc, self._source, self._options = doc, node, options
        run = CoreRun(job, python, self)
        run.progress.connect(self._on_progress)
        # Queued: the layers are built from the event loop, not from inside QProcess's finished signal.
        run.succeeded.connect(self._on_succeeded, Qt.QueuedConnection)
        run.no_sky.connect(self._on_no_sky, Qt.QueuedConnection)
        run.failed.connect(self._on_failed, Qt.QueuedConnection)
        run.cancelled.connect(self._on_cancelled, Qt.QueuedConnection)
        self._run = run
        self._progress = self._make_progress()
        run.start()

    def _make_progress(self) -> QProgressDialog:
        progress = QProgressDialog("Starting the CLN-SOD core...", "Cancel", 0, 1000, self._main_window())
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
        if self._run is not None:
            if self._progress is not None:
                self._progress.setLabelText("Cancelling...")
            self._run.cancel()

    def _on_progress(self, fraction: float, stage: str) -> None:
        if self._progress is not None:
            self._progress.setValue(int(fraction * 1000))
            self._progress.setLabelText(stage[:1].upper() + stage[1:] + "...")

    def _on_cancelled(self) -> None:
        self._end_run()

    def _on_failed(self, message: str) -> None:
        self._end_run()
        self.show_message(message)

    def _on_no_sky(self) -> None:
        """No layers for a photo without sky (empty layers would only confuse): say so instead."""
        self._end_run()
        self.show_message(bridge_client.NO_SKY_MESSAGE, QMessageBox.Information)

    def _on_succeeded(self, files: dict) -> None:
        run, doc, node = self._run, self._doc, self._source
        try:
            if run is None or doc is None or node is None:
                return
            if not any(open_doc == doc for open_doc in Krita.instance().documents()):
                raise bridge_client.BridgeError("the document was closed before the new sky was ready")
            matte = run.job.read_output("matte")
            if self._options.get("mode") == "mask":
                add_mask_result(doc, node, matte)
                summary = "sky mask added and the sky selected"
            else:
                add_replace_result(doc, node, matte, run.job.read_output("sky"), run.job.read_output("lighting"),
                                   run.job.read_overlays(files))
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
        """Close the progress dialog, delete the job folder, allow the next run."""
        if self._progress is not None:
            self._progress.canceled.disconnect(self.cancel)  # closing a QProgressDialog emits canceled
            self._progress.close()
            self._progress.deleteLater()
            self._progress = None
        if self._run is not None:
            self._run.job.cleanup()
            self._run.deleteLater()
            self._run = None
        self._doc = self._source = None
