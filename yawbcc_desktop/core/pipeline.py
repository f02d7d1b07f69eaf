"""The analysis flow shared by the CLI, the GUI worker and the tests.

path -> read -> find cells -> model input per cell -> classify (batched across images).
Each image ends as an ``ImageResult``: its cells, or the one-line reason it failed.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .cells import WBC, CellRegion
from .classes import GROUPS
from .classifier import ModelBundle, ModelCard
from .familiarity import acquisition_signature
from .imageio import ImageReadError, read_rgb
from .preferences import DEFAULT_ANALYSIS, AnalysisSettings
from .preprocess import cell_crop, colour_balance, prepare_cell_image, prepare_cell_mask, resize
from .review_rules import UNUSUAL_CELL, analysis_flags, measured_diameter, size_ruled
from .scale import cell_diameter_um, estimate_um_per_px, scaled_cell_input
from .segmentation import SegmentationError, find_cells_measured
from .vocabulary import ANALYSED, FAILED, NO_CELL


@dataclass
class CellRecord:
    """One found cell, and once classified its calibrated probabilities (GROUPS order).

    The analysis' output, with the segmentation mask: what is *written* to a review session
    (``ReviewSession.add_images``).  What is read back, reviewed and shown is the one cell
    type ``core.store.SessionCell``.
    """

    path: str
    cell_id: int
    region: CellRegion
    probs: np.ndarray | None = None
    model: str = ""
    diameter_um: float = float("nan")  # the segmented outline's equivalent diameter
    unfamiliar_score: float = float("nan")  # Familiarity.cell_scores; nan without a familiarity model
    flags: list[str] = field(default_factory=list)  # review_rules.analysis_flags

    @property
    def kind(self) -> str:
        return self.region.kind

    @property
    def predicted(self) -> str:
        return GROUPS[int(np.argmax(self.probs))] if self.probs is not None else ""

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs)) if self.probs is not None else float("nan")


@dataclass
class ImageResult:
    """What became of one image file."""

    path: str
    mode: str = ""
    width: int = 0
    height: int = 0
    cells: list[CellRecord] = field(default_factory=list)
    error: str | None = None
    um_per_px: float = float("nan")  # estimated pixel size (core/scale.py)
    scale_source: str = ""  # what the estimate was measured on
    unfamiliar_score: float = float("nan")  # median of the cells' scores
    unfamiliar: bool = False  # above the bundle's familiarity threshold
    signature: np.ndarray | None = field(default=None, repr=False)  # familiarity.acquisition_signature
    # Model inputs of the cells, kept only until classification.
    inputs: np.ndarray | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        if self.error:
            return FAILED
        return ANALYSED if self.cells else NO_CELL


def model_input(
    rgb: np.ndarray, mode: str, regions: list[CellRegion], card: ModelCard, um_per_px: float | None = None
) -> np.ndarray:
    """The uint8 model inputs (N, S, S, 3) of an image's cells, framed like the training images:
    at the card's physical scale when it has one, else by the older pixel framing."""
    side = card.input_size
    if card.um_per_px and um_per_px:
        if mode == "cell":  # a single-cell crop is centred on its cell
            centres = [(rgb.shape[1] / 2.0, rgb.shape[0] / 2.0)]
        else:
            centres = [r.centre for r in regions]
        crops = [scaled_cell_input(rgb, c, um_per_px, side, card.um_per_px, card.balance) for c in centres]
        return np.stack(crops) if crops else np.zeros((0, side, side, 3), np.uint8)
    if mode == "cell":
        return prepare_cell_image(rgb, side, card.balance, card.cell_field)[None]
    # A platelet is framed at the field's white-cell scale, as CellaVision frames it.
    wbc_sides = [max(r.width, r.height) for r in regions if r.kind == WBC]
    scale = float(np.median(wbc_sides)) if wbc_sides else 0.0
    crops = []
    for r in regions:
        context = card.cell_context * max(scale, max(r.width, r.height)) / max(r.width, r.height)
        crop = cell_crop(rgb, r, context)
        if card.balance:
            crop = colour_balance(crop)
        crops.append(resize(crop, side))
    return np.stack(crops) if crops else np.zeros((0, side, side, 3), np.uint8)


