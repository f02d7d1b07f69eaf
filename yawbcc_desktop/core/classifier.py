"""Model bundles: a Keras model plus the model card (``model.json``) that says how to feed it.

A bundle is a folder ``<name>/`` holding ``model.keras`` and ``model.json``.  The card
names the input size, the class order, the preprocessing and the calibration temperature;
the application reads nothing about a model from anywhere else.  TensorFlow is imported
only when a model is loaded, so listing bundles stays instant.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .adaptation import BASE_HEAD_FILE, LAB_CELLS_FILE, LabReviewRule, base_head, lab_cells
from .classes import GROUPS
from .familiarity import FAMILIARITY_FILE, Familiarity, neighbour_agreement, neighbour_distances

MODEL_FILE = "model.keras"
CARD_FILE = "model.json"
DEFAULT_MODEL = "lite0-multilab"  # trained on three labs (PBC, BCCD, Bio-Net), frames cells in µm
FALLBACK_MODEL = "lite0-multilab-fast"  # the default missing: the cross-lab model that is faster


class ModelBundleError(Exception):
    """A bundle is missing, incomplete or unreadable; the message says which and what to do."""


@dataclass
class ModelCard:
    """What ``model.json`` says about a bundle."""

    name: str
    backbone: str
    input_size: int
    class_order: list[str]
    balance: bool = False  # apply the report's colour balance (formula 3.1) before the model
    cell_field: int = 360  # single-cell images: side of the central square fed to the model
    cell_context: float = 2.0  # smear crops: square side / cell box side, to match training framing
    temperature: float = 1.0
    # Micrometres per model-input pixel: cells are resampled to this physical scale (None:
    # the older pixel framing by ``cell_field`` / ``cell_context``).
    um_per_px: float | None = None
    # Test-time augmentation: views averaged with the image itself (names of TTA_VIEWS).
    tta: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ModelCard:
        try:
            pre = data.get("preprocessing", {})
            card = cls(
                name=str(data["name"]),
                backbone=str(data["backbone"]),
                input_size=int(data["input_size"]),
                class_order=list(data["class_order"]),
                balance=bool(pre.get("colour_balance", False)),
                cell_field=int(pre.get("field", 360)),
                cell_context=float(pre.get("cell_context", 2.0)),
                temperature=float(data.get("temperature", 1.0)),
                um_per_px=float(pre["um_per_px"]) if pre.get("um_per_px") else None,
                tta=tuple(str(v) for v in data.get("tta", ())),
                metrics=dict(data.get("test_metrics", {})),
                extra={k: v for k, v in data.items() if k not in _CARD_KEYS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelBundleError(f"{where}: model card is incomplete or malformed ({exc!r})") from None
        unknown = [c for c in card.class_order if c not in GROUPS]
        if unknown:
            raise ModelBundleError(f"{where}: model card names unknown classes {unknown}")
        if card.temperature <= 0:
            raise ModelBundleError(f"{where}: temperature must be positive, got {card.temperature}")
        bad = [v for v in card.tta if v not in TTA_VIEWS]
        if bad:
            raise ModelBundleError(f"{where}: unknown test-time views {bad}; known: {', '.join(TTA_VIEWS)}")
        return card

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backbone": self.backbone,
            "input_size": self.input_size,
            "class_order": self.class_order,
            "preprocessing": {
                "colour_balance": self.balance,
                "field": self.cell_field,
                "cell_context": self.cell_context,
                **({"um_per_px": self.um_per_px} if self.um_per_px else {}),
            },
            "temperature": self.temperature,
            **({"tta": list(self.tta)} if self.tta else {}),
            "test_metrics": self.metrics,
            **self.extra,
        }


_CARD_KEYS = {"name", "backbone", "input_size", "class_order", "preprocessing", "temperature", "tta", "test_metrics"}

# A cell has no left or right: its mirror image is the same cell, and averaging the model
# over both cancels part of its error (measured in the bundles' cards).
TTA_VIEWS = {
    "flip_lr": lambda batch: batch[:, :, ::-1],
    "flip_ud": lambda batch: batch[:, ::-1],
    "rot180": lambda batch: batch[:, ::-1, ::-1],
}


def resource_root() -> Path:
    """The folder holding ``models/``, styles and icons; ``sys._MEIPASS`` in a frozen build."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def user_models_dir() -> Path:
    """Where a lab adds retrained bundles: the user data folder, never the install folder
    (read-only, and replaced by the next installation)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("yawbcc-desktop", appauthor=False)) / "models"


def model_search_path() -> list[Path]:
    """Folders searched for bundles by name: user-retrained models first, then the bundled ones."""
    paths = []
    extra = os.environ.get("YAWBCC_MODELS")
    if extra:
        paths += [Path(p) for p in extra.split(os.pathsep) if p]
    paths.append(user_models_dir())
    paths.append(resource_root() / "models")
    return paths


def read_card(folder: str | os.PathLike[str]) -> ModelCard:
    folder = Path(folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise ModelBundleError(f"{folder}: no {CARD_FILE}; a model bundle needs {MODEL_FILE} and {CARD_FILE}")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelBundleError(f"{card_path}: cannot read model card ({exc})") from None
    return ModelCard.from_dict(data, str(card_path))


def list_bundles() -> list[tuple[Path, ModelCard | ModelBundleError]]:
    """Every bundle folder on the search path with its card, or the error reading it."""
    found: list[tuple[Path, ModelCard | ModelBundleError]] = []
    for base in model_search_path():
        if not base.is_dir():
            continue
        # Dot-folders are bundles being written or removed (".NAME.partial").
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (folder / CARD_FILE).exists() or (folder / MODEL_FILE).exists():
                try:
                    found.append((folder, read_card(folder)))
                except ModelBundleError as exc:
                    found.append((folder, exc))
    return found


def resolve_bundle(name_or_dir: str | os.PathLike[str] | None) -> Path:
    """A bundle folder from a name on the search path or a folder path (None: the default)."""
    if name_or_dir is None:
        names = [DEFAULT_MODEL, FALLBACK_MODEL]
    else:
        candidate = Path(name_or_dir)
        if candidate.is_dir():
            return candidate
        names = [str(name_or_dir)]
    for name in names:
        for base in model_search_path():
            if (base / name).is_dir():
                return base / name
    available = ", ".join(p.name for p, _ in list_bundles()) or "none"
    raise ModelBundleError(
        f"model {names[0]!r} not found (searched {', '.join(map(str, model_search_path()))}); "
        f"available: {available}. Give --model NAME or a bundle folder."
    )


def softmax_with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling applied to softmax outputs: softmax(log p / T).

    log p differs from the logits by a per-row constant, which softmax ignores, so this is
    exactly temperature scaling of the logits.
    """
    logits: np.ndarray = np.log(np.clip(probs.astype(np.float64), 1e-30, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e: np.ndarray = np.exp(logits)
    calibrated: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return calibrated


class ModelBundle:
    """A loaded model and its card.  Not thread-safe: one thread owns it."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.card = read_card(self.folder)
        model_path = self.folder / MODEL_FILE
        if not model_path.is_file():
            raise ModelBundleError(f"{self.folder}: no {MODEL_FILE}; re-export the bundle or pick another model")
        import keras  # heavy: only when a model is really needed

        from . import layers  # noqa: F401  registers custom layers a bundle may use

        _one_blas_thread()

        try:
            self.model = keras.saving.load_model(model_path, compile=False)
        except Exception as exc:  # Keras raises many types for a broken archive
            raise ModelBundleError(f"{model_path}: cannot load the model ({type(exc).__name__}: {exc})") from None
        shape = self.model.input_shape
        if tuple(shape[1:3]) != (self.card.input_size, self.card.input_size):
            raise ModelBundleError(
                f"{self.folder}: model input {shape[1:3]} does not match the card's input_size {self.card.input_size}"
            )
        # An adapted bundle's review rule for its lab (None for the others), the lab's session
        # cells its neighbour check compares a cell with, and its head before adapting for the
        # changed-call check (None: no check).  A rule that asks for a file the bundle lacks
        # refuses the bundle rather than run unchecked.
        self.lab_rule = rule = LabReviewRule.from_card(self.card.extra)
        neighbours, changed = (rule.session_neighbours, rule.changed_calls) if rule is not None else (False, False)
        self.lab_cells = self._lab_file(LAB_CELLS_FILE, "the lab's cells", lab_cells, neighbours)
        self.base_head = self._lab_file(BASE_HEAD_FILE, "the head before adapting", base_head, changed)
        # Map the model's output order onto GROUPS once, and back.
        self._order = [self.card.class_order.index(g) if g in self.card.class_order else -1 for g in GROUPS]
        self._groups_of_outputs = np.array([GROUPS.index(g) for g in self.card.class_order])
        # Bundles with a familiarity model also report each cell's pooled backbone features:
        # one model call gives both the probabilities and the features.
        self.familiarity = None
        # The per-cell check's training cells: replay features (unit rows) and GROUPS labels; None: no check.
        self.cell_check: tuple[np.ndarray, np.ndarray] | None = None
        # keras.Model (Keras ships no type information)
        self._with_features: Any = None
        self._features: Any = None  # built on first use of features()
        fam_path = self.folder / FAMILIARITY_FILE
        if fam_path.is_file():
            try:
                self.familiarity = Familiarity.load(fam_path)
                self.cell_check = self._training_neighbours()
                self._with_features = keras.Model(self.model.input, [self.model.output, pooled_features(self.model)])
            except Exception as exc:
                raise ModelBundleError(f"{fam_path}: cannot use the familiarity model ({type(exc).__name__}: {exc})") from None

    def _lab_file(
        self, name: str, what: str, read: Callable[[Path], tuple[np.ndarray, np.ndarray]], needed: bool
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """An adapted bundle's file its lab's rule reads (None when the rule does not need it)."""
        if not needed:
            return None
        try:
            return read(self.folder)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelBundleError(f"{self.folder / name}: cannot read {what} ({exc})") from None

    @property
    def name(self) -> str:
        return self.card.name

    def raw_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Uncalibrated softmax output for a uint8 batch (N, S, S, 3), in GROUPS order;
        with the card's test-time views, the normalised geometric mean over the views."""
        return self._run(batch, False)[0]

    def _run(self, batch: np.ndarray, features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """GROUPS-order probabilities over the views and, with ``features``, the pooled
        features of every view as the model gives them (views x N rows, float32, the images'
        own first)."""
        if len(batch) == 0:
            return np.zeros((0, len(GROUPS)), dtype=np.float64), None
        views = [batch, *(TTA_VIEWS[v](batch) for v in self.card.tta)]
        inputs = np.concatenate(views).astype(np.float32)
        feats = None
        if features and self._with_features is not None:
            out, feats = self._with_features.predict_on_batch(inputs)
            feats = np.asarray(feats)
        else:
            out = self.model.predict_on_batch(inputs)
        out = np.asarray(out, dtype=np.float64)
        if len(views) > 1:
            logs = np.log(np.clip(out, 1e-30, 1.0)).reshape(len(views), len(batch), -1).mean(axis=0)
            out = np.exp(logs - logs.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        cols = [out[:, i] if i >= 0 else np.zeros(len(out)) for i in self._order]
        return np.stack(cols, axis=1), feats

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (temperature from the card), in GROUPS order."""
        return softmax_with_temperature(self.raw_probabilities(batch), self.card.temperature)

    def features(self, batch: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Pooled backbone features (N, D) of a uint8 batch, the image itself without its
        test-time views: what the head and the familiarity model see."""
        if self._features is None:
            import keras

            self._features = keras.Model(self.model.input, pooled_features(self.model))
        out = [
            np.asarray(self._features.predict_on_batch(batch[i : i + chunk].astype(np.float32)))
            for i in range(0, len(batch), chunk)
        ]
        return np.concatenate(out) if out else np.zeros((0, self._features.output_shape[-1]), np.float32)

    def warm_up(self) -> None:
        """Trace the model call a run makes (``classify``) now, not in the middle of a run.

        Keras traces a predict function for each of the first two batch shapes (half a
        second each on two cores), then generalises to any batch size.
        """
        side = self.card.input_size
        for n in (1, 2):
            self.classify(np.zeros((n, side, side, 3), np.uint8))

    def _training_neighbours(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The replay sample (``unit_replay``) when the familiarity model checks cells against it, else None."""
        from .adaptation import REPLAY_FILE, unit_replay

        if self.familiarity is None or not np.isfinite(self.familiarity.neighbour_threshold):
            return None
        return unit_replay(self.folder) if (self.folder / REPLAY_FILE).is_file() else None

    def classify(self, batch: np.ndarray) -> Classified:
        """Calibrated probabilities; with a familiarity model, each cell's unfamiliarity score
        (``Familiarity.cell_scores``) and, where it checks them, whether the cell is unlike
        the training cells of the class it was called (``neighbour_distances``)."""
        raw, views = self._run(batch, True)
        probs = softmax_with_temperature(raw, self.card.temperature)
        if views is None or self.familiarity is None:
            return Classified(probs, None, None)
        feats = np.asarray(views[: len(batch)], np.float64)  # the image itself, not its test-time views
        unusual = agreement = before = None
        if self.cell_check is not None:
            distances = neighbour_distances(feats, probs.argmax(axis=1), *self.cell_check)
            unusual = distances > self.familiarity.neighbour_threshold
        if self.lab_cells is not None:
            agreement = neighbour_agreement(feats, probs.argmax(axis=1), *self.lab_cells)
        if self.base_head is not None:
            before = self._calls_before_adapting(views, len(batch))
        return Classified(probs, self.familiarity.cell_scores(feats), unusual, agreement, before)

    def _calls_before_adapting(self, views: np.ndarray, n: int) -> np.ndarray:
        """GROUPS index of each cell's class through the head before adapting, its views
        combined as the model combines them (the mean of the views' log-probabilities has
        the argmax of the mean of their logits)."""
        assert self.base_head is not None
        kernel, bias = self.base_head
        logits = (views @ kernel + bias).reshape(-1, n, kernel.shape[1]).mean(axis=0)
        calls: np.ndarray = self._groups_of_outputs[logits.argmax(axis=1)]
        return calls


class Classified(NamedTuple):
    """What ``ModelBundle.classify`` says of a batch of cells."""

    probs: np.ndarray  # calibrated, GROUPS order
    scores: np.ndarray | None  # familiarity cell scores; None without a familiarity model
    unusual: np.ndarray | None  # bool: unlike the training cells of its class; None: not checked
    # An adapted bundle's: share of the lab's nearest session cells called the same class; None: not checked.
    agreement: np.ndarray | None = None
    # An adapted bundle's: GROUPS index of each cell's class before adapting; None: not checked.
    before: np.ndarray | None = None


def _one_blas_thread() -> None:
    """numpy's BLAS to one thread in a process that runs a model: its products here are tiny
    (familiarity scores of a batch), and its threads spinning for them took the cores from
    TensorFlow's and the segmentation's (a third of the GUI worker's time, py-spy)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def pooled_features(model: Any) -> Any:
    """The output of the global-average pooling after the backbone: what the head sees
    (a Keras model and tensor: Keras ships no type information)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.GlobalAveragePooling2D):
            return layer.output
    raise ValueError("the model has no global-average pooling layer to take features from")
