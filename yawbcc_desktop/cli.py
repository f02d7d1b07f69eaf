"""Command-line entry points: ``yawbcc`` (headless) and ``yawbcc-desktop`` (GUI).

Argument parsing only; the work is done by ``yawbcc_desktop.core``.

Exit status of ``yawbcc``:
  0  every file was read and analysed (files with no cell found count as analysed)
  1  the run finished but some files failed (each named on stderr)
  2  nothing could be done: bad arguments, no input files, an unusable model bundle or
     session file (``export`` too)
  130 interrupted (Ctrl-C); rows written so far are kept in ``<out>.partial``
With ``--session`` every analysed image is committed to the session as it arrives.  A
session is a file path, or ``postgresql://host/db?session=NAME`` on the lab's server.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, TextIO

from . import __version__
from .core.vocabulary import FAILED, MODES, SEGMENTERS

if TYPE_CHECKING:  # the core loads lazily, so that --help answers at once
    from pathlib import Path

    from .core.store import ReviewSession

EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
log = logging.getLogger(__name__)
TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (and Keras) without its start-up lines on stderr.

    ``yawbcc``'s stderr is for its own progress, failures and summary: TensorFlow's INFO and
    WARNING lines are hidden (``TF_CPP_MIN_LOG_LEVEL=2``; its errors still show), and the
    lines its C++ side prints while being imported, before that setting applies (``oneDNN
    custom operations are on``, ``All log messages before absl::InitializeLog()``), are
    dropped by pointing file descriptor 2 at the null device for the import.  A user who sets
    ``TF_CPP_MIN_LOG_LEVEL`` themselves gets TensorFlow's logging as they asked.
    """
    if "tensorflow" in sys.modules:
        return
    if TF_LOG_ENV in os.environ:
        return  # the user's own logging level
    os.environ[TF_LOG_ENV] = "2"
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import keras  # noqa: F401  imports TensorFlow
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def tell(text: str, level: int = logging.INFO) -> None:
    """One line for the user on stderr (``yawbcc: text``), kept in the log too."""
    log.log(level, "%s", text)
    print(f"yawbcc: {text}", file=sys.stderr, flush=True)


class Progress:
    """Progress with rate and ETA on stderr, at most every ``interval`` seconds."""

    def __init__(self, total: int, stream: TextIO | None, interval: float = 2.0) -> None:
        self.total, self.done = total, 0
        self.stream = stream  # None: silent (--quiet)
        self.interval, self.start, self.last = interval, time.monotonic(), 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.stream is None or (now - self.last < self.interval and self.done < self.total):
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        print(
            f"[{self.done}/{self.total}] {100 * self.done / max(self.total, 1):.0f}% "
            f"{rate:.1f} files/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}",
            file=self.stream,
            flush=True,
        )


def _run_analysis(args: argparse.Namespace, classify: bool) -> int:
    from .core.imageio import iter_image_paths
    from .core.store import ReviewSession, SessionError

    paths = list(iter_image_paths(args.paths))
    if not paths:
        tell("no image files found in the given paths", logging.WARNING)
        return EXIT_UNUSABLE
    session = None
    if getattr(args, "session", None):
        try:
            session = ReviewSession.open_or_create(args.session)
        except SessionError as exc:
            tell(str(exc), logging.ERROR)
            return EXIT_UNUSABLE
    try:
        return _analyse_into(args, classify, paths, session)
    finally:
        if session is not None:
            session.close()


