"""Test-only Krita extension: drives the real Replace Sky plugin through its menu action and dialog.

Installed into a throwaway profile by tests/test_krita_e2e.py. Reads CLNSOD_E2E_OUT (where to write
report.json and the files), CLNSOD_E2E_PHOTO, CLNSOD_E2E_DEEP_PHOTO (a 16-bit Display P3 photo) and
CLNSOD_E2E_SESSION ("main" or "broken-core").
Every step is driven by timers (never a nested event loop), a watchdog ends a stuck run, and Krita
is always quit through its own file_quit action.
"""

import json
import os
import sys
import time
import traceback

from krita import Extension, InfoObject, Krita
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import (
    QApplication,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QWidget,
)

OUT = os.environ.get("CLNSOD_E2E_OUT", "")
PHOTO = os.environ.get("CLNSOD_E2E_PHOTO", "")
DEEP_PHOTO = os.environ.get("CLNSOD_E2E_DEEP_PHOTO", "")
WATER_PHOTO = os.environ.get("CLNSOD_E2E_WATER_PHOTO", "")  # a calm lake: the core adds Reflection
SESSION = os.environ.get("CLNSOD_E2E_SESSION", "main")
WATCHDOG_S = float(os.environ.get("CLNSOD_E2E_WATCHDOG", "110"))
POLL_MS = 100
REPORT = {"session": SESSION, "steps": [], "errors": []}


def out(name):
    return os.path.join(OUT, name)


def log(message):
    REPORT["steps"].append(f"{time.monotonic() - START:7.2f} {message}")
    write_report()


def write_report():
    with open(out("report.json.tmp"), "w") as handle:
        json.dump(REPORT, handle, indent=1)
    os.replace(out("report.json.tmp"), out("report.json"))


def excepthook(kind, value, tb):
    """Krita's own hook opens a modal dialog that would hang a headless run: record and quit instead."""
    REPORT["errors"].append("".join(traceback.format_exception(kind, value, tb)))
    finish()


START = time.monotonic()
FINISHED = False
RUNNER = None


def finish():
    global FINISHED
    if FINISHED:
        return
    FINISHED = True
    REPORT["finished"] = True
    write_report()
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, QMessageBox) and widget.isVisible():
            widget.close()
    app = Krita.instance()
    for doc in app.documents():
        doc.setModified(False)
    QTimer.singleShot(200, lambda: app.action("file_quit").trigger())


def find_widget(name):
    for widget in QApplication.topLevelWidgets():
        if widget.objectName() == name and widget.isVisible():
            return widget
    return None


def tree(node):
    """Top-to-bottom: [name, type, children] for each child."""
    return [[c.name(), c.type(), tree(c)] for c in reversed(node.childNodes())]


def find_node(node, name):
    for child in node.childNodes():
        if child.name() == name:
            return child
        found = find_node(child, name)
        if found is not None:
            return found
    return None


