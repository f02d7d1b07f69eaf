"""The sample report on paper: a ``core.sample_result.SampleResult`` laid out by Qt.

One ``QTextDocument`` (HTML) is cut into pages and painted on any paged device: a
``QPdfWriter`` (File › Export report (PDF)…, ``yawbcc report``) or a ``QPrinter``
(File › Print…).  Each page carries its number and, until the sample is signed off, the
word PROVISIONAL across it.  The report's content is decided in core; here only its look.
"""

from __future__ import annotations

import html
import os
import sys
from collections import defaultdict
from datetime import UTC, datetime

from PySide6.QtCore import QMarginsF, QRectF, QSizeF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QPagedPaintDevice,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QTextDocument,
)

from ..core.atomic import atomic_path
from ..core.classes import ARTEFACT, DISPLAY_NAMES, GROUPS
from ..core.differential import FOLDER, IMAGE
from ..core.imageio import ImageReadError, read_rgb
from ..core.sample_result import PER_100, SampleResult
from ..core.store import SessionCell
from .image_loader import cell_thumbnail, qimage_from_rgb

PROVISIONAL = "PROVISIONAL"
GALLERY_PER_CLASS = 40  # thumbnails per class; flagged and corrected cells first
THUMB_PX = 64  # on the page, at the document's 96 dpi: 17 mm
RESOLUTION = 96  # the document's units are 1/96 inch, as on screen
FOOTER_PX = 40  # two lines: PROVISIONAL above, the sample and the page number below


def ensure_gui_application() -> QGuiApplication:
    """The running Qt application, or a new windowless one (``yawbcc report`` on a server).

    A ``QApplication``, not only a ``QGuiApplication``: Qt keeps one per process, and a window
    opened later in the same process (the tests) needs the widgets' kind."""
    app = QGuiApplication.instance()
    if app is None:
        from PySide6.QtWidgets import QApplication

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QApplication(["yawbcc"])
    return app  # type: ignore[return-value]


def _when(text: str) -> str:
    if not text:
        return ""
    moment = datetime.fromisoformat(text)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _scope(result: SampleResult) -> str:
    if result.scope == FOLDER:
        return f"folder {result.name}"
    if result.scope == IMAGE:
        return f"smear field {result.name}"
    return "whole session"


def _gallery_order(cells: list[SessionCell]) -> dict[str, list[SessionCell]]:
    """Cells by final class, flagged at analysis or corrected first, then in the order added."""
    by_class: dict[str, list[SessionCell]] = defaultdict(list)
    for c in sorted(cells, key=lambda c: (not (c.flags or c.corrected), c.id)):
        if c.final_label:
            by_class[c.final_label].append(c)
    return by_class


def _add_thumbnails(doc: QTextDocument, shown: list[SessionCell]) -> set[int]:
    """Thumbnails of ``shown`` as document resources ``cell:<id>``; the ids that could be read."""
    made = set()
    by_image: dict[str, list[SessionCell]] = defaultdict(list)
    for c in shown:
        by_image[c.path].append(c)
    for path, cells in by_image.items():
        try:
            rgb = read_rgb(path)
        except ImageReadError:
            continue  # the image moved since: the gallery says so for its cells
        for c in cells:
            image = qimage_from_rgb(cell_thumbnail(rgb, c.region(), 2 * THUMB_PX))
            doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(f"cell:{c.id}"), image)
            made.add(c.id)
    return made


def report_html(result: SampleResult, doc: QTextDocument) -> str:
    """The report as HTML; the gallery's thumbnails are added to ``doc`` as resources."""
    e = html.escape
    diff = result.differential
    signed = (
        f"{e(result.sign_off.reviewer)}, {_when(result.sign_off.at)}"
        if result.sign_off
        else f"<b>not signed off: {PROVISIONAL}</b>"
    )
    info = [
        ("Sample", e(result.sample_id) or "<i>no identifier</i>"),
        ("Scope", e(_scope(result))),
        ("Session", e(result.session_path)),
        ("Analysed", f"{result.images} images, {_when(result.analysed_from)} to {_when(result.analysed_to)}"),
        ("Model", "<br>".join(e(m) for m in result.models) or "none"),
        ("Software", e(result.software)),
        ("Pixel size", e(result.pixel_size)),
        (
            "Cells counted",
            f"{len(result.cells)} ({diff.wbc} white cells, {diff.artefacts} not cells, {diff.unclassified} unclassified)",
        ),
        ("Still to review", str(diff.unreviewed)),
        ("Reviewed", f"{result.reviewed} cells by {e(', '.join(result.reviewers)) or 'nobody yet'}"),
        ("Signed off", signed),
        ("Printed", _when(datetime.now(UTC).isoformat())),
    ]
    parts = [
        f"<h2>{e(result.lab) or 'Laboratory'}</h2>",
        "<h3>White blood cell differential (digital morphology)</h3>",
        '<table cellspacing="0" cellpadding="2">',
        *[f'<tr><td width="130"><b>{k}</b></td><td>{v}</td></tr>' for k, v in info],
        "</table>",
        "<h3>Differential</h3>",
        '<table border="1" cellspacing="0" cellpadding="3" width="100%">',
        "<tr><th align=left>Class</th><th align=right>Cells</th><th align=right>Value</th><th align=left>Unit</th>"
        "<th align=left>Reference range</th><th align=left>Flag</th></tr>",
    ]
    for row in result.rows:
        ref = f"{row.reference.low:g}-{row.reference.high:g} %" if row.reference else ""
        unit = "per 100 white cells" if row.unit == PER_100 else "% of white cells"
        flag = {"L": "low", "H": "high", "A": "present"}.get(row.flag, "")
        parts.append(
            f"<tr><td>{e(row.name)}</td><td align=right>{row.count}</td><td align=right>{row.value_text}</td>"
            f"<td>{unit}</td><td>{ref}</td><td><b>{flag}</b></td></tr>"
        )
    parts.append("</table>")
    if diff.flags:
        parts += ["<h3>Flags</h3><ul>", *[f"<li>{e(f.message)}</li>" for f in diff.flags], "</ul>"]
    parts.append("<h3>Morphology comments</h3>")
    if result.comments:
        by = f" <i>({e(result.comments_by)}, {_when(result.comments_at)})</i>" if result.comments_by else ""
        parts.append(f"<p>{e(result.comments).replace(chr(10), '<br>')}{by}</p>")
    else:
        parts.append("<p><i>none</i></p>")
    parts += _gallery_html(result, doc)
    return "\n".join(parts)