def _analyse_into(args: argparse.Namespace, classify: bool, paths: list[Path], session: ReviewSession | None) -> int:
    from .core.classifier import ModelBundle, ModelBundleError, resolve_bundle
    from .core.export import CLASSIFY_COLUMNS, SEGMENT_COLUMNS, CellCsvWriter
    from .core.pipeline import analyse
    from .core.preferences import DEFAULT_REVIEW_THRESHOLD, AnalysisSettings
    from .core.store import SessionError, unfamiliar_threshold

    if session is not None:
        # Extending a session: what it already holds (maybe corrected) is kept, not redone.
        done = session.analysed_paths()
        kept = [p for p in paths if os.path.abspath(p) not in done]
        if len(kept) < len(paths):
            tell(f"{len(paths) - len(kept)} files already in {args.session}, kept as they are", logging.INFO)
        paths = kept
    bundle = None
    if classify and paths:
        import_tensorflow_quietly()
        try:
            bundle = ModelBundle(resolve_bundle(args.model))
        except ModelBundleError as exc:
            tell(str(exc), logging.ERROR)
            return EXIT_UNUSABLE
    progress = Progress(len(paths), None if args.quiet else sys.stderr)
    n_read = n_failed = n_cells = n_unfamiliar = 0
    writer = None
    if args.out:
        threshold = getattr(args, "threshold", None)
        threshold = DEFAULT_REVIEW_THRESHOLD if threshold is None else threshold
        writer = CellCsvWriter(args.out, CLASSIFY_COLUMNS if classify else SEGMENT_COLUMNS, threshold)
    masks = None
    if getattr(args, "masks", None):
        from .core.cell_masks import MaskWriter

        try:
            masks = MaskWriter(args.masks)
        except OSError as exc:
            tell(f"cannot write masks to {args.masks}: {exc}", logging.ERROR)
            return EXIT_UNUSABLE
    # A familiarity model's threshold is kept with each image, to say why one is unfamiliar.
    threshold_of_unfamiliar = unfamiliar_threshold(bundle)
    try:
        for result in analyse(
            paths,
            args.mode,
            bundle,
            batch_size=args.batch_size,
            settings=AnalysisSettings(args.segmenter, getattr(args, "um_per_px", None)),
        ):
            if session is not None:
                session.add_image(result, threshold_of_unfamiliar)  # committed before the next image: a crash keeps it
            if result.status == FAILED:
                n_failed += 1
                tell(f"{result.path}: {result.error}", logging.WARNING)
            else:
                n_read += 1
                n_cells += len(result.cells)
                n_unfamiliar += result.unfamiliar
                if writer is not None:
                    writer.write_image(result)
                if masks is not None:
                    try:
                        masks.write_image(result)
                    except OSError as exc:  # disk full or gone: say so, the CSV goes on
                        tell(f"{result.path}: masks not written ({exc})", logging.WARNING)
            progress.step()
    except KeyboardInterrupt:
        saved = [f"{writer.rows} rows kept in {writer.partial}"] if writer else []
        saved += [f"{n_read + n_failed} images saved in {args.session}"] if session is not None else []
        if writer is not None:
            writer.abort()
        tell(f"interrupted; {', '.join(saved)}", logging.WARNING)
        return EXIT_INTERRUPTED
    except SessionError as exc:  # the session's disk is full or gone: stop, keep what is saved
        if writer is not None:
            writer.abort()
        tell(f"stopped: {exc}", logging.ERROR)
        return EXIT_UNUSABLE
    if writer is not None:
        writer.close()
    targets = " and ".join(str(t) for t in (args.out, getattr(args, "session", None)) if t)
    if masks is not None:
        targets = " and ".join(filter(None, [targets, f"{masks.written} masks in {args.masks}"]))
    tell(f"{n_read} files read, {n_cells} cells found, {n_failed} files failed -> {targets}", logging.INFO)
    if n_unfamiliar and bundle is not None:
        tell(
            f"{n_unfamiliar} of {n_read} images look unfamiliar to model {bundle.name} (another stain, "
            "microscope or magnification than it was trained on): their cells all wait for review",
            logging.WARNING,
        )
    return EXIT_SOME_FAILED if n_failed else EXIT_OK