def single_cell_input(rgb: np.ndarray, card: ModelCard, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A single-cell image as the bundle takes it (``model_input`` in cell mode) and, if
    given, a whole-image bool mask framed the same way (Grad-CAM checks, benchmarks)."""
    um = estimate_um_per_px(rgb).um_per_px if card.um_per_px else None
    x = model_input(rgb, "cell", [], card, um)[0]
    if mask is None:
        return x, None
    if um is None or not card.um_per_px:
        return x, prepare_cell_mask(mask, card.input_size, card.cell_field)
    centre = (rgb.shape[1] / 2.0, rgb.shape[0] / 2.0)
    as_image = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=2)
    return x, scaled_cell_input(as_image, centre, um, card.input_size, card.um_per_px, False)[..., 0] > 127


def segment_image(
    path: str | os.PathLike[str],
    mode: str = "auto",
    card: ModelCard | None = None,
    settings: AnalysisSettings = DEFAULT_ANALYSIS,
) -> ImageResult:
    """Read and segment one file; errors become ``ImageResult.error``, never exceptions.
    ``settings``: the segmenter, and the lab's pixel size used instead of each image's own
    estimate when it set one."""
    result = ImageResult(path=str(path))
    try:
        rgb = read_rgb(path)
        result.height, result.width = rgb.shape[:2]
        result.mode, regions, rbc_radius = find_cells_measured(rgb, mode, settings.segmenter)
    except ImageReadError as exc:
        result.error = exc.reason
        return result
    except SegmentationError as exc:
        result.error = f"segmentation failed: {exc}"
        return result
    except MemoryError:
        result.error = "out of memory while analysing this image"
        return result
    scale = estimate_um_per_px(rgb, [r for r in regions if r.kind == WBC], rbc_radius, settings.lab_um_per_px)
    result.um_per_px, result.scale_source = scale.um_per_px, scale.source
    if card is not None and card.extra.get("familiarity"):
        result.signature = acquisition_signature(rgb, scale.um_per_px)
    result.cells = [CellRecord(str(path), i, r, diameter_um=cell_diameter_um(r, scale.um_per_px)) for i, r in enumerate(regions)]
    if card is not None and regions:
        result.inputs = model_input(rgb, result.mode, regions, card, scale.um_per_px)
    return result


def classify_batch(results: list[ImageResult], bundle: ModelBundle) -> None:
    """Fill every cell's probabilities with one batched model call."""
    with_inputs = [r for r in results if r.inputs is not None and len(r.inputs)]
    if not with_inputs:
        return
    probs, scores, unusual, agreement, before = bundle.classify(np.concatenate([r.inputs for r in with_inputs]))
    start = 0
    for r in with_inputs:
        n = len(r.cells)
        if scores is not None and bundle.familiarity is not None:
            r.unfamiliar_score = bundle.familiarity.image_score(scores[start : start + n], r.signature)
            r.unfamiliar = bundle.familiarity.is_unfamiliar(r.unfamiliar_score)
        for i, (cell, p) in enumerate(zip(r.cells, probs[start : start + n])):
            size = measured_diameter(cell.diameter_um, r.scale_source)
            cell.probs, cell.model = size_ruled(p, size, r.unfamiliar), bundle.name
            if scores is not None:
                cell.unfamiliar_score = float(scores[start + i])
            cell.flags = analysis_flags(GROUPS[int(np.argmax(p))], size, r.unfamiliar)
            if unusual is not None and unusual[start + i]:
                cell.flags.append(UNUSUAL_CELL)
            if bundle.lab_rule is not None:
                agrees = float(agreement[start + i]) if agreement is not None else None
                was = GROUPS[int(before[start + i])] if before is not None else None
                cell.flags += bundle.lab_rule.reasons(GROUPS[int(np.argmax(cell.probs))], float(np.max(cell.probs)), agrees, was)
        start += n
        r.inputs = None


def segmented(
    paths: Iterable[str | os.PathLike[str]],
    mode: str,
    card: ModelCard | None,
    should_stop: Callable[[], bool] = lambda: False,
    workers: int = 2,
    lookahead: int = 16,
    settings: AnalysisSettings = DEFAULT_ANALYSIS,
) -> Iterator[ImageResult]:
    """``segment_image`` over ``paths`` in worker threads, results in input order.

    Decoding and OpenCV release the GIL, so reading and segmenting the next images overlaps
    the model's work on the current batch.
    """
    pending: deque[Future[ImageResult]] = deque()
    todo = iter(paths)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment") as pool:
        try:
            for path in todo:
                pending.append(pool.submit(segment_image, path, mode, card, settings))
                if len(pending) >= lookahead:
                    break
            while pending:
                if should_stop():
                    return
                result = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(segment_image, nxt, mode, card, settings))
                yield result
        finally:
            for future in pending:
                future.cancel()


def analyse(
    paths: Iterable[str | os.PathLike[str]],
    mode: str = "auto",
    bundle: ModelBundle | None = None,
    batch_size: int = 32,
    should_stop: Callable[[], bool] = lambda: False,
    settings: AnalysisSettings = DEFAULT_ANALYSIS,
) -> Iterator[ImageResult]:
    """Segment (and with a bundle, classify) each path, yielding results in input order.

    Cells are classified in batches of about ``batch_size`` across images, so many small
    single-cell files cost one model call per batch, not one per file.  ``should_stop`` is
    polled between images for cooperative cancel.
    """
    card = bundle.card if bundle else None
    pending: list[ImageResult] = []
    n_cells = 0
    for result in segmented(paths, mode, card, should_stop, settings=settings):
        pending.append(result)
        n_cells += len(result.cells)
        if bundle is None or n_cells >= batch_size:
            if bundle is not None:
                classify_batch(pending, bundle)
            yield from pending
            pending, n_cells = [], 0
    if pending and not should_stop():
        if bundle is not None:
            classify_batch(pending, bundle)
        yield from pending
