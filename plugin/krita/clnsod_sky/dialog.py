"""The Replace Sky dialog: widgets <-> DialogValues. Widgets carry objectNames so tests can drive them."""

from __future__ import annotations

from collections.abc import Sequence

from PyQt5.QtCore import QSize, Qt
from PyQt5.QtGui import QIcon, QPixmap
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .bridge_client import OptionTable, SkyChoice
from .options import SKY_FILE_CHOICE, DialogValues, dialog_values_from, sky_choices

DIALOG_NAME = "clnsod_replace_sky_dialog"
# Titles of the boxes the table's groups go in, in dialog order; other groups go in the bottom form.
GROUP_TITLES = {"edge": "Sky edge", "sky": "Sky placement", "foreground": "Foreground"}
REPLACE_ONLY_GROUPS = ("sky", "foreground")  # meaningless in mask mode: disabled there
MODE_TEXTS = {"replace": "Replace the sky (new sky, sky mask, foreground lighting)",
              "mask": "Mask only (sky mask layer + selection)"}
ICON_SIZE = QSize(64, 36)  # thumbnails in the sky list
PREVIEW_WIDTH = 240  # the chosen sky's thumbnail under the list
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.tif *.tiff *.bmp);;All files (*)"


class ReplaceSkyDialog(QDialog):
    """Collects the options; the caller reads ``values()`` after ``accepted``.

    Number boxes, check boxes and devices are built from the core's option table; each widget's
    objectName is its option name (the end-to-end tests drive the dialog by these names).
    """

    def __init__(self, table: OptionTable, values: DialogValues, parent: QWidget | None = None,
                 skies: Sequence[SkyChoice] = (), sky_note: str = "") -> None:
        """``skies``: presets and the user's library with thumbnails (``bridge_client.list_skies``);
        empty: the presets without thumbnails. ``sky_note``: why the library could not be listed."""
        super().__init__(parent)
        self.table = table
        self.skies = sky_choices(table, skies)
        self.setObjectName(DIALOG_NAME)
        self.setWindowTitle("Replace Sky (CLN-SOD)")
        self.spins: dict[str, QDoubleSpinBox] = {}
        self.checks: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)

        top = QFormLayout()
        self.mode = QComboBox(objectName="mode")
        for mode in table.modes:
            self.mode.addItem(MODE_TEXTS.get(mode, mode), mode)
        self.mode.setToolTip(table.option("mode").help)
        top.addRow(table.option("mode").label, self.mode)
        self.sky = QComboBox(objectName="sky")
        self.sky.setIconSize(ICON_SIZE)
        self.sky.setMaxVisibleItems(12)
        for choice in self.skies:
            self.sky.addItem(QIcon(choice.thumbnail) if choice.thumbnail else QIcon(), choice.label, choice.name)
            self.sky.setItemData(self.sky.count() - 1, choice.description, Qt.ToolTipRole)
        self.sky.addItem("Image file...", SKY_FILE_CHOICE)
        self.sky.setToolTip(table.option("sky").help)
        top.addRow(table.option("sky").label, self.sky)
        self.sky_preview = QLabel(objectName="sky_preview")
        self.sky_preview.setFixedWidth(PREVIEW_WIDTH)
        top.addRow("", self.sky_preview)
        if sky_note:
            top.addRow("", QLabel(f"Your sky library could not be listed: {sky_note}", objectName="sky_note",
                                  wordWrap=True))
        file_row = QHBoxLayout()
        self.sky_file = QLineEdit(objectName="sky_file")
        self.sky_file.setPlaceholderText("sky image (JPEG, PNG, WebP, TIFF)")
        browse = QPushButton("Browse...", objectName="browse")
        browse.clicked.connect(self._browse)
        file_row.addWidget(self.sky_file)
        file_row.addWidget(browse)
        top.addRow("Sky image", file_row)
        layout.addLayout(top)

        self.boxes: dict[str, QGroupBox] = {}
        for group, title in GROUP_TITLES.items():
            box = QGroupBox(title)
            form = QFormLayout(box)
            self._add_settings(form, group)
            self.boxes[group] = box
            layout.addWidget(box)
            if form.rowCount() == 0:  # a group this core has no dialog options in
                box.hide()

        bottom = QFormLayout()
        self._add_settings(bottom, None)
        self.device = QComboBox(objectName="device")
        for device in table.devices:
            self.device.addItem(device, device)
        self.device.setToolTip(table.option("device").help)
        bottom.addRow(table.option("device").label, self.device)
        layout.addLayout(bottom)
        layout.addWidget(QLabel("The original layer is left untouched; results are added as new layers."))

        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel | QDialogButtonBox.RestoreDefaults)
        buttons.setObjectName("buttons")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.RestoreDefaults).clicked.connect(self._restore_defaults)
        layout.addWidget(buttons)

        self.mode.currentIndexChanged.connect(self._update_enabled)
        self.sky.currentIndexChanged.connect(self._update_enabled)
        self.sky.currentIndexChanged.connect(self._show_sky)
        self.set_values(values)

    def _add_settings(self, form: QFormLayout, group: str | None) -> None:
        """Number boxes, then check boxes, of one group of the table (None: the groups without a box)."""
        def wanted(option_group: str) -> bool:
            return option_group == group if group is not None else option_group not in GROUP_TITLES

        for option in self.table.numbers:
            if not wanted(option.group):
                continue
            spin = QDoubleSpinBox(objectName=option.key)
            spin.setRange(option.minimum, option.maximum)
            spin.setDecimals(option.decimals)
            spin.setSingleStep(option.step)
            spin.setToolTip(option.tooltip)
            self.spins[option.key] = spin
            form.addRow(option.label, spin)
        for switch in self.table.switches:
            if not wanted(switch.group):
                continue
            check = QCheckBox(switch.label, objectName=switch.name)
            check.setToolTip(switch.help)
            self.checks[switch.name] = check
            form.addRow("", check)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Sky image", self.sky_file.text(), IMAGE_FILTER)
        if path:
            self.sky_file.setText(path)
            self.sky.setCurrentIndex(self.sky.findData(SKY_FILE_CHOICE))

    def _restore_defaults(self) -> None:
        self.set_values(dialog_values_from({}, self.table, self.skies))

    def _show_sky(self) -> None:
        """The chosen sky's thumbnail (nothing for an image file: it may be huge)."""
        choice = next((sky for sky in self.skies if sky.name == self.sky.currentData()), None)
        pixmap = QPixmap(choice.thumbnail) if choice is not None and choice.thumbnail else QPixmap()
        if pixmap.isNull():
            self.sky_preview.clear()
            self.sky_preview.hide()
            return
        self.sky_preview.setPixmap(pixmap.scaledToWidth(PREVIEW_WIDTH, Qt.SmoothTransformation))
        self.sky_preview.show()

    def _update_enabled(self) -> None:
        replace = self.mode.currentData() == "replace"
        for widget in [self.sky] + [self.boxes[group] for group in REPLACE_ONLY_GROUPS]:
            widget.setEnabled(replace)
        self.sky_file.setEnabled(replace and self.sky.currentData() == SKY_FILE_CHOICE)

    def set_values(self, values: DialogValues) -> None:
        self.mode.setCurrentIndex(self.mode.findData("mask" if values.mask_only else "replace"))
        self.sky.setCurrentIndex(max(0, self.sky.findData(values.sky_choice)))
        self.sky_file.setText(values.sky_file)
        self._show_sky()
        for key, spin in self.spins.items():
            spin.setValue(values.numbers.get(key, spin.value()))
        for key, check in self.checks.items():
            check.setChecked(values.switches.get(key, check.isChecked()))
        self.device.setCurrentIndex(max(0, self.device.findData(values.device)))
        self._update_enabled()

    def values(self) -> DialogValues:
        return DialogValues(
            mask_only=self.mode.currentData() == "mask",
            sky_choice=str(self.sky.currentData()),
            sky_file=self.sky_file.text(),
            numbers={key: spin.value() for key, spin in self.spins.items()},
            switches={key: check.isChecked() for key, check in self.checks.items()},
            device=str(self.device.currentData()),
        )


def make_non_blocking(dialog: QDialog) -> None:
    """Window-modal, shown with open(): Krita's event loop keeps running (no nested exec())."""
    dialog.setWindowModality(Qt.WindowModal)
    dialog.setAttribute(Qt.WA_DeleteOnClose, True)
