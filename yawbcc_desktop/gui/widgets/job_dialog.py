"""What the retraining and adaptation dialogs share: a problem line, progress, the log, Start
and a button that cancels a running job (and closes the dialog otherwise).

A subclass builds its own form above (``_layout``), creates its job in ``start`` and hands it
to ``_run``; the endings ``_finished``, ``_failed`` and ``_cancelled`` can be extended.
Closing the dialog while the job runs cancels it first and closes once it has stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLayout,
    QPlainTextEdit,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from ..training_job import TrainingJob

LOG_LINES = 5000  # the pane keeps the latest; the whole log is in the run folder


def left_out_text(*items: tuple[int, str]) -> str:
    """``<br>Left out: 2 artefacts; 1 image no longer on disk.`` for the counts above zero ('' when none)."""
    parts = [f"{n:,} {what}" for n, what in items if n]
    return "<br>Left out: " + "; ".join(parts) + "." if parts else ""


class JobDialog(QDialog):
    cancel_text = "Cancel"  # the cancel button while the job runs
    failed_text = "Failed."
    cancelled_text = "Cancelled; no model was added."
    log_placeholder = "The log appears here."

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.job: TrainingJob | None = None
        self._close_when_stopped = False
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setStyleSheet("color: #B71C1C;")
        self.message.setVisible(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.log.setPlaceholderText(self.log_placeholder)
        self.buttons = QDialogButtonBox()
        self.start_button = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self._cancel_clicked)

    def _layout(self, above: list[QWidget | QLayout], below_status: Sequence[QWidget] = (), log_stretch: int = 1) -> None:
        """The dialog: ``above`` (the subclass's form), the problem line, progress, ``below_status``, the log, the buttons."""
        layout = QVBoxLayout(self)
        for item in above:
            if isinstance(item, QLayout):
                layout.addLayout(item)
            else:
                layout.addWidget(item)
        layout.addWidget(self.message)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        for widget in below_status:
            layout.addWidget(widget)
        layout.addWidget(self.log, log_stretch)
        layout.addWidget(self.buttons)

    # -- for subclasses

    def start(self) -> None:
        raise NotImplementedError

    def _inputs(self) -> list[QWidget]:
        """The fields that cannot change while the job runs."""
        return []

    def _show_problem(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    # -- running

    def _run(self, job: TrainingJob) -> None:
        self.job = job
        job.progress.connect(self._progress)
        job.log_line.connect(self.log.appendPlainText)
        job.finished.connect(self._finished)
        job.failed.connect(self._failed)
        job.cancelled.connect(self._cancelled)
        self.log.clear()
        self._show_problem("")
        self._set_running(True)
        job.start()

    def _set_running(self, running: bool) -> None:
        for widget in (*self._inputs(), self.start_button):
            widget.setEnabled(not running)
        self.cancel_button.setText(self.cancel_text if running else "Close")
        self.cancel_button.setEnabled(True)

    def _progress(self, done: int, total: int, text: str) -> None:
        self.bar.setRange(0, total)  # 0..0: a busy bar while no fraction is known
        self.bar.setValue(done)
        self.status.setText(text)

    def _stopped(self, value: int, text: str) -> None:
        self._set_running(False)
        self.bar.setRange(0, 1)
        self.bar.setValue(value)
        self.status.setText(text)

    def _finished(self, folder: str) -> None:
        self._stopped(1, f"The new model is ready: {folder}.")
        self.start_button.setEnabled(False)  # one model per dialog: a second Start would reuse the name

    def _failed(self, message: str) -> None:
        self._stopped(0, self.failed_text)
        self._show_problem(message)

    def _cancelled(self) -> None:
        self._stopped(0, self.cancelled_text)
        if self._close_when_stopped:
            super().reject()

    def _cancel_clicked(self) -> None:
        """The button stops a running job and leaves the dialog open for its log; else closes."""
        if self.job is not None and self.job.running:
            self.cancel_button.setEnabled(False)
            self.job.cancel()
        else:
            self.reject()

    def reject(self) -> None:
        """Esc or the window's close button: while the job runs, cancel first and close once it has stopped."""
        if self.job is not None and self.job.running:
            self._close_when_stopped = True
            self.cancel_button.setEnabled(False)
            self.job.cancel()
            return
        super().reject()
