"""``yawbcc-desktop [PATH...] [--session FILE] [--model NAME|DIR] [--mode auto|cell|smear] [--screenshot OUT.png]``.

The window is shown before anything slow happens: the worker thread starts after the first
paint and imports TensorFlow there, so the window is usable at once and the status bar
says when the model is ready.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

from .. import __version__
from ..core.classifier import resource_root
from ..core.logs import start_logging
from ..core.preferences import load_preferences
from ..core.vocabulary import MODES, SEGMENTERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yawbcc-desktop",
        description="Review white blood cell images: find, classify and explain every cell.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders (searched recursively)")
    parser.add_argument(
        "--session",
        metavar="FILE",
        help="review session to open (created if missing); PATHs are analysed into it",
    )
    parser.add_argument("--model", metavar="NAME|DIR", help="model bundle name or folder (default: the accurate model)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        help="cell: single-cell crops (CellaVision); smear: whole fields; auto: decide per image (default: last used)",
    )
    parser.add_argument(
        "--segmenter",
        choices=SEGMENTERS,
        help="how cells are found: classic, unet, or auto (the U-Net for smear fields); default: the preferences'",
    )
    parser.add_argument(
        "--screenshot",
        metavar="OUT.png",
        help="open PATH, wait for the analysis, select the first cell, save a PNG of the window and exit",
    )
    parser.add_argument("--version", action="version", version=f"yawbcc-desktop {__version__}")
    parser.add_argument("--screenshot-size", default="1600x1000", help=argparse.SUPPRESS)
    # The installer's smoke check: open Help › User guide offscreen, print its first lines, exit.
    parser.add_argument("--guide-probe", action="store_true", help=argparse.SUPPRESS)
    # Benchmarks: print when the window is usable and when the model is ready, then quit.
    parser.add_argument("--startup-probe", action="store_true", help=argparse.SUPPRESS)
    return parser


def _light_palette() -> QPalette:
    # A fixed light palette: the class colours were chosen against white, and screenshots
    # should look the same on every desktop.
    palette = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, "#F3F5F7"),
        (QPalette.ColorRole.WindowText, "#263238"),
        (QPalette.ColorRole.Base, "#FFFFFF"),
        (QPalette.ColorRole.AlternateBase, "#F7F9FA"),
        (QPalette.ColorRole.Text, "#263238"),
        (QPalette.ColorRole.Button, "#F7F9FA"),
        (QPalette.ColorRole.ButtonText, "#263238"),
        (QPalette.ColorRole.Highlight, "#1565C0"),
        (QPalette.ColorRole.HighlightedText, "#FFFFFF"),
        (QPalette.ColorRole.ToolTipBase, "#FFFFFF"),
        (QPalette.ColorRole.ToolTipText, "#263238"),
        (QPalette.ColorRole.PlaceholderText, "#90A4AE"),
    ):
        palette.setColor(role, QColor(colour))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#9EA7AD"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#9EA7AD"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#9EA7AD"))
    return palette


def application() -> QApplication:
    """The QApplication, styled (an existing one is reused, as under pytest-qt)."""
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0] if sys.argv else "yawbcc-desktop"])
    app.setApplicationName("YAWBCC Desktop")
    app.setOrganizationName("YAWBCC")
    app.setStyle("Fusion")
    app.setPalette(_light_palette())
    font = QFont(app.font())
    font.setPointSizeF(max(font.pointSizeF(), 9.5))
    app.setFont(font)
    style = resource_root() / "style.qss"
    if style.is_file():
        app.setStyleSheet(style.read_text(encoding="utf-8"))
    return app


def main(argv: Sequence[str]) -> int:
    """Run the review application; returns the exit status."""
    args = build_parser().parse_args(list(argv))
    launched = time.time()
    start_logging("yawbcc-desktop", load_preferences().log_level)
    app = application()
    if args.guide_probe:
        from .help import probe_guide

        return probe_guide()
    from .crash import CrashReporter
    from .icons import icon
    from .main_window import MainWindow
    from .screenshot import ScreenshotJob
    from .settings import AppSettings

    app.setWindowIcon(icon("yawbcc"))
    unattended = bool(args.screenshot or args.startup_probe)
    window = MainWindow(AppSettings(remember=not unattended), attended=not unattended, mode=args.mode)
    crashes = CrashReporter(window, attended=not unattended).install()
    if args.segmenter:
        # This run only; the preferences keep theirs.
        window.controller.settings = replace(window.controller.settings, segmenter=args.segmenter)
    if args.screenshot:
        width, height = (int(v) for v in args.screenshot_size.lower().split("x"))
        window.resize(width, height)
    window.show()
    # After the first paint: the window is up before the worker starts importing.
    QTimer.singleShot(0, lambda: window.start(args.model, args.paths, args.session))
    if args.screenshot:
        job = ScreenshotJob(window, args.screenshot)
        job.finished.connect(app.exit)
        QTimer.singleShot(0, job.start)
    if args.startup_probe:
        _probe(app, window, launched)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
    status = app.exec()
    if window.isVisible():
        window.close()
    else:
        window.controller.shutdown()
        window.review.close()
    crashes.uninstall()
    logging.getLogger(__name__).info("window closed, exit status %d", status)
    return int(status)


def _probe(app: QApplication, window, launched: float) -> None:
    def usable() -> None:
        print(f"usable {time.time():.3f} main-entered {launched:.3f}", flush=True)

    def ready(*_args) -> None:
        print(f"model-ready {time.time():.3f}", flush=True)
        app.exit(0)

    def failed(_which: str, message: str) -> None:
        print(f"model-failed {time.time():.3f} {message}", flush=True)
        app.exit(2)

    QTimer.singleShot(0, usable)
    window.controller.model_ready.connect(ready)
    window.controller.model_failed.connect(failed)