def _cmd_session_copy(args: argparse.Namespace) -> int:
    from .core.store import ReviewSession, SessionError

    try:
        # Read-only: a station may go on reviewing the source meanwhile; the copy is one snapshot.
        with ReviewSession.open(args.source, readonly=True) as source, source.copy_to(args.target) as copy:
            summary = copy.summary(0.0)
            notes = len(copy.note_history()) + sum(len(copy.note_history(f)) for f in copy.folders())
            audit = f"{len(copy.history())} audit rows, {notes} sample note changes"
            tell(f"{summary.images} images, {summary.cells} cells, {audit} -> {copy.location}")
    except SessionError as exc:
        tell(str(exc), logging.ERROR)
        return EXIT_UNUSABLE
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from .core.card_text import adaptation_text
    from .core.classifier import DEFAULT_MODEL, ModelBundleError, list_bundles

    bundles = [(f, c) for f, c in list_bundles() if not f.name.startswith(".")]  # .NAME.partial: being written
    if not bundles:
        print("no model bundles found")
        return EXIT_UNUSABLE
    for folder, card in bundles:
        if isinstance(card, ModelBundleError):
            print(f"{folder.name}  UNUSABLE: {card}")
            continue
        acc = card.metrics.get("accuracy")
        f1 = card.metrics.get("macro_f1")
        default = "  (default)" if card.name == DEFAULT_MODEL else ""
        print(f"{card.name}{default}")
        print(f"  folder:      {folder}")
        print(f"  backbone:    {card.backbone}, input {card.input_size}x{card.input_size}")
        print(f"  colour balance: {'yes' if card.balance else 'no'}, temperature {card.temperature:.3f}")
        if acc is not None:
            print(f"  test accuracy {100 * acc:.2f} %, macro F1 {f1:.4f}" if f1 is not None else f"  test accuracy {acc}")
        for key in ("trained", "training_minutes", "split_sha1"):
            if key in card.extra:
                print(f"  {key}: {card.extra[key]}")
        if card.extra.get("adapted_from"):
            print(f"  adapted:     {adaptation_text(card.extra)}")
    return EXIT_OK


def _cmd_index(args: argparse.Namespace) -> int:
    from .core.dataset import index_folder, index_report

    try:
        index = index_folder(args.folder)
    except FileNotFoundError as exc:
        tell(str(exc), logging.ERROR)
        return EXIT_UNUSABLE
    print(index_report(index))
    if args.out:
        index.images.to_csv(args.out, index=False)
    return EXIT_OK


def _training_module(module: str, what: str) -> ModuleType | None:
    """``training.<module>``, or None (said on stderr) in the installed build, which leaves
    retraining and its dependencies out."""
    import importlib

    try:
        return importlib.import_module(f"training.{module}")
    except ImportError:
        if not getattr(sys, "frozen", False):
            raise
        tell(f"{what} is not part of this installation; use a source install (docs/training.md)", logging.ERROR)
        return None


def _cmd_train(argv: Sequence[str]) -> int:
    training = _training_module("__main__", "retraining")
    return EXIT_UNUSABLE if training is None else int(training.main(list(argv)))


def _cmd_adapt(argv: Sequence[str]) -> int:
    """``yawbcc adapt``: ``python -m training adapt`` with its progress on stderr and the
    before/after figures in plain words on stdout (``--json``: the JSON events instead)."""
    adapt = _training_module("adapt_command", "adapting a model")
    if adapt is None:
        return EXIT_UNUSABLE
    parser = argparse.ArgumentParser(
        prog="yawbcc adapt",
        description="Adapt a model to this lab from the reviewed cells of a yawbcc export --cells file (minutes).",
        epilog="Exit status: 0 adapted, 2 unusable input (corrections file, too few cells, a bundle without a "
        "replay sample, name taken), 130 interrupted (nothing is written).",
    )
    adapt.add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="JSON events on stdout, as python -m training adapt writes them")
    args = parser.parse_args(list(argv))
    return int(adapt.run(args, adapt.Reporter(events=args.json, prefix="yawbcc adapt: ")))