class Steps:
    """A chain of steps; a step returns True when done, False to be polled again."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.started = None

    def run(self):
        if FINISHED:
            return
        if time.monotonic() - START > WATCHDOG_S:
            REPORT["errors"].append("watchdog: the run did not finish in time")
            finish()
            return
        try:
            if not self.steps:
                finish()
                return
            name, step, timeout = self.steps[0]
            if self.started is None:
                self.started = time.monotonic()
                log(f"start {name}")
            if step():
                log(f"done {name}")
                self.steps.pop(0)
                self.started = None
            elif time.monotonic() - self.started > timeout:
                REPORT["errors"].append(f"step {name} timed out after {timeout} s")
                finish()
                return
        except Exception:  # noqa: BLE001 - any failure must end the run, never hang Krita
            REPORT["errors"].append(traceback.format_exc())
            finish()
            return
        QTimer.singleShot(POLL_MS, self.run)


class Case:
    """One trigger of the plugin's action on its own document."""

    def __init__(self, key, settings, photo=None, color_space=None):
        self.key = key
        self.settings = settings
        self.photo = photo or PHOTO
        self.color_space = color_space  # (model, depth, profile) to convert the opened photo to first
        self.doc = None
        self.result = REPORT.setdefault("cases", {}).setdefault(key, {})

    def open(self):
        """Open the photo in a view; polled until the view has made a layer active (on 5.2 that
        happens from the event loop, after addView returns)."""
        app = Krita.instance()
        if self.doc is None:
            self.doc = app.openDocument(self.photo)
            app.activeWindow().addView(self.doc)
            self.doc.setBatchmode(True)  # exportImage must not open an options dialog
            self.doc.waitForDone()
            if self.color_space is not None and not self.doc.setColorSpace(*self.color_space):
                raise RuntimeError(f"Krita could not convert the photo to {self.color_space}")
            self.doc.waitForDone()
        node = self.doc.activeNode()
        if node is None:
            return False
        self.result["before_tree"] = tree(self.doc.rootNode())
        self.result["color_space"] = [self.doc.colorModel(), self.doc.colorDepth(), self.doc.colorProfile()]
        self.original = bytes(node.pixelData(0, 0, self.doc.width(), self.doc.height()))
        with open(out(f"{self.key}_original.raw"), "wb") as handle:
            handle.write(self.original)
        self.result["size"] = [self.doc.width(), self.doc.height()]
        return True

    def trigger(self):
        action = Krita.instance().action("clnsod_replace_sky")
        self.result["action_found"] = action is not None
        if action is None:
            raise RuntimeError("the plugin's action clnsod_replace_sky does not exist")
        self.result["action_text"] = action.text()
        action.trigger()
        return True

    def fill_dialog(self, press_ok=True, cancel_at_once=False):
        dialog = find_widget("clnsod_replace_sky_dialog")
        if dialog is None:
            return False
        set_widgets(dialog, self.settings)
        self.started = time.monotonic()
        if press_ok:
            buttons = dialog.findChildren(QDialogButtonBox)
            buttons[0].button(QDialogButtonBox.Ok).click()
        if cancel_at_once:  # the progress dialog exists as soon as OK is handled: cancel before the core answers
            progress = find_widget("clnsod_progress")
            self.result["progress_seen"] = progress is not None
            next(b for b in progress.findChildren(QPushButton) if b.text() == "Cancel").click()
            # Until the core confirms, the dialog stays up saying so (Qt alone would hide it at once).
            self.result["cancelling_shown"] = progress.isVisible() and progress.labelText() == "Cancelling..."
        return True

    def wait_end(self):
        if find_widget("clnsod_progress") is not None:
            self.result["progress_seen"] = True
            return False
        box = find_widget("clnsod_error")
        if box is not None:
            self.result["error_text"] = box.text()
            self.result["error_modal"] = box.isModal()
            box.close()
        self.result["seconds"] = round(time.monotonic() - self.started, 2)
        self.result["outcome"] = extension().last_outcome
        return True

    def record(self):
        doc = self.doc
        self.result["modified"] = doc.modified()
        doc.waitForDone()
        doc.refreshProjection()
        w, h = doc.width(), doc.height()
        self.result["after_tree"] = tree(doc.rootNode())
        bottom = doc.rootNode().childNodes()[0]
        self.result["original_untouched"] = bytes(bottom.pixelData(0, 0, w, h)) == self.original
        for name, file in (("New sky", "sky.bgra"), ("Foreground lighting", "lighting.bgra"), ("Sky mask", "mask.raw"),
                           ("Reflection", "reflection.bgra"), ("Horizon haze", "haze.bgra")):
            node = find_node(doc.rootNode(), name)
            if node is not None:
                with open(out(f"{self.key}_{file}"), "wb") as handle:
                    handle.write(bytes(node.pixelData(0, 0, w, h)))
        selection = doc.selection()
        self.result["has_selection"] = selection is not None
        if selection is not None:
            with open(out(f"{self.key}_selection.raw"), "wb") as handle:
                handle.write(bytes(selection.pixelData(0, 0, w, h)))
        self.result["saved_kra"] = doc.saveAs(out(f"{self.key}.kra"))
        self.result["exported_png"] = doc.exportImage(out(f"{self.key}.png"), InfoObject())
        doc.waitForDone()
        return True

    def reload(self):
        """Open the saved .kra as a second document (no view): its tree and mask must survive saving."""
        app = Krita.instance()
        doc = app.openDocument(out(f"{self.key}.kra"))
        if doc is None:
            raise RuntimeError(f"Krita could not reopen {self.key}.kra")
        doc.waitForDone()
        self.result["reloaded_tree"] = tree(doc.rootNode())
        mask = find_node(doc.rootNode(), "Sky mask")
        if mask is not None:
            with open(out(f"{self.key}_reloaded_mask.raw"), "wb") as handle:
                handle.write(bytes(mask.pixelData(0, 0, doc.width(), doc.height())))
        doc.close()
        return True

    def undo_all(self):
        """Undo step by step with Krita's own action; record the step names and the tree after each,
        until it is back to the original, then the undo action's text (Krita keeps the action enabled;
        its text names the next step, "Undo " when none is left: the document was fresh, so any
        remaining step would be the plugin's)."""
        trees, names = [], []
        undo = Krita.instance().action("edit_undo")
        for _ in range(6):
            names.append(undo.text())
            undo.trigger()
            self.doc.waitForDone()
            trees.append(tree(self.doc.rootNode()))
            if [row for row in trees[-1] if row[1] != "selectionmask"] == self.result["before_tree"]:
                break
        self.result["undo_trees"] = trees
        self.result["undo_names"] = names
        self.result["undo_text_after"] = undo.text()
        bottom = self.doc.rootNode().childNodes()[0]
        self.result["original_untouched_after_undo"] = (
            bytes(bottom.pixelData(0, 0, self.doc.width(), self.doc.height())) == self.original)
        return True

    def redo_all(self):
        """Redo with Krita's action while it names a step; the result must come back whole."""
        redo = Krita.instance().action("edit_redo")
        names = []
        while redo.text().strip() != "Redo" and len(names) < 6:
            names.append(redo.text())
            redo.trigger()
            self.doc.waitForDone()
        self.result["redo_names"] = names
        self.result["redo_tree"] = tree(self.doc.rootNode())
        return True

    def steps(self, cancel=False, undo=False, dialog=True):
        steps = [(f"{self.key}: open", self.open, 30), (f"{self.key}: trigger", self.trigger, 5)]
        if dialog:
            steps.append((f"{self.key}: dialog", lambda: self.fill_dialog(cancel_at_once=cancel), 10))
        else:
            self.started = time.monotonic()
        steps += [(f"{self.key}: wait", self.wait_end, 90), (f"{self.key}: record", self.record, 30)]
        if undo:
            steps += [(f"{self.key}: reload", self.reload, 30), (f"{self.key}: undo", self.undo_all, 10),
                      (f"{self.key}: redo", self.redo_all, 10)]
        return steps


