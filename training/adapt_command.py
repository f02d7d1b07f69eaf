"""``python -m training adapt`` (and ``yawbcc adapt``): adapt a bundle to a new lab, in minutes.

The fit itself, its honest figures and the bundle it writes are ``training/adapt.py``'s;
this module reads the command line, the corrections file and the session's unreviewed
rows, says what happens, and turns every failure into one message and an exit status.

    python -m training adapt --model NAME|DIR --corrections CELLS.csv --name NEW [--dest DIR]
    python -m training adapt --model NAME|DIR --images FOLDER... --name NEW [--share 0.5]   # no corrections

With ``--images`` only the batch-norm statistics are measured again on the lab's cells
(``training/adapt_images.py``); the events and exit statuses are the same, with the stages
"loading", "features", "measuring" and "writing".

What a run says: human lines on stderr; on stdout one JSON object a line for programs (the
application reads them): ``{"event": "progress", "stage": "reading"|"loading"|"features"|
"fitting"|"writing", "done": i, "total": n}`` (``total`` 0 while no fraction is known),
``{"event": "skipped", "message": ...}`` per row left out, then exactly one of
``{"event": "done", "bundle": FOLDER, ...report...}``, ``{"event": "error", "message": ...}``
or ``{"event": "cancelled"}``.  Exit status: 0 done, 2 unusable input (corrections file,
too few cells, bundle without a replay sample, name taken), 130 cancelled (Ctrl-C or
SIGTERM), 1 anything else.  The bundle is written to ``DEST/.NEW.partial`` and renamed to
``DEST/NEW`` at the end, so a run cancelled or killed never leaves half a bundle under its name.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
import traceback
from pathlib import Path

from yawbcc_desktop.core.adaptation import IMAGE_STATISTICS_SHARE, MIN_PER_CLASS, REPLAY_FILE
from yawbcc_desktop.core.classifier import ModelBundle, ModelBundleError, resolve_bundle
from yawbcc_desktop.core.scale import check_um_per_px

from .adapt import adapt, write_adapted
from .adapt_images import ImagesError, adapt_to_images, write_adapted_to_images
from .adapt_images import summary_lines as images_summary
from .corrections import CorrectionsError, counts_text, read_corrections, usable_rows
from .semi_supervised import lab_cells

STAGE_TEXT = {
    "reading": "checking the corrected cells' images",
    "loading": "loading the model",
    "features": "framing the cells and computing their features",
    "unlabelled": "framing the unreviewed cells (the lab's unlabelled cells)",
    "fitting": "fitting the classifier head (cross-validation folds, then all cells)",
    "measuring": "measuring the batch-norm statistics on the lab's cells",
    "writing": "writing the new bundle",
}


class Reporter:
    """What a run says.  Human lines on stderr (progress at most every ``interval`` seconds
    and at each new stage); with ``events``, one JSON object a line on stdout for programs
    (the application reads them; progress at most every ``event_interval`` seconds, and at
    each new stage and its end); the closing figures in plain words go to stdout when there
    are no events (the command line's result), else to stderr with the other human lines."""

    def __init__(self, events: bool = True, interval: float = 2.0, prefix: str = "adapt: ", event_interval: float = 0.1):
        self.events, self.interval, self.prefix, self.event_interval = events, interval, prefix, event_interval
        self._stage, self._last = "", 0.0
        self._event_stage, self._last_event = "", 0.0

    def log(self, message: str) -> None:
        print(f"{self.prefix}{message}", file=sys.stderr, flush=True)

    def event(self, kind: str, **fields) -> None:
        if self.events:
            print(json.dumps({"event": kind, **fields}, default=str), file=sys.stdout, flush=True)

    def progress(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._event_stage or now - self._last_event >= self.event_interval or (total and done >= total):
            self._event_stage, self._last_event = stage, now
            self.event("progress", stage=stage, done=int(done), total=int(total))
        new_stage = stage != self._stage
        if new_stage or now - self._last >= self.interval or (total and done >= total):
            if new_stage or done or not total:
                self._stage, self._last = stage, now
                self.log(STAGE_TEXT.get(stage, stage) + (f" {done}/{total}" if total else "…"))

    def result(self, lines: list[str]) -> None:
        for line in lines:
            if self.events:
                self.log(line)
            else:
                print(line, file=sys.stdout, flush=True)


def _run_images(args, rep: Reporter, folder: Path, name: str, dest: Path, t0: float) -> dict:
    if not 0.0 < args.share <= 1.0:
        raise CorrectionsError(f"--share must be above 0 and at most 1, got {args.share:g}")
    if args.um_per_px is not None:
        try:
            check_um_per_px(args.um_per_px)
        except ValueError as exc:
            raise CorrectionsError(f"--um-per-px: {exc}") from None

    def skip(message: str) -> None:
        rep.log(message)
        rep.event("skipped", message=message)

    sources = args.images or _image_list(args.image_list)
    rep.progress("loading", 0, 0)
    bundle = ModelBundle(folder)
    report = adapt_to_images(bundle, sources, args.share, args.seed, rep.log, rep.progress, skip, args.um_per_px)
    lab = args.lab or name
    out = write_adapted_to_images(bundle, report, name, dest, lab, rep.progress)
    seconds = round(time.monotonic() - t0, 1)
    return {**report, "bundle": str(out), "name": name, "base": bundle.name, "lab": lab, "seconds": seconds}


def _image_list(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CorrectionsError(f"{path}: no such image list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorrectionsError(f"{path}: cannot read the image list ({exc})") from None
    paths = [line.strip() for line in lines if line.strip()]
    if not paths:
        raise CorrectionsError(f"{path}: the image list is empty")
    return paths


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def summary_lines(report: dict) -> list[str]:
    """The figures of a ``done`` report in plain words (the command line's closing lines)."""
    if report.get("source") == "images":
        return images_summary(report)
    lines = [
        f"Adapted {report['base']} to {report['lab']} as {report['name']}: {report['cells']} cells "
        f"({counts_text(report['cells_per_class'])}).",
    ]
    if report.get("classes_not_adapted"):
        lines.append(
            f"Not adapted (fewer than {MIN_PER_CLASS} cells): {counts_text(report['classes_not_adapted'])}; "
            "the base model's head stands for them."
        )
    lines.append(
        f"On the lab's cells, cross-validated ({report['folds']} folds, each cell scored by a head that never saw it): "
        f"accuracy {_pct(report['accuracy_before'])} before, {_pct(report['accuracy_after_cross_validated'])} after; "
        f"balanced accuracy {_pct(report['balanced_accuracy_before'])} before, "
        f"{_pct(report['balanced_accuracy_after_cross_validated'])} after."
    )
    lines.append(
        f"On the base model's replay sample (its training labs: {', '.join(report.get('replay_domains') or ['?'])}): "
        f"accuracy {_pct(report['replay_accuracy_before'])} before, {_pct(report['replay_accuracy_after'])} after."
    )
    base = report.get("base_test_metrics") or {}
    if base.get("accuracy") is not None:
        f1 = f", macro F1 {base['macro_f1']:.3f}" if base.get("macro_f1") is not None else ""
        lines.append(f"The base model's own test figures (not measured again): accuracy {_pct(base['accuracy'])}{f1}.")
    if report.get("unreviewed_cells"):
        lines.append(
            f"Unreviewed cells of the lab: {report['unreviewed_cells']}; {report['pseudo_labelled_cells']} of them joined the "
            "fit with the class the model gave them (both views agreeing, sure)."
        )
    rule = report.get("lab_review") or {}
    if rule:
        lines.append(lab_rule_sentence(rule, report.get("session_cells_kept", 0)))
    lines.append(f"Temperature {report['temperature']:.3f} ({report['temperature_how']}).")
    lines.append(f"New bundle: {report['bundle']} ({report['seconds']:.0f} s). Use it with --model {report['name']}.")
    return lines


def lab_rule_sentence(rule: dict, session_cells: int) -> str:
    """What the adapted bundle's rule for the lab (its card's ``lab_review``) queues, in words."""
    parts = []
    if rule.get("min_confidence"):  # bundles adapted before 2026-12-08
        parts.append(f"below {100 * rule['min_confidence']:.0f} % confidence (the surest out-of-fold mistake)")
    parts.append(f"when called one of the classes not yet reliable: {', '.join(rule['unreliable_classes']) or 'none'}")
    if rule.get("session_neighbours"):
        parts.append(f"when not all its nearest cells of this session ({session_cells} kept in the bundle) were called its class")
    if rule.get("changed_calls"):
        parts.append("when adapting changed its class")
    return "For this lab a cell waits for review " + "; or ".join(parts) + "."


def add_arguments(p) -> None:
    from yawbcc_desktop.core.classifier import user_models_dir

    p.add_argument("--model", help="bundle to adapt (name or folder; default: the default bundle)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corrections", help="cells CSV as yawbcc export --cells writes it (reviewed rows are used)")
    source.add_argument(
        "--images",
        nargs="+",
        metavar="PATH",
        help="the lab's image files or folders, no corrections: only the batch-norm statistics are measured again",
    )
    source.add_argument(
        "--image-list", metavar="FILE", help="as --images, with the paths one a line in FILE (the application writes one)"
    )
    p.add_argument(
        "--share",
        type=float,
        default=IMAGE_STATISTICS_SHARE,
        help=f"with --images: the lab's share of the statistics, the rest the base's (default {IMAGE_STATISTICS_SHARE:g})",
    )
    p.add_argument(
        "--um-per-px",
        type=float,
        help="with --images: the lab's pixel size in micrometres, as its Preferences set it (default: each image's own)",
    )
    p.add_argument(
        "--reviewed-only",
        action="store_true",
        help="with --corrections: learn from the reviewed rows alone (default: the unreviewed rows join as unlabelled cells)",
    )
    p.add_argument("--name", required=True, help="name of the adapted bundle")
    p.add_argument("--lab", default="", help="the lab's name in the card (default: the new bundle's name)")
    p.add_argument("--dest", default=str(user_models_dir()), help="folder the new bundle goes to (default: the user's models)")
    p.add_argument("--minutes", type=float, default=10.0, help="time budget (the head fit takes seconds; kept for the record)")
    p.add_argument("--seed", type=int, default=0)


def _one_blas_thread():
    """The head's fits are small matrix products: BLAS threads cost more than they give
    (5 s against 2 s for a replay-sized fit on two busy cores), and the results are the same."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args, reporter: Reporter | None = None) -> int:
    """``python -m training adapt`` (JSON events on stdout) and ``yawbcc adapt`` (``reporter``
    without events).  SIGTERM cancels like Ctrl-C: the partial bundle is removed."""
    rep = reporter or Reporter(events=True)
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        report = _run(args, rep)
    except KeyboardInterrupt:
        rep.log("cancelled; no bundle was written")
        rep.event("cancelled")
        return 130
    except (CorrectionsError, ImagesError, ModelBundleError) as exc:
        rep.log(str(exc))
        rep.event("error", message=str(exc))
        return 2
    except OSError as exc:
        message = f"could not write the new bundle in {args.dest}: {exc}"
        rep.log(message)
        rep.event("error", message=message)
        return 2
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        rep.event("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    rep.event("done", **report)
    rep.result(summary_lines(report))
    if report["seconds"] > 60 * args.minutes:
        rep.log(f"the adaptation took {report['seconds'] / 60:.1f} min, over the {args.minutes:g}-minute budget")
    return 0


def _run(args, rep: Reporter) -> dict:
    from yawbcc_desktop.core.classifier import read_card

    t0 = time.monotonic()
    name, dest = args.name, Path(args.dest).resolve()
    if not name or name != Path(name).name or name.startswith(".") or name in (".", ".."):
        raise CorrectionsError(f"{name!r} cannot be a bundle name: use letters, digits, '.', '_' and '-'")
    if (dest / name).exists():
        raise CorrectionsError(f"{dest / name} exists already; choose another name")
    # Everything that can be checked before the model loads (seconds) is checked first.
    folder = resolve_bundle(args.model)
    if args.images or args.image_list:
        return _run_images(args, rep, folder, name, dest, t0)
    if args.um_per_px is not None:
        raise CorrectionsError("--um-per-px goes with --images: corrections carry the pixel size of each image (um_per_px)")
    if not (folder / REPLAY_FILE).is_file():
        raise CorrectionsError(
            f"{folder}: this bundle has no {REPLAY_FILE} (a sample of its training cells' features), so it cannot be "
            "adapted from corrections; adapt a bundle made by python -m training domains, retrain with python -m training "
            "fit --corrections, or adapt it to the lab's images alone (--images)"
        )
    card = read_card(folder)
    corrections = read_corrections(args.corrections, rep.progress)

    def skip(line: str) -> None:
        rep.log(f"{args.corrections}: {line}")
        rep.event("skipped", message=f"{args.corrections}: {line}")

    for line in corrections.skipped:
        skip(line)
    usable_rows(corrections.rows, card.class_order)
    rep.progress("loading", 0, 0)
    bundle = ModelBundle(folder)
    unlabelled = None
    if not args.reviewed_only and len(corrections.unreviewed):
        unlabelled = lab_cells(bundle, corrections.unreviewed, rep.progress, args.seed)
        for line in unlabelled.skipped:
            skip(line)
    with _one_blas_thread():
        result = adapt(bundle, corrections, args.seed, rep.log, progress=rep.progress, unlabelled=unlabelled)
    lab = args.lab or name
    out = write_adapted(bundle, result, corrections, name, dest, lab, rep.progress)
    return {
        "bundle": str(out),
        "name": name,
        "base": bundle.name,
        "lab": lab,
        **result.report,
        "seconds": round(time.monotonic() - t0, 1),
        "skipped": len(corrections.skipped),
        "base_test_metrics": bundle.card.metrics,
    }
