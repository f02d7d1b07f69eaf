"""``yawbcc export`` and ``yawbcc report``: a review session's outputs from the command line.

Argument handling only; the work is done by ``core`` (CSV, LIS, data sets) and, for the PDF,
``gui.report_pdf`` (Qt's PDF writer), loaded only when a report is asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from .cli import EXIT_OK, EXIT_UNUSABLE, tell

if TYPE_CHECKING:
    from .core.dataset_export import ExportOutcome
    from .core.preferences import Preferences
    from .core.sample_result import SampleResult
    from .core.store import ReviewSession


def export(args: argparse.Namespace) -> int:
    """``yawbcc export``: the files asked for, from one read-only opening of the session."""
    from .core.atomic import write_failure
    from .core.preferences import load_preferences
    from .core.review_export import export_cells, export_differential
    from .core.store import ReviewSession, SessionError

    prefs = load_preferences()
    if prefs.problem:
        tell(f"{prefs.problem}")
    threshold = args.threshold if args.threshold is not None else prefs.review_threshold
    target = ""
    try:
        # Read-only: works while the GUI has the session open for review.
        with ReviewSession.open(args.session, readonly=True) as session:
            if args.cells:
                target = args.cells
                n = export_cells(session, args.cells, threshold)
                tell(f"{n} cells -> {args.cells}")
            if args.differential:
                target = args.differential
                diffs = export_differential(session, args.differential, threshold, prefs.reference_ranges, prefs.min_wbc)
                total = diffs[0]
                note = f", {total.unreviewed} cells still to review" if total.unreviewed else ""
                tell(f"differential of {total.wbc} white cells{note} -> {args.differential}")
            if args.fhir or args.hl7:
                from .core.lis import NOT_SENT, write_fhir, write_hl7

                result = _sample_result(session, args, prefs, threshold)
                for target, write in ((args.fhir, write_fhir), (args.hl7, write_hl7)):
                    if target:
                        write(result, target)
                        tell(f"{result.status} result of {result.differential.wbc} white cells -> {target}")
                for why in NOT_SENT.values():
                    tell(why, logging.WARNING)
            for target, run in _dataset_exports(args):
                outcome = run(session)
                tell(f"{outcome.cells} cells of {outcome.images} images -> {target}")
                for line in outcome.skipped_lines():
                    tell(line, logging.WARNING)
    except (SessionError, ValueError) as exc:  # ValueError: no such folder or field, nothing to send
        tell(str(exc), logging.ERROR)
        return EXIT_UNUSABLE
    except OSError as exc:
        tell(write_failure(target or exc.filename, exc), logging.ERROR)
        return EXIT_UNUSABLE
    return EXIT_OK


def _sample_result(session: ReviewSession, args: argparse.Namespace, prefs: Preferences, threshold: float) -> SampleResult:
    """The ``SampleResult`` of the scope ``--folder`` / ``--field`` pick (default: the session)."""
    from .core.sample_result import sample_result

    image_id = None
    if args.field:
        image = session.image(args.field)
        if image is None or image.mode != "smear":
            raise ValueError(f"{args.field}: not a smear field of {session.location}")
        image_id = image.id
    if args.folder and os.path.abspath(args.folder) not in session.folders():
        raise ValueError(f"{args.folder}: no image of {session.location} is in that folder")
    return sample_result(
        session, threshold, prefs.reference_ranges, prefs.min_wbc, prefs.lab_name, args.sample, args.folder, image_id
    )


def _dataset_exports(args: argparse.Namespace) -> list[tuple[str, Callable[[ReviewSession], ExportOutcome]]]:
    """(target, export of an open session) for the data set options given."""
    from .core import dataset_export

    out = []
    if args.coco:
        out.append((args.coco, lambda s: dataset_export.export_coco(s, args.coco, link=args.link)))
    if args.crops:
        out.append((args.crops, lambda s: dataset_export.export_crops(s, args.crops, model=args.model)))
    return out


def report(args: argparse.Namespace) -> int:
    """``yawbcc report``: the sample's report as a PDF."""
    from .core.atomic import write_failure
    from .core.preferences import load_preferences
    from .core.store import ReviewSession, SessionError

    prefs = load_preferences()
    threshold = args.threshold if args.threshold is not None else prefs.review_threshold
    try:
        with ReviewSession.open(args.session, readonly=True) as session:
            result = _sample_result(session, args, prefs, threshold)
            from .gui.report_pdf import write_pdf  # Qt's PDF writer: loaded only for a report

            pages = write_pdf(result, args.out)
    except (SessionError, ValueError) as exc:
        tell(str(exc), logging.ERROR)
        return EXIT_UNUSABLE
    except OSError as exc:
        tell(write_failure(args.out, exc), logging.ERROR)
        return EXIT_UNUSABLE
    state = "final" if result.final else "PROVISIONAL (not signed off)"
    tell(f"{state} report of {result.differential.wbc} white cells, {pages} pages -> {args.out}")
    return EXIT_OK


def add_session(p: argparse.ArgumentParser) -> None:
    """The session read: a file or a server URL, given as it or as ``--session`` (one of them)."""
    p.add_argument("session", metavar="FILE|URL", nargs="?", help="review session: a file or a postgresql:// URL")
    p.add_argument("--session", dest="session_option", metavar="FILE|URL", help="the same, as an option")


def add_sample_scope(p: argparse.ArgumentParser) -> None:
    """The options of a sample's result (LIS message, report): which sample, and its identifier."""
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--folder", help="the sample is this folder of the session (default: the whole session)")
    scope.add_argument("--field", metavar="IMAGE", help="the sample is this smear field of the session")
    p.add_argument("--sample", metavar="ID", help="sample identifier (default: the one kept in the session)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``export`` and ``report`` subcommands of ``yawbcc``."""
    p = sub.add_parser("export", help="export a review session: cells and differential CSV, COCO or crops data set")
    add_session(p)
    p.add_argument("--cells", metavar="CSV", help="one row per cell: prediction, probabilities, final label, reviewer")
    p.add_argument("--differential", metavar="CSV", help="differential per session, folder and smear field, with flags")
    p.add_argument("--fhir", metavar="JSON", help="FHIR R4 bundle for the LIS: DiagnosticReport, one Observation per class")
    p.add_argument("--hl7", metavar="FILE", help="HL7 v2.5 ORU^R01 message for the LIS: one OBX per class")
    add_sample_scope(p)
    p.add_argument("--coco", metavar="DIR", help="COCO data set: annotations.json (boxes, RLE masks, final labels) + images/")
    p.add_argument("--link", action="store_true", help="--coco: link the images instead of copying them")
    p.add_argument("--crops", metavar="DIR", help="class folders of the reviewed cells as the model sees them, + crops.csv")
    p.add_argument("--model", help="--crops: frame the cells as this bundle does (default: the model that classified them)")
    p.add_argument("--threshold", type=float, help="to-review confidence threshold (default: from preferences)")
    p = sub.add_parser("report", help="the sample's report as PDF: differential, flags, comments, sign-off, cell gallery")
    add_session(p)
    p.add_argument("--out", required=True, metavar="PDF", help="PDF file to write")
    add_sample_scope(p)
    p.add_argument("--threshold", type=float, help="to-review confidence threshold (default: from preferences)")