def _pixel_size(text: str) -> float:
    from .core.scale import check_um_per_px

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_um_per_px(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from .core.preferences import DEFAULT_REVIEW_THRESHOLD

    parser = argparse.ArgumentParser(
        prog="yawbcc",
        description="Find, preprocess and classify blood cells in microscope images (headless).",
        epilog="Exit status: 0 all files analysed, 1 some files failed, 2 nothing could be done, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"yawbcc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_analysis(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
        p.add_argument("--out", help="CSV file to write")
        p.add_argument(
            "--mode",
            choices=MODES,
            default="auto",
            help="cell: single-cell crops (CellaVision); smear: whole fields; auto: decide per image",
        )
        p.add_argument(
            "--segmenter",
            choices=SEGMENTERS,
            default="auto",
            help="classic: thresholds and watershed; unet: the network trained on three labs; "
            "auto: the U-Net for smear fields, the classic method for single-cell crops",
        )
        p.add_argument("--quiet", action="store_true", help="no progress lines")
        p.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
        return p

    p = add_analysis("segment", "find cells and write one row per cell (path, cell_id, kind, box)")
    p.add_argument("--masks", metavar="DIR", help="also write one image-sized PNG mask per cell: DIR/<image stem>_<cell_id>.png")
    p = add_analysis("classify", "find and classify cells; one row per cell with class probabilities")
    p.add_argument("--model", default=None, help="bundle name or folder (default: the accurate bundled model)")
    p.add_argument(
        "--session",
        metavar="FILE|URL",
        help="review session to write or extend (images already in it are kept): a file, "
        "or postgresql://host/db?session=NAME on the lab's server",
    )
    p.add_argument(
        "--um-per-px",
        type=_pixel_size,
        metavar="UM",
        help="the lab's pixel size in micrometres (a calibrated value, or the median of its images' red cells); "
        "default: measured on each image's red cells",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help=f"review threshold of the CSV's to_review column (default {DEFAULT_REVIEW_THRESHOLD:.2f}, not the preferences')",
    )
    from . import exports_cli  # the parsers of export and report live with their commands

    exports_cli.add_parsers(sub)
    p = sub.add_parser("session", help="review sessions: copy one between a file and the lab's server")
    actions = p.add_subparsers(dest="action", required=True)
    p = actions.add_parser("copy", help="copy a whole session (cells, corrections, audit trail, sign-offs, sample notes)")
    p.add_argument("source", metavar="FROM", help="session file or postgresql://host/db?session=NAME")
    p.add_argument("target", metavar="TO", help="where the copy goes (never over an existing session)")
    sub.add_parser("models", help="list the model bundles and their model cards")
    p = sub.add_parser("index", help="index a folder of class folders; print the report's tables 2.1 and 2.2")
    p.add_argument("folder")
    p.add_argument("--out", help="write the index as CSV")
    sub.add_parser("train", help="retrain models (same as python -m training ...)", add_help=False)
    sub.add_parser("adapt", help="adapt a model to a lab from its reviewed cells (yawbcc adapt --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from .core.logs import start_logging
    from .core.preferences import load_preferences

    start_logging("yawbcc", load_preferences().log_level)
    try:
        status = _main(argv)
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        log.info("yawbcc %s: exit status %s", " ".join(argv[:1]), exc.code)
        raise
    except Exception:
        log.exception("yawbcc %s failed", " ".join(argv[:1]))
        raise
    log.info("yawbcc %s: exit status %d", " ".join(argv[:1]), status)
    return status


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "train":
        return _cmd_train(argv[1:])
    if argv and argv[0] == "adapt":
        return _cmd_adapt(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "classify" and not (args.out or args.session):
        parser.error("classify needs --out, --session, or both")
    if args.command == "segment" and not (args.out or args.masks):
        parser.error("segment needs --out, --masks, or both")
    if args.command == "session":
        return _cmd_session_copy(args)
    if args.command in ("export", "report"):
        if bool(args.session) == bool(args.session_option):
            parser.error(f"{args.command} needs one session: FILE|URL or --session FILE|URL")
        args.session = args.session or args.session_option
    if args.command == "export":
        if not (args.cells or args.differential or args.coco or args.crops or args.fhir or args.hl7):
            parser.error("export needs at least one of --cells, --differential, --fhir, --hl7, --coco, --crops")
        from .exports_cli import export

        return export(args)
    if args.command in ("segment", "classify"):
        return _run_analysis(args, classify=args.command == "classify")
    if args.command == "models":
        return _cmd_models(args)
    if args.command == "report":
        from .exports_cli import report

        return report(args)
    if args.command == "index":
        return _cmd_index(args)
    return EXIT_UNUSABLE


def gui_main(argv: Sequence[str] | None = None) -> int:
    from .gui.app import main as app_main

    return app_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
