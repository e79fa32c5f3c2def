"""The Replace Sky dialog: a live preview beside a sky gallery, sliders and looks.

Widgets carry objectNames so tests can drive them: every option's number box is named after the option
(its slider ``<name>_slider``), the gallery ``sky``, the preview ``preview``. The dialog only collects
``DialogValues`` and shows pictures; the extension runs the core (``request_preview`` is emitted, after
a short pause, whenever a setting changes).
"""

from __future__ import annotations

from collections.abc import Sequence

from PyQt5.QtCore import QSize, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QIcon, QImage, QKeySequence, QPixmap
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QShortcut,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from .bridge_client import NumberOption, OptionTable, Preview, SkyChoice, with_mnemonic
from .options import SKY_FILE_CHOICE, DialogValues, build_options, dialog_values_from, sky_choices

DIALOG_NAME = "clnsod_replace_sky_dialog"
# Titles of the boxes the table's groups go in, in dialog order; other groups go in the bottom form.
GROUP_TITLES = {"edge": "Sky edge", "sky": "Sky placement", "foreground": "Foreground"}
REPLACE_ONLY_GROUPS = ("sky", "foreground")  # meaningless in mask mode: disabled there
MODE_TEXTS = {"replace": "Replace the sky (new sky, sky mask, foreground lighting)",
              "mask": "Mask only (sky mask layer + selection)"}
THUMB_SIZE = QSize(120, 68)  # gallery thumbnails
PREVIEW_BOX = QSize(720, 540)  # the preview is scaled to fit this
SETTLE_MS = 120  # a preview is asked for this long after the last change (a dragged slider settles)
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.tif *.tiff *.bmp);;All files (*)"
# Alt+letters of the dialog's own controls (OK, Cancel, Show original, Browse, Save look, Delete, Look);
# every setting gets another one (bridge_client.with_mnemonic).
RESERVED_MNEMONICS = frozenset("ocibldk")


