"""Preferences: who reviews, the review threshold, how cells are found, the lab's pixel size,
reference ranges and how much the log keeps."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ...core.classes import REFERENCE_RANGES, WBC_GROUPS, ReferenceRange
from ...core.logs import DEFAULT_LEVEL, LEVELS, log_path
from ...core.preferences import DEFAULT_MIN_WBC, DEFAULT_REVIEW_THRESHOLD, Preferences, server_problem
from ...core.scale import DEFAULT_UM_PER_PX, MIN_IMAGES_FOR_LAB_SCALE, PLAUSIBLE_UM_PER_PX, lab_pixel_size, red_cell_estimates
from ...core.vocabulary import SEGMENTERS
from ..palette import display_name

# How each segmenter reads to a reviewer (vocabulary.SEGMENTERS).
SEGMENTER_NAMES = {
    "auto": "Automatic (network for smear fields, classic for single cells)",
    "classic": "Classic (thresholds and watershed)",
    "unet": "Network (U-Net trained on three labs)",
}

# What each log level keeps, in a reviewer's words (core.logs.LEVELS).
LOG_LEVEL_NAMES = {
    "DEBUG": "Everything (for a problem report)",
    "INFO": "Information (default)",
    "WARNING": "Warnings and errors",
    "ERROR": "Errors only",
}


def _spin(low: float, high: float, value: float, decimals: int = 1, suffix: str = " %") -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(decimals)
    box.setSuffix(suffix)
    box.setValue(value)
    return box


class PreferencesDialog(QDialog):
    def __init__(self, prefs: Preferences, parent=None, session_scales: Sequence[tuple[float, str]] = ()):
        """``session_scales``: the open session's images' (µm per pixel, what it was measured on),
        from which *Measure on this session's images* takes the lab's pixel size."""
        super().__init__(parent)
        self._session_scales = list(session_scales)
        self.setWindowTitle("Preferences")
        self._prefs = prefs
        self.reviewer = QLineEdit(prefs.reviewer)
        self.reviewer.setPlaceholderText("Name or initials recorded with each correction")
        self.threshold = _spin(0.0, 100.0, 100 * prefs.review_threshold)
        self.threshold.setToolTip(
            "Cells whose calibrated confidence is below this wait in the to-review queue. "
            f"Default {100 * DEFAULT_REVIEW_THRESHOLD:.0f} %: a calibrated 90 % is wrong about one time in ten."
        )
        self.min_wbc = QSpinBox()
        self.min_wbc.setRange(0, 10_000)
        self.min_wbc.setValue(prefs.min_wbc)
        self.min_wbc.setToolTip("Fewer white cells than this raises a 'few cells' flag")
        self.lab_name = QLineEdit(prefs.lab_name)
        self.lab_name.setPlaceholderText("Printed at the top of each report and sent to the LIS")
        form = QFormLayout()
        form.addRow("Laboratory", self.lab_name)
        form.addRow("Reviewer", self.reviewer)
        form.addRow("Review cells below", self.threshold)
        form.addRow("White cells for a full count", self.min_wbc)
        self.segmenter = QComboBox()
        for key in SEGMENTERS:
            self.segmenter.addItem(SEGMENTER_NAMES[key], key)
        self.segmenter.setCurrentIndex(SEGMENTERS.index(prefs.segmenter))
        self.segmenter.setToolTip(
            "How cells are found in newly analysed images. The network holds on other labs' smears, "
            "where the classic method merges neighbouring cells; Analysis › Re-analyse applies a change to open images."
        )
        form.addRow("Find cells with", self.segmenter)
        form.addRow("Pixel size", self._pixel_size_row(prefs))
        self.review_server = QLineEdit(prefs.review_server)
        self.review_server.setPlaceholderText("postgresql://host/database — empty: sessions are files on this computer")
        self.review_server.setToolTip(
            "Several review stations share sessions on the lab's PostgreSQL server. No password here: "
            "it is read from the password file (PGPASSFILE, ~/.pgpass) or a service file."
        )
        form.addRow("Review stations: server", self.review_server)
        self.log_level = QComboBox()
        for level in LEVELS:
            self.log_level.addItem(LOG_LEVEL_NAMES[level], level)
        self.log_level.setCurrentIndex(LEVELS.index(prefs.log_level))
        self.log_level.setToolTip(f"How much the log file keeps; it is {log_path()} (Help › Open log folder)")
        form.addRow("Log detail", self.log_level)

        ranges = QGroupBox("Reference ranges (% of white cells)")
        grid = QGridLayout(ranges)
        grid.addWidget(QLabel("Low"), 0, 1)
        grid.addWidget(QLabel("High"), 0, 2)
        self.ranges: dict[str, tuple[QDoubleSpinBox, QDoubleSpinBox]] = {}
        for row, group in enumerate(WBC_GROUPS, start=1):
            r = prefs.reference_ranges.get(group, REFERENCE_RANGES[group])
            low, high = _spin(0.0, 100.0, r.low), _spin(0.0, 100.0, r.high)
            grid.addWidget(QLabel(display_name(group)), row, 0)
            grid.addWidget(low, row, 1)
            grid.addWidget(high, row, 2)
            self.ranges[group] = (low, high)
        note = QLabel("Defaults: adult values (Dacie and Lewis, see core/classes.py); confirm your lab's own.")
        note.setObjectName("Caption")
        note.setWordWrap(True)
        grid.addWidget(note, len(WBC_GROUPS) + 1, 0, 1, 3)
        defaults = QPushButton("Restore defaults")
        defaults.clicked.connect(self.restore_defaults)
        self.error = QLabel("")
        self.error.setStyleSheet("color:#C62828")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.addButton(defaults, QDialogButtonBox.ButtonRole.ResetRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(ranges)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _pixel_size_row(self, prefs: Preferences) -> QVBoxLayout:
        self.lab_scale = QCheckBox("Set for this lab")
        self.lab_scale.setToolTip(
            "Off: each image's pixel size is measured on its own red cells (to about ±7 %), and cells are "
            "resized to one physical scale before the model.\nOn: every image is taken at this size: your "
            "microscope camera's calibrated value, or the median measured on many of your images. A steady "
            "ruler classifies a little better (figures in docs/measurements.md).\n"
            "Leave it off when images come from more than one objective or camera: the others are then "
            "framed at the wrong size, and many of them look unfamiliar to the model.\n"
            "Applies to images analysed from now on; Analysis › Re-analyse applies it to the open ones."
        )
        lo, hi = PLAUSIBLE_UM_PER_PX
        self.um_per_px = _spin(lo, hi, prefs.lab_um_per_px or DEFAULT_UM_PER_PX, decimals=4, suffix=" µm per pixel")
        self.um_per_px.setSingleStep(0.001)
        self.lab_scale.toggled.connect(self.um_per_px.setEnabled)
        self.lab_scale.setChecked(prefs.lab_um_per_px is not None)
        self.lab_scale.toggled.connect(self._lab_scale_toggled)
        self.um_per_px.setEnabled(prefs.lab_um_per_px is not None)
        self.measure = QPushButton("Measure on this session's images")
        self.measure.setToolTip(
            f"The median of the open session's images measured on their red cells (at least {MIN_IMAGES_FOR_LAB_SCALE}; "
            "better a few hundred images of several patients)"
        )
        self.measure.clicked.connect(self.measure_on_session)
        self.measured = QLabel("")
        self.measured.setObjectName("Caption")
        row = QHBoxLayout()
        row.addWidget(self.lab_scale)
        row.addWidget(self.um_per_px, 1)
        row.addWidget(self.measure)
        box = QVBoxLayout()
        box.addLayout(row)
        box.addWidget(self.measured)
        return box

    def _lab_scale_toggled(self, on: bool) -> None:
        """Turned on with no value of the lab's yet: measured on the session if it can be, else
        the reviewer is told the value shown is only CellaVision's until they type theirs."""
        if not on or self._prefs.lab_um_per_px is not None or self.measured.text():
            return
        if lab_pixel_size(self._session_scales) is not None:
            self.measure_on_session()
        else:
            self.measured.setText(
                f"{DEFAULT_UM_PER_PX} µm per pixel is a CellaVision analyser's: type your camera's calibrated value, "
                "or measure it on a session of your images."
            )

    def measure_on_session(self) -> None:
        """Take the lab's pixel size from the session's images, or say why not."""
        value = lab_pixel_size(self._session_scales)
        n = len(red_cell_estimates(self._session_scales))
        if value is None:
            self.measured.setText(
                f"{n} of the session's images were measured on their red cells; {MIN_IMAGES_FOR_LAB_SCALE} are needed. "
                "Analyse more images with the pixel size not set, then measure."
            )
            return
        self.um_per_px.setValue(value)
        self.measured.setText(f"Median of {n} images measured on their red cells: {value:.4f} µm per pixel.")
        self.lab_scale.setChecked(True)

    def restore_defaults(self) -> None:
        self.threshold.setValue(100 * DEFAULT_REVIEW_THRESHOLD)
        self.min_wbc.setValue(DEFAULT_MIN_WBC)
        self.segmenter.setCurrentIndex(SEGMENTERS.index("auto"))
        self.lab_scale.setChecked(False)
        self.log_level.setCurrentIndex(LEVELS.index(DEFAULT_LEVEL))
        for group, (low, high) in self.ranges.items():
            low.setValue(REFERENCE_RANGES[group].low)
            high.setValue(REFERENCE_RANGES[group].high)

    def preferences(self) -> Preferences:
        """The preferences as entered (the last session and others kept)."""
        ranges = {g: ReferenceRange(g, low.value(), high.value()) for g, (low, high) in self.ranges.items()}
        return dataclasses.replace(
            self._prefs,
            reviewer=self.reviewer.text().strip(),
            lab_name=self.lab_name.text().strip(),
            review_threshold=self.threshold.value() / 100,
            min_wbc=self.min_wbc.value(),
            segmenter=self.segmenter.currentData(),
            lab_um_per_px=self.um_per_px.value() if self.lab_scale.isChecked() else None,
            review_server=self.review_server.text().strip(),
            reference_ranges=ranges,
            log_level=self.log_level.currentData(),
            problem="",
        )

    def accept(self) -> None:
        wrong = [display_name(g) for g, (low, high) in self.ranges.items() if low.value() > high.value()]
        if wrong:
            self.error.setText(f"Low is above high for: {', '.join(wrong)}.")
            return
        problem = server_problem(self.review_server.text().strip())
        if problem:
            self.error.setText(problem)
            return
        super().accept()
