"""The Replace Sky dialog: widgets <-> DialogValues. Widgets carry objectNames so tests can drive them."""

from __future__ import annotations

from PyQt5.QtCore import Qt
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

from . import bridge_client
from .options import SKY_FILE_CHOICE, DialogValues, sky_choices

DIALOG_NAME = "clnsod_replace_sky_dialog"
SKY_KEYS = ("sky_scale", "sky_shift_x", "sky_shift_y", "sky_brightness", "sky_temperature")
EDGE_KEYS = ("edge_shift", "edge_fade")
FOREGROUND_KEYS = ("recolour", "relight", "halo")
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.tif *.tiff *.bmp);;All files (*)"


class ReplaceSkyDialog(QDialog):
    """Collects the options; the caller reads ``values()`` after ``accepted``."""

    def __init__(self, values: DialogValues, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(DIALOG_NAME)
        self.setWindowTitle("Replace Sky (CLN-SOD)")
        self.spins: dict[str, QDoubleSpinBox] = {}
        layout = QVBoxLayout(self)

        top = QFormLayout()
        self.mode = QComboBox(objectName="mode")
        self.mode.addItem("Replace the sky (new sky, sky mask, foreground lighting)", "replace")
        self.mode.addItem("Mask only (sky mask layer + selection)", "mask")
        top.addRow("Result", self.mode)
        self.sky = QComboBox(objectName="sky")
        for name in sky_choices():
            self.sky.addItem(name, name)
        top.addRow("Sky", self.sky)
        file_row = QHBoxLayout()
        self.sky_file = QLineEdit(objectName="sky_file")
        self.sky_file.setPlaceholderText("sky image (JPEG, PNG, WebP, TIFF)")
        browse = QPushButton("Browse...", objectName="browse")
        browse.clicked.connect(self._browse)
        file_row.addWidget(self.sky_file)
        file_row.addWidget(browse)
        top.addRow("Sky image", file_row)
        layout.addLayout(top)

        self.sky_box = self._number_box("Sky placement", SKY_KEYS)
        self.sky_flip = QCheckBox("Flip the sky horizontally", objectName="sky_flip")
        self.sky_box.layout().addRow("", self.sky_flip)
        layout.addWidget(self._number_box("Sky edge", EDGE_KEYS))
        layout.addWidget(self.sky_box)
        self.foreground_box = self._number_box("Foreground", FOREGROUND_KEYS)
        layout.addWidget(self.foreground_box)

        bottom = QFormLayout()
        self.device = QComboBox(objectName="device")
        for device in bridge_client.DEVICES:
            self.device.addItem(device, device)
        bottom.addRow("Device", self.device)
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
        self.set_values(values)

    def _number_box(self, title: str, keys: tuple) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        for option in bridge_client.NUMBER_OPTIONS:
            if option.key not in keys:
                continue
            spin = QDoubleSpinBox(objectName=option.key)
            spin.setRange(option.minimum, option.maximum)
            spin.setDecimals(option.decimals)
            spin.setSingleStep(option.step)
            spin.setToolTip(option.tooltip)
            self.spins[option.key] = spin
            form.addRow(option.label, spin)
        return box

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Sky image", self.sky_file.text(), IMAGE_FILTER)
        if path:
            self.sky_file.setText(path)
            self.sky.setCurrentIndex(self.sky.findData(SKY_FILE_CHOICE))

    def _restore_defaults(self) -> None:
        from .options import dialog_values_from

        self.set_values(dialog_values_from(dict(bridge_client.DEFAULT_OPTIONS)))

    def _update_enabled(self) -> None:
        replace = self.mode.currentData() == "replace"
        for widget in (self.sky, self.sky_box, self.foreground_box):
            widget.setEnabled(replace)
        self.sky_file.setEnabled(replace and self.sky.currentData() == SKY_FILE_CHOICE)

    def set_values(self, values: DialogValues) -> None:
        self.mode.setCurrentIndex(self.mode.findData("mask" if values.mask_only else "replace"))
        self.sky.setCurrentIndex(max(0, self.sky.findData(values.sky_choice)))
        self.sky_file.setText(values.sky_file)
        for key, spin in self.spins.items():
            spin.setValue(values.numbers.get(key, spin.value()))
        self.sky_flip.setChecked(values.sky_flip)
        self.device.setCurrentIndex(max(0, self.device.findData(values.device)))
        self._update_enabled()

    def values(self) -> DialogValues:
        return DialogValues(
            mask_only=self.mode.currentData() == "mask",
            sky_choice=str(self.sky.currentData()),
            sky_file=self.sky_file.text(),
            numbers={key: spin.value() for key, spin in self.spins.items()},
            sky_flip=self.sky_flip.isChecked(),
            device=str(self.device.currentData()),
        )


def make_non_blocking(dialog: QDialog) -> None:
    """Window-modal, shown with open(): Krita's event loop keeps running (no nested exec())."""
    dialog.setWindowModality(Qt.WindowModal)
    dialog.setAttribute(Qt.WA_DeleteOnClose, True)