class SliderRow(QWidget):
    """A slider and its number box for one numeric option; both edit the same value."""

    changed = pyqtSignal()

    def __init__(self, option: NumberOption) -> None:
        super().__init__()
        self.option = option
        self.ticks = max(1, round((option.maximum - option.minimum) / option.step))
        self.slider = QSlider(Qt.Horizontal, objectName=f"{option.key}_slider")
        self.slider.setRange(0, self.ticks)
        self.slider.setPageStep(max(1, self.ticks // 10))
        self.spin = QDoubleSpinBox(objectName=option.key)
        self.spin.setRange(option.minimum, option.maximum)
        self.spin.setDecimals(option.decimals)
        self.spin.setSingleStep(option.step)
        self.spin.setKeyboardTracking(False)  # typed numbers count when complete
        for widget in (self.slider, self.spin):
            widget.setToolTip(option.tooltip)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)
        self.slider.valueChanged.connect(self._slid)
        self.spin.valueChanged.connect(self._typed)
        self._sync_slider(self.spin.value())

    def _slid(self, tick: int) -> None:
        value = self.option.minimum + tick * self.option.step
        if abs(value - self.spin.value()) >= self.option.step / 2:
            self.spin.setValue(value)  # emits _typed, which emits changed

    def _typed(self, value: float) -> None:
        self._sync_slider(value)
        self.changed.emit()

    def _sync_slider(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round((value - self.option.minimum) / self.option.step))
        self.slider.blockSignals(False)

    def value(self) -> float:
        return self.spin.value()

    def set_value(self, value: float) -> None:
        self.spin.setValue(value)


class ReplaceSkyDialog(QDialog):
    """Collects the options and shows the previews the extension computes; read ``values()``."""

    request_preview = pyqtSignal()  # the settings changed and have settled
    save_look = pyqtSignal(str)  # the artist named the current settings
    delete_look = pyqtSignal(str)
    picked_look = pyqtSignal(str)

    def __init__(self, table: OptionTable, values: DialogValues, parent: QWidget | None = None,
                 skies: Sequence[SkyChoice] = (), sky_note: str = "", looks: Sequence[str] = ()) -> None:
        """``skies``: presets and the user's library with thumbnails (``bridge_client.list_skies``);
        empty: the presets without thumbnails. ``sky_note``: why the library could not be listed.
        ``looks``: names of the saved looks."""
        super().__init__(parent)
        self.table = table
        self.skies = sky_choices(table, skies)
        self.setObjectName(DIALOG_NAME)
        self.setWindowTitle("Replace Sky (CLN-SOD)")
        self.rows: dict[str, SliderRow] = {}
        self.checks: dict[str, QCheckBox] = {}
        self._mnemonics = set(RESERVED_MNEMONICS)
        self.preview_count = 0  # previews shown so far (the end-to-end tests wait on it)
        self._before: QPixmap | None = None
        self._after: QPixmap | None = None
        self._settle = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self._settle.timeout.connect(self.request_preview)

        outer = QHBoxLayout(self)
        outer.addLayout(self._preview_column(), 3)
        settings = QWidget()
        column = QVBoxLayout(settings)
        column.addWidget(self._sky_box(sky_note))
        self.boxes: dict[str, QGroupBox] = {}
        for group, title in GROUP_TITLES.items():
            box = QGroupBox(title)
            form = QFormLayout(box)
            self._add_settings(form, group)
            self.boxes[group] = box
            column.addWidget(box)
            if form.rowCount() == 0:  # a group this core has no dialog options in
                box.hide()
        column.addWidget(self._job_box())
        column.addLayout(self._looks_row(looks))
        column.addStretch(1)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(settings)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(settings.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
        right = QVBoxLayout()
        right.addWidget(scroll, 1)
        right.addWidget(QLabel("The original layer is left untouched; results are added as new layers.", wordWrap=True))
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel | QDialogButtonBox.RestoreDefaults)
        buttons.setObjectName("buttons")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.RestoreDefaults).clicked.connect(self._restore_defaults)
        right.addWidget(buttons)
        outer.addLayout(right, 2)

        self.mode.currentIndexChanged.connect(self._update_enabled)
        self.gallery.currentItemChanged.connect(self._update_enabled)
        self.set_values(values)
        for signal in ([self.mode.currentIndexChanged, self.device.currentIndexChanged, self.gallery.currentItemChanged,
                        self.sky_file.editingFinished] + [row.changed for row in self.rows.values()]
                       + [check.toggled for check in self.checks.values()]):
            signal.connect(self.settings_changed)

    # -- layout ------------------------------------------------------------------------------------

    def _preview_column(self) -> QVBoxLayout:
        column = QVBoxLayout()
        self.preview = QLabel("Starting the CLN-SOD core...", objectName="preview", alignment=Qt.AlignCenter)
        self.preview.setMinimumSize(PREVIEW_BOX)
        self.preview.setStyleSheet("QLabel#preview { background: #202020; color: #d0d0d0; }")
        column.addWidget(self.preview, 1)
        row = QHBoxLayout()
        self.before_after = QPushButton("Show orig&inal", objectName="before_after", checkable=True)
        self.before_after.setToolTip("Toggle to compare with the photo as it is (shortcut: \\)")
        self.before_after.toggled.connect(self._show_picture)
        QShortcut(QKeySequence("\\"), self, activated=self.before_after.toggle)
        self.status = QLabel("", objectName="preview_status")
        row.addWidget(self.before_after)
        row.addWidget(self.status, 1)
        column.addLayout(row)
        return column

    def _sky_box(self, sky_note: str) -> QGroupBox:
        box = QGroupBox("Sky")
        layout = QVBoxLayout(box)
        self.gallery = QListWidget(objectName="sky")
        self.gallery.setViewMode(QListWidget.IconMode)
        self.gallery.setIconSize(THUMB_SIZE)
        self.gallery.setResizeMode(QListWidget.Adjust)
        self.gallery.setMovement(QListWidget.Static)
        self.gallery.setSelectionMode(QAbstractItemView.SingleSelection)
        self.gallery.setWordWrap(True)
        self.gallery.setGridSize(QSize(THUMB_SIZE.width() + 12, THUMB_SIZE.height() + 36))
        self.gallery.setMinimumHeight(2 * (THUMB_SIZE.height() + 40))
        self.gallery.setToolTip(self.table.option("sky").help)
        for choice in self.skies:
            item = QListWidgetItem(QIcon(choice.thumbnail) if choice.thumbnail else QIcon(), choice.label)
            item.setData(Qt.UserRole, choice.name)
            item.setToolTip(choice.description or choice.label)
            self.gallery.addItem(item)
        file_item = QListWidgetItem(QIcon.fromTheme("document-open"), "Image file...")
        file_item.setData(Qt.UserRole, SKY_FILE_CHOICE)
        self.gallery.addItem(file_item)
        layout.addWidget(self.gallery)
        if sky_note:
            layout.addWidget(QLabel(f"Your sky library could not be listed: {sky_note}", objectName="sky_note",
                                    wordWrap=True))
        file_row = QHBoxLayout()
        self.sky_file = QLineEdit(objectName="sky_file")
        self.sky_file.setPlaceholderText("sky image (JPEG, PNG, WebP, TIFF)")
        browse = QPushButton("&Browse...", objectName="browse")
        browse.clicked.connect(self._browse)
        file_row.addWidget(self.sky_file, 1)
        file_row.addWidget(browse)
        layout.addLayout(file_row)
        self.chosen = QLabel(objectName="sky_chosen")
        layout.addWidget(self.chosen)
        return box

    def _job_box(self) -> QGroupBox:
        box = QGroupBox("Result")
        form = QFormLayout(box)
        self.mode = QComboBox(objectName="mode")
        for mode in self.table.modes:
            self.mode.addItem(MODE_TEXTS.get(mode, mode), mode)
        self.mode.setToolTip(self.table.option("mode").help)
        form.addRow(self._label(self.table.option("mode").label, self.mode), self.mode)
        self._add_settings(form, None)
        self.device = QComboBox(objectName="device")
        for device in self.table.devices:
            self.device.addItem(device, device)
        self.device.setToolTip(self.table.option("device").help)
        form.addRow(self._label(self.table.option("device").label, self.device), self.device)
        return box

    def _looks_row(self, looks: Sequence[str]) -> QHBoxLayout:
        row = QHBoxLayout()
        self.looks = QComboBox(objectName="looks")
        self.looks.setToolTip("Saved looks: every setting of this dialog under a name")
        self.set_looks(looks)
        self.looks.activated.connect(self._look_picked)
        save = QPushButton("Save &look...", objectName="save_look")
        save.clicked.connect(self._save_look)
        delete = QPushButton("&Delete", objectName="delete_look")
        delete.clicked.connect(self._delete_look)
        title = QLabel("Loo&k")
        title.setBuddy(self.looks)
        row.addWidget(title)
        row.addWidget(self.looks, 1)
        row.addWidget(save)
        row.addWidget(delete)
        return row

    def _add_settings(self, form: QFormLayout, group: str | None) -> None:
        """Sliders, then check boxes, of one group of the table (None: the groups without a box)."""
        def wanted(option_group: str) -> bool:
            return option_group == group if group is not None else option_group not in GROUP_TITLES

        for option in self.table.numbers:
            if wanted(option.group):
                self.rows[option.key] = SliderRow(option)
                row = self.rows[option.key]
                form.addRow(self._label(option.label, row.slider), row)  # Alt+letter, then the arrow keys
        for switch in self.table.switches:
            if wanted(switch.group):
                check = QCheckBox(with_mnemonic(switch.label, self._mnemonics, "&"), objectName=switch.name)
                check.setToolTip(switch.help)
                self.checks[switch.name] = check
                form.addRow("", check)

    def _label(self, text: str, buddy: QWidget) -> QLabel:
        """A form label whose Alt+letter (unique in the dialog) moves the focus to ``buddy``."""
        label = QLabel(with_mnemonic(text, self._mnemonics, "&"))
        label.setBuddy(buddy)
        return label

    # -- looks -------------------------------------------------------------------------------------

    def set_looks(self, names: Sequence[str]) -> None:
        self.looks.blockSignals(True)
        self.looks.clear()
        self.looks.addItem("(choose a saved look)", "")
        for name in names:
            self.looks.addItem(name, name)
        self.looks.blockSignals(False)

    def _look_picked(self, index: int) -> None:
        name = self.looks.itemData(index)
        if name:
            self.picked_look.emit(name)

    def _save_look(self) -> None:
        name, ok = QInputDialog.getText(self, "Save look", "Name of this look:")
        if ok and name.strip():
            self.save_look.emit(name.strip())

    def _delete_look(self) -> None:
        name = self.looks.currentData()
        if name:
            self.delete_look.emit(name)

    # -- behaviour ---------------------------------------------------------------------------------

    def settings_changed(self, *_args: object) -> None:
        self._show_chosen_sky()
        self._settle.start()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Sky image", self.sky_file.text(), IMAGE_FILTER)
        if path:
            self.sky_file.setText(path)
            self._select_sky(SKY_FILE_CHOICE)
            self.settings_changed()

    def _restore_defaults(self) -> None:
        self.set_values(dialog_values_from({}, self.table, self.skies))

    def _select_sky(self, name: str) -> None:
        for index in range(self.gallery.count()):
            if self.gallery.item(index).data(Qt.UserRole) == name:
                self.gallery.setCurrentRow(index)
                return
        self.gallery.setCurrentRow(0)

    def sky_choice(self) -> str:
        item = self.gallery.currentItem()
        return str(item.data(Qt.UserRole)) if item is not None else SKY_FILE_CHOICE

    def _show_chosen_sky(self) -> None:
        """The chosen sky's name and thumbnail under the gallery."""
        choice = next((sky for sky in self.skies if sky.name == self.sky_choice()), None)
        pixmap = QPixmap(choice.thumbnail) if choice is not None and choice.thumbnail else QPixmap()
        if not pixmap.isNull():
            self.chosen.setPixmap(pixmap.scaledToWidth(160, Qt.SmoothTransformation))
        else:
            self.chosen.setText(self.sky_file.text() if choice is None else choice.label)

    def _update_enabled(self) -> None:
        replace = self.mode.currentData() == "replace"
        for widget in [self.gallery] + [self.boxes[group] for group in REPLACE_ONLY_GROUPS]:
            widget.setEnabled(replace)
        self.sky_file.setEnabled(replace and self.sky_choice() == SKY_FILE_CHOICE)

    def set_values(self, values: DialogValues) -> None:
        self.mode.setCurrentIndex(self.mode.findData("mask" if values.mask_only else "replace"))
        self._select_sky(values.sky_choice)
        self.sky_file.setText(values.sky_file)
        for key, row in self.rows.items():
            row.set_value(values.numbers.get(key, row.value()))
        for key, check in self.checks.items():
            check.setChecked(values.switches.get(key, check.isChecked()))
        self.device.setCurrentIndex(max(0, self.device.findData(values.device)))
        self._update_enabled()
        self.settings_changed()

    def options(self) -> dict[str, object]:
        """The request options the widgets mean; BridgeError with a readable message if unusable."""
        return build_options(self.values(), self.table, self.skies)

    def values(self) -> DialogValues:
        return DialogValues(
            mask_only=self.mode.currentData() == "mask",
            sky_choice=self.sky_choice(),
            sky_file=self.sky_file.text(),
            numbers={key: row.value() for key, row in self.rows.items()},
            switches={key: check.isChecked() for key, check in self.checks.items()},
            device=str(self.device.currentData()),
        )

    # -- pictures ----------------------------------------------------------------------------------

    def set_busy(self, text: str) -> None:
        self.status.setText(text)
        self.preview.setCursor(Qt.BusyCursor)

    def show_message(self, text: str) -> None:
        """A problem with the preview (a bad sky file...): shown under it, the dialog stays usable."""
        self.status.setText(text)
        self.preview.unsetCursor()

    def show_original(self, original: Preview) -> None:
        self._before = _pixmap(original)
        if self._after is None:
            self.preview.setPixmap(self._fit(self._before))

    def show_preview(self, preview: Preview, note: str = "") -> None:
        self._after = _pixmap(preview)
        self.preview_count += 1
        self.preview.unsetCursor()
        said = "no sky found in this image: the result adds nothing" if not preview.sky_found else \
            f"Preview updated in {preview.seconds:.2f} s"
        self.status.setText(f"{said}. {note}" if note else said)
        self._show_picture()

    def _show_picture(self) -> None:
        shown = self._before if self.before_after.isChecked() else (self._after or self._before)
        if shown is not None:
            self.preview.setPixmap(self._fit(shown))

    def _fit(self, pixmap: QPixmap) -> QPixmap:
        return pixmap.scaled(self.preview.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._show_picture()


def _pixmap(picture: Preview) -> QPixmap:
    image = QImage(picture.rgb, picture.width, picture.height, 3 * picture.width, QImage.Format_RGB888)
    return QPixmap.fromImage(image.copy())  # copy: the QImage must not outlive the bytes


def make_non_blocking(dialog: QDialog) -> None:
    """Window-modal, shown with open(): Krita's event loop keeps running (no nested exec())."""
    dialog.setWindowModality(Qt.WindowModal)
    dialog.setAttribute(Qt.WA_DeleteOnClose, True)
