"""The permanent fields of the status bar: the analysis progress, the to-review count, the
image and cell counts, and the model (click to choose another); they follow the analysis
controller's signals."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QLabel, QMainWindow, QToolButton

from ..icons import icon
from .analysis_progress import AnalysisProgress
from .model_chooser import describe


class StatusFields(QObject):
    progress_shown = Signal()  # the run's state may have changed: the window's actions follow it

    def __init__(self, window: QMainWindow, controller, notifier, choose_model: Callable[[], None],
                 show_to_review: Callable[[], None]):  # fmt: skip
        super().__init__(window)
        self.window, self.controller, self.notifier, self.choose_model = window, controller, notifier, choose_model
        self.progress = AnalysisProgress()
        self.cell_count = QLabel("")
        self.cell_count.setObjectName("StatusField")
        self.model_button = QToolButton()
        self.model_button.setObjectName("ModelButton")
        self.model_button.setAutoRaise(True)
        self.model_button.setIcon(icon("model"))
        self.model_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.model_button.setText("No model")
        self.model_button.clicked.connect(choose_model)
        self.progress.cancel_requested.connect(controller.cancel)
        self._progress_timer = QTimer(self, singleShot=True, interval=250)
        self._progress_timer.timeout.connect(self.show_progress)
        self.to_review_button = QToolButton()
        self.to_review_button.setObjectName("ToReviewButton")
        self.to_review_button.setAutoRaise(True)
        self.to_review_button.setToolTip(
            "Unreviewed cells below the review threshold, of an image unfamiliar to the model, or whose size "
            "contradicts their class; click to show only them (Ctrl+T)"
        )
        self.to_review_button.clicked.connect(show_to_review)
        status = window.statusBar()
        for widget in (self.progress, self.to_review_button, self.cell_count, self.model_button):
            status.addPermanentWidget(widget)
        controller.progress_changed.connect(self.progress_changed)
        controller.model_loading.connect(self.model_loading)
        controller.model_ready.connect(self.model_ready)
        controller.model_failed.connect(self.model_failed)
        controller.session_loading.connect(self.session_loading)

    def session_loading(self, path: str) -> None:
        """Until the window's counts follow the loaded cells (``show_counts``)."""
        self.cell_count.setText("Loading session…")
        self.cell_count.setToolTip(path)
        self.to_review_button.setText("")

    def show_counts(self, store) -> None:
        if self.controller.loading:
            return  # "Loading session…" stays
        self.cell_count.setToolTip("")
        self.cell_count.setText(f"{store.image_count:,} images · {store.cell_count:,} cells")
        waiting = store.to_review_count()
        self.to_review_button.setText(f"To review: {waiting:,}" if store.cell_count else "")
        self.to_review_button.setStyleSheet("color:#B26A00; font-weight:bold" if waiting else "color:#2E7D32")

    def progress_changed(self) -> None:
        # At most a few repaints a second: each result batch would otherwise repaint the bar.
        if self.controller.progress.active and self._progress_timer.isActive():
            return
        self.show_progress()
        if self.controller.progress.active:
            self._progress_timer.start()

    def show_progress(self) -> None:
        p = self.controller.progress
        self.progress.setVisible(p.active)
        if p.active:
            waiting = ""
            if self.controller.model_state == "loading":
                waiting = "loading the model…"
            elif self.controller.model_state == "failed":
                waiting = "waiting for a usable model"
            self.progress.show_progress(p.done, p.total, p.rate(), p.eta(), waiting)
        self.progress_shown.emit()

    def model_loading(self, name: str) -> None:
        self.model_button.setText(f"Loading {name}…")
        self.window.statusBar().showMessage(f"Loading model {name}…")
        self.progress_changed()

    def model_ready(self, card) -> None:
        self.model_button.setText(f"{card.name} · ready")
        self.model_button.setToolTip(describe(card))
        self.window.statusBar().showMessage(f"Model {card.name} ready", 8000)
        self.progress_changed()

    def model_failed(self, which: str, message: str) -> None:
        self.model_button.setText("No usable model")
        self.model_button.setToolTip(message)
        self.window.statusBar().showMessage("Model not available: choose one with Analysis › Choose model…")
        self.notifier.model_problem(message, self.choose_model)
        self.progress_changed()