def set_widgets(dialog, settings):
    """Set the dialog's widgets by objectName: number boxes, the sky gallery, combos, check boxes, text."""
    for key, value in settings.items():
        widget = dialog.findChild(QWidget, key)
        if widget is None:
            raise RuntimeError(f"dialog has no widget {key}")
        if isinstance(widget, QListWidget):
            rows = [i for i in range(widget.count()) if widget.item(i).data(Qt.UserRole) == value]
            if not rows:
                raise RuntimeError(f"{key} has no choice {value}")
            widget.setCurrentRow(rows[0])
        elif hasattr(widget, "setValue"):
            widget.setValue(value)
        elif hasattr(widget, "findData"):
            index = widget.findData(value)
            if index < 0:
                raise RuntimeError(f"{key} has no choice {value}")
            widget.setCurrentIndex(index)
        elif hasattr(widget, "setChecked"):
            widget.setChecked(value)
        else:
            widget.setText(value)


def extension():
    """The Replace Sky extension object (its core client and timings are read, never driven)."""
    return next(e for e in Krita.instance().extensions() if type(e).__name__ == "ReplaceSkyExtension")


def idle(dialog):
    """No preview waiting to be asked for, running, or being shown."""
    return (not dialog._settle.isActive() and not extension()._worker.busy
            and not dialog.status.text().startswith(("Updating", "Starting", "Opening")))


def preview_picture(dialog):
    """(count of previews shown, a digest of the picture now shown in the preview)."""
    label = dialog.findChild(QLabel, "preview")
    pixmap = label.pixmap()
    if pixmap is None or pixmap.isNull():
        return dialog.preview_count, None
    image = pixmap.toImage()
    bits = image.constBits()
    bits.setsize(image.byteCount())
    return dialog.preview_count, hash(bytes(bits))


