"""The eight cell groups the classifier knows, the 13 file-name labels, colours, reference ranges.

This module is the one place that knows the class order: model outputs, CSV columns and
the GUI's colour keys all follow ``GROUPS``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Order matters: it is the output order of every bundled model and of the CSV columns.
GROUPS: tuple[str, ...] = (
    "BASOPHIL",
    "EOSINOPHIL",
    "ERYTHROBLAST",
    "IG",
    "LYMPHOCYTE",
    "MONOCYTE",
    "NEUTROPHIL",
    "PLATELET",
)

# A reviewer's label for an object that is not a cell (stain debris, a smudge, a cell cut
# by the frame): kept in the session with its audit trail, left out of every count.
ARTEFACT = "ARTEFACT"
# Every label a reviewer can give: the eight groups (number keys 1-8), then ARTEFACT.
REVIEW_LABELS: tuple[str, ...] = (*GROUPS, ARTEFACT)

# File-name prefixes of the PBC data set (CellaVision export) and the group each belongs to.
LABEL_TO_GROUP: dict[str, str] = {
    "BA": "BASOPHIL",
    "EO": "EOSINOPHIL",
    "ERB": "ERYTHROBLAST",
    "IG": "IG",
    "MMY": "IG",  # metamyelocyte
    "MY": "IG",  # myelocyte
    "PMY": "IG",  # promyelocyte
    "LY": "LYMPHOCYTE",
    "MO": "MONOCYTE",
    "BNE": "NEUTROPHIL",  # band neutrophil
    "SNE": "NEUTROPHIL",  # segmented neutrophil
    "NEUTROPHIL": "NEUTROPHIL",
    "PLATELET": "PLATELET",
}
LABELS: tuple[str, ...] = tuple(LABEL_TO_GROUP)

# Human-readable names for the UI and reports.
DISPLAY_NAMES: dict[str, str] = {
    "BASOPHIL": "Basophil",
    "EOSINOPHIL": "Eosinophil",
    "ERYTHROBLAST": "Erythroblast",
    "IG": "Immature granulocyte",
    "LYMPHOCYTE": "Lymphocyte",
    "MONOCYTE": "Monocyte",
    "NEUTROPHIL": "Neutrophil",
    "PLATELET": "Platelet",
    ARTEFACT: "Not a cell (artefact)",
}

# Distinct, colour-blind-friendly hues (Okabe-Ito plus two), as #RRGGBB.
COLOURS: dict[str, str] = {
    "BASOPHIL": "#0072B2",
    "EOSINOPHIL": "#E69F00",
    "ERYTHROBLAST": "#CC79A7",
    "IG": "#D55E00",
    "LYMPHOCYTE": "#56B4E9",
    "MONOCYTE": "#009E73",
    "NEUTROPHIL": "#7B3294",
    "PLATELET": "#999999",
}

# The white-cell groups that make up the 100 % of a differential count.  Erythroblasts and
# platelets are reported per 100 WBC, as labs do.
WBC_GROUPS: tuple[str, ...] = ("NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL", "BASOPHIL", "IG")


@dataclass(frozen=True)
class ReferenceRange:
    """Percent of white cells expected in a healthy adult; ``low``..``high`` inclusive."""

    group: str
    low: float
    high: float


# Defaults only: each lab replaces them with its own in preferences.  Percent of WBC in
# healthy adults, from the adult reference values of Bain BJ, Bates I, Laffan MA (eds),
# Dacie and Lewis Practical Haematology, 12th ed., Elsevier 2017, ch. 2 "Reference ranges
# and normal values": neutrophils 40-80 %, lymphocytes 20-40 %, monocytes 2-10 %,
# eosinophils 1-6 %, basophils <1-2 %.  Immature granulocytes are absent from a normal
# adult differential, so that table has no IG row; 0.5 % is the upper limit commonly used
# for automated IG% (any IG also raises the "IG present" flag).  Quoted from memory of
# that table, not checked against a printed copy here: a lab must confirm its own.
REFERENCE_RANGES: dict[str, ReferenceRange] = {
    "NEUTROPHIL": ReferenceRange("NEUTROPHIL", 40.0, 80.0),
    "LYMPHOCYTE": ReferenceRange("LYMPHOCYTE", 20.0, 40.0),
    "MONOCYTE": ReferenceRange("MONOCYTE", 2.0, 10.0),
    "EOSINOPHIL": ReferenceRange("EOSINOPHIL", 1.0, 6.0),
    "BASOPHIL": ReferenceRange("BASOPHIL", 0.0, 2.0),
    "IG": ReferenceRange("IG", 0.0, 0.5),
}


def group_of_label(label: str) -> str:
    """Group of a PBC file-name label (``"SNE"`` -> ``"NEUTROPHIL"``); KeyError if unknown."""
    return LABEL_TO_GROUP[label.upper()]


def label_of_filename(name: str) -> str:
    """The label prefix of a PBC file name: ``"SNE_12345.jpg"`` -> ``"SNE"``."""
    return name.split("_", 1)[0].upper()