def _gallery_html(result: SampleResult, doc: QTextDocument) -> list[str]:
    by_class = _gallery_order(result.cells)
    shown = [c for cells in by_class.values() for c in cells[:GALLERY_PER_CLASS]]
    readable = _add_thumbnails(doc, shown)
    parts = ["<h3>Cells by final class</h3>", "<p><i>Shaded: flagged at analysis or corrected by a reviewer.</i></p>"]
    per_row = 9
    for group in (*GROUPS, ARTEFACT):
        cells = by_class.get(group, [])
        if not cells:
            continue
        parts.append(f"<p><b>{html.escape(DISPLAY_NAMES[group])}</b>: {len(cells)} cell{'s' if len(cells) > 1 else ''}</p>")
        parts.append('<table cellspacing="2" cellpadding="1">')
        row: list[str] = []
        for c in cells[:GALLERY_PER_CLASS]:
            shade = ' bgcolor="#f4b6b6"' if c.flags or c.corrected else ""
            picture = f'<img src="cell:{c.id}" width="{THUMB_PX}" height="{THUMB_PX}">' if c.id in readable else "image missing"
            row.append(f"<td{shade}>{picture}</td>")
            if len(row) == per_row:
                parts.append("<tr>" + "".join(row) + "</tr>")
                row = []
        if row:
            parts.append("<tr>" + "".join(row) + "</tr>")
        parts.append("</table>")
        if len(cells) > GALLERY_PER_CLASS:
            parts.append(f"<p><i>and {len(cells) - GALLERY_PER_CLASS} more</i></p>")
    return parts


def render(result: SampleResult, device: QPagedPaintDevice) -> int:
    """Paint the report on ``device`` (a PDF writer or a printer, A4, set up here); the page count."""
    ensure_gui_application()
    device.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Portrait,
            QMarginsF(15, 15, 15, 12),
            QPageLayout.Unit.Millimeter,
        )
    )
    if hasattr(device, "setResolution"):  # QPdfWriter and QPrinter: the document's units, 1/96 inch
        device.setResolution(RESOLUTION)
    dpi = device.logicalDpiY()
    area = device.pageLayout().paintRectPixels(dpi)
    doc = QTextDocument()
    doc.documentLayout().setPaintDevice(device)
    font = QFont()
    font.setPointSizeF(9)
    doc.setDefaultFont(font)
    doc.setHtml(report_html(result, doc))
    page = QSizeF(area.width(), area.height() - FOOTER_PX * dpi / RESOLUTION)
    doc.setPageSize(page)
    pages = doc.pageCount()
    painter = QPainter()
    if not painter.begin(device):
        raise OSError("the report could not be started on that device (is the file writable?)")
    try:
        footer_font = QFont(font)
        footer_font.setPointSizeF(8)
        for i in range(pages):
            if i:
                device.newPage()
            painter.save()
            painter.translate(0, -i * page.height())
            doc.drawContents(painter, QRectF(0, i * page.height(), page.width(), page.height()))
            painter.restore()
            footer = QRectF(0, page.height(), page.width(), area.height() - page.height())
            painter.setFont(footer_font)
            painter.setPen(QColor("#444444"))
            left = f"{result.lab or 'Laboratory'} · sample {result.sample_id or '(no identifier)'}"
            painter.drawText(footer, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom, left)
            painter.drawText(footer, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, f"Page {i + 1} of {pages}")
            if not result.final:
                painter.setPen(QColor("#c00000"))
                notice = f"{PROVISIONAL}: not signed off"
                painter.drawText(footer, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, notice)
                _provisional(painter, page, footer_font)
    finally:
        painter.end()
    return pages


def _provisional(painter: QPainter, page: QSizeF, font: QFont) -> None:
    """PROVISIONAL across the page, light enough to read the report through it."""
    big = QFont(font)
    big.setPointSizeF(64)
    big.setBold(True)
    painter.save()
    painter.setFont(big)
    painter.setPen(QColor(200, 0, 0, 60))
    painter.translate(page.width() / 2, page.height() / 2)
    painter.rotate(-35)
    painter.drawText(QRectF(-page.width(), -60, 2 * page.width(), 120), Qt.AlignmentFlag.AlignCenter, PROVISIONAL)
    painter.restore()


def write_pdf(result: SampleResult, path: str | os.PathLike) -> int:
    """Write the report as a PDF, atomically; the page count."""
    ensure_gui_application()
    with atomic_path(path) as partial:
        writer = QPdfWriter(str(partial))
        writer.setTitle(f"Differential {result.sample_id}".strip())
        writer.setCreator(result.software)
        pages = render(result, writer)
        del writer  # the file is complete only once the writer is gone
    return pages