class PreviewCase(Case):
    """The live preview: first preview, a slider, a gallery sky, then OK (``accept``) or Cancel, with
    timings, the core's process count and a screenshot of the dialog."""

    def __init__(self, key, settings, changes, accept, screenshot=None):
        super().__init__(key, settings)
        self.changes = list(changes)  # (widget name, value) applied one at a time, each waited for
        self.accept = accept
        self.screenshot = screenshot
        self.change_sent = False

    def start(self):
        self.triggered_at = time.monotonic()
        return self.trigger()

    def fill(self):
        return self.fill_dialog(press_ok=False)

    def first_preview(self):
        dialog = find_widget("clnsod_replace_sky_dialog")
        if dialog is None or not idle(dialog):
            return False
        count, picture = preview_picture(dialog)
        if count < 1 or picture is None:
            return False
        self.result["first_preview_s"] = extension().timings.get("first_preview_s")
        self.result["trigger_to_preview_s"] = round(time.monotonic() - self.triggered_at, 3)
        self.result["previews"] = [picture]
        if self.screenshot:
            dialog.grab().save(out(self.screenshot))
        return True

    def change(self):
        """Apply the next change, then wait until its preview is shown and nothing else is pending."""
        dialog = find_widget("clnsod_replace_sky_dialog")
        if not self.change_sent:
            key, value = self.changes[0]
            self.count_before = dialog.preview_count
            set_widgets(dialog, {key: value})
            self.changed_at = time.monotonic()
            self.change_sent = True
            return False
        count, picture = preview_picture(dialog)
        if count <= self.count_before or not idle(dialog):
            return False
        self.result.setdefault("update_s", []).append(round(time.monotonic() - self.changed_at, 3))
        self.result["previews"].append(picture)
        self.changes.pop(0)
        self.change_sent = False
        return True

    def finish_dialog(self):
        dialog = find_widget("clnsod_replace_sky_dialog")
        buttons = dialog.findChildren(QDialogButtonBox)[0]
        self.result["status_text"] = dialog.status.text()
        self.started = time.monotonic()
        buttons.button(QDialogButtonBox.Ok if self.accept else QDialogButtonBox.Cancel).click()
        return True

    def settle(self):
        """After Cancel: give the core time to forget the photo, then record the core's process count."""
        if time.monotonic() - self.started < 1.0:
            return False
        self.result["seconds"] = round(time.monotonic() - self.started, 2)
        return True

    def record_core(self):
        client = extension()._client
        self.result["core_starts"] = client.starts if client is not None else 0
        return True

    def steps(self):
        steps = [(f"{self.key}: open", self.open, 30), (f"{self.key}: trigger", self.start, 5),
                 (f"{self.key}: dialog", self.fill, 10), (f"{self.key}: first preview", self.first_preview, 60)]
        steps += [(f"{self.key}: change {key}", self.change, 20) for key, _ in self.changes]
        steps.append((f"{self.key}: OK" if self.accept else f"{self.key}: Cancel", self.finish_dialog, 5))
        steps.append((f"{self.key}: wait", self.wait_end if self.accept else self.settle, 90))
        return steps + [(f"{self.key}: record", self.record, 30), (f"{self.key}: core", self.record_core, 5)]


REPLACE = {"mode": "replace", "sky": "sunset", "recolour": 0.0, "relight": 0.0, "halo": 0.0, "haze": 0.0,
           "reflection": 1.0, "device": "cpu"}  # every setting a case relies on (the dialog remembers the last)
HARMONISED = dict(REPLACE, recolour=0.35, relight=0.4, halo=0.2)
REALISM = dict(REPLACE, sky="blue-cumulus", haze=0.5)  # the lake's reflection (automatic) and horizon haze


def plan():
    if SESSION == "broken-core":  # the core's Python is missing: said at once, no dialog opens
        return Case("broken_core", {}).steps(dialog=False)
    bad_sky = out("not_an_image.jpg")
    with open(bad_sky, "w") as handle:
        handle.write("this is text, not a JPEG\n")
    live = [("relight_slider", 16), ("sky", "blue-cumulus")]  # relight 0 -> 0.8 (slider ticks of 0.05)
    return (PreviewCase("preview", REPLACE, live, accept=True, screenshot="krita-dialog.png").steps()
            + PreviewCase("preview_again", REPLACE, [("edge_fade", 12.0)], accept=False).steps()
            + Case("replace", REPLACE).steps(undo=True)
            + Case("mask", {"mode": "mask", "device": "cpu"}).steps()
            + Case("cancel", REPLACE).steps(cancel=True)
            + Case("bad_sky", dict(REPLACE, sky="image file...", sky_file=bad_sky)).steps()
            + (Case("deep", HARMONISED, photo=DEEP_PHOTO).steps() if DEEP_PHOTO else [])
            + (Case("realism", REALISM, photo=WATER_PHOTO).steps() if WATER_PHOTO else [])
            + Case("float", HARMONISED, color_space=("RGBA", "F32", "sRGB-elle-V2-g10.icc")).steps())


def begin():
    REPORT["krita_version"] = Krita.instance().version()
    try:
        steps = plan()
    except Exception:  # noqa: BLE001 - any failure must end the run, never hang Krita
        REPORT["errors"].append(traceback.format_exc())
        finish()
        return
    global RUNNER
    RUNNER = Steps(steps)  # PyQt holds timer callbacks' objects weakly: keep the runner alive here
    RUNNER.run()


class E2EExtension(Extension):
    def setup(self):
        sys.excepthook = excepthook
        Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(300, begin))

    def createActions(self, window):
        pass


Krita.instance().addExtension(E2EExtension(Krita.instance()))
