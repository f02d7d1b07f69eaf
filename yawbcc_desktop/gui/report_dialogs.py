"""File › Export report (PDF)…, Print… and Export to LIS…: the sample the differential panel
shows (the session or one folder), as a PDF, on a printer, or as a FHIR / HL7 message.

The result is gathered from the session off the GUI thread (``core.sample_result``); the
PDF and the print are drawn on it (Qt's text layout lives there); the LIS file is written
atomically in the background.  A failure is one message naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMainWindow

from ..core.atomic import write_failure
from ..core.sample_result import SampleResult, sample_result
from ..core.store import SessionError
from .background import in_background
from .messages import Notifier
from .review import ReviewController
from .settings import AppSettings

FHIR_FILTER, HL7_FILTER = "FHIR R4 bundle (*.json)", "HL7 v2.5 ORU^R01 message (*.hl7)"


class ReportDialogs:
    def __init__(
        self,
        window: QMainWindow,
        review: ReviewController,
        settings: AppSettings,
        notifier: Notifier,
        scope: Callable[[], str | None],
        save_notes: Callable[[], None],
    ):
        """``scope``: the folder the differential panel shows (None: the whole session);
        ``save_notes``: keeps comments still being typed, so the output has them."""
        self.window, self.review, self.settings, self.notifier, self.scope = window, review, settings, notifier, scope
        self.save_notes = save_notes

    def _status(self, text: str, ms: int) -> None:
        self.window.statusBar().showMessage(text, ms)

    def _ask_path(self, title: str, name: str, filters: str) -> tuple[str, str]:
        start = str(Path(str(self.settings.value("last_folder", str(Path.home())))) / name)
        return QFileDialog.getSaveFileName(self.window, title, start, filters)

    def _with_result(self, then: Callable[[SampleResult], None]) -> None:
        """Gather the shown sample's result off the GUI thread, then ``then(result)`` on it."""
        session, p, folder = self.review.session, self.review.prefs, self.scope()
        if session is None:
            return
        self.save_notes()

        def gather() -> SampleResult:
            return sample_result(session, p.review_threshold, p.reference_ranges, p.min_wbc, p.lab_name, folder=folder)

        def failed(exc: Exception) -> None:
            if not isinstance(exc, SessionError | ValueError):
                raise exc
            self.notifier.error("Report not made", str(exc))

        in_background(self.window, gather, then, failed, reading=session)

    def _stem(self) -> str | None:
        """The file name to offer: the session's, and the folder's when one is shown (None: no session)."""
        session = self.review.session
        if session is None:
            return None
        name = session.name
        folder = self.scope()
        return f"{name}_{Path(folder).name}" if folder else name

    def export_pdf(self) -> None:
        stem = self._stem()
        if stem is None:  # the action is off without a session
            return
        path, _ = self._ask_path("Export report (PDF)", f"{stem}_report.pdf", "PDF (*.pdf)")
        if not path:
            return

        def write(result: SampleResult) -> None:
            from .report_pdf import write_pdf

            try:
                pages = write_pdf(result, path)
            except OSError as exc:
                self.notifier.error("Report not saved", write_failure(path, exc))
                return
            state = "" if result.final else ", PROVISIONAL (not signed off)"
            self._status(f"Report saved to {path} ({pages} pages{state})", 10000)

        self._with_result(write)

    def print_report(self) -> None:
        from PySide6.QtPrintSupport import QPrintDialog, QPrinter

        printer = QPrinter(QPrinter.PrinterMode.HighResolution)
        dialog = QPrintDialog(printer, self.window)
        if dialog.exec() != QPrintDialog.DialogCode.Accepted:
            return

        def send(result: SampleResult) -> None:
            from .report_pdf import render

            try:
                pages = render(result, printer)
            except OSError as exc:
                self.notifier.error("Not printed", str(exc))
                return
            self._status(f"Report sent to {printer.printerName() or 'the printer'} ({pages} pages)", 10000)

        self._with_result(send)

    def export_lis(self) -> None:
        stem = self._stem()
        if stem is None:  # the action is off without a session
            return
        path, chosen = self._ask_path("Export to LIS", f"{stem}_lis.json", f"{FHIR_FILTER};;{HL7_FILTER}")
        if not path:
            return
        hl7 = chosen == HL7_FILTER or path.lower().endswith(".hl7")

        def write(result: SampleResult) -> None:
            from ..core.lis import NothingToSend, write_fhir, write_hl7

            def done(_none) -> None:
                kind = "HL7 message" if hl7 else "FHIR bundle"
                self._status(f"{result.status.capitalize()} {kind} saved to {path}", 10000)

            def failed(exc: Exception) -> None:
                if isinstance(exc, NothingToSend):
                    self.notifier.error("Nothing to send", str(exc))
                elif isinstance(exc, OSError):
                    self.notifier.error("Not saved", write_failure(path, exc))
                else:
                    raise exc

            in_background(self.window, lambda: (write_hl7 if hl7 else write_fhir)(result, path), done, failed)

        self._with_result(write)
