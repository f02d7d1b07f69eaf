"""Random-weight model bundles for plumbing checks (tests, GUI benchmarks).

Their predictions mean nothing; they exist so the application can be exercised end to end
without the trained bundles.
"""

from __future__ import annotations

import json
from pathlib import Path

from yawbcc_desktop.core.classes import GROUPS

from .factory import build_model


def write_random_bundle(folder: Path, name: str, size: int, temperature: float = 1.0) -> Path:
    """Write ``folder/model.keras`` (EfficientNet-Lite0, random weights) and its ``model.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    build_model("efficientnet-lite0", size, weights=None).save(folder / "model.keras")
    card = {
        "name": name,
        "backbone": "efficientnet-lite0",
        "input_size": size,
        "class_order": list(GROUPS),
        "preprocessing": {"colour_balance": True, "field": 288, "cell_context": 2.0},
        "temperature": temperature,
        "test_metrics": {},
    }
    (folder / "model.json").write_text(json.dumps(card))
    return folder
