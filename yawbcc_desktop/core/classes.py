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


# Adult peripheral-blood differential (percent of WBC): the usual adult relative counts of
# haematology textbooks (e.g. the reference-range chapter of Dacie and Lewis, Practical
# Haematology).  They are defaults only: each lab replaces them with its own in preferences.
REFERENCE_RANGES: dict[str, ReferenceRange] = {
    "NEUTROPHIL": ReferenceRange("NEUTROPHIL", 40.0, 75.0),
    "LYMPHOCYTE": ReferenceRange("LYMPHOCYTE", 20.0, 45.0),
    "MONOCYTE": ReferenceRange("MONOCYTE", 2.0, 10.0),
    "EOSINOPHIL": ReferenceRange("EOSINOPHIL", 1.0, 6.0),
    "BASOPHIL": ReferenceRange("BASOPHIL", 0.0, 1.0),
    "IG": ReferenceRange("IG", 0.0, 0.5),
}


def group_of_label(label: str) -> str:
    """Group of a PBC file-name label (``"SNE"`` -> ``"NEUTROPHIL"``); KeyError if unknown."""
    return LABEL_TO_GROUP[label.upper()]


def label_of_filename(name: str) -> str:
    """The label prefix of a PBC file name: ``"SNE_12345.jpg"`` -> ``"SNE"``."""
    return name.split("_", 1)[0].upper()
