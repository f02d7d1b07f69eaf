"""Why a cell goes to the to-review queue: the one place that says it.

A cell waits for a reviewer when it is not reviewed yet and any of these holds:

- its calibrated confidence is below the review threshold (a preference, so this part is
  decided when the queue is read);
- its image is *unfamiliar* to the model (``core/familiarity.py``): the model's confidence
  means little on a stain or microscope it never saw;
- its segmented size contradicts its class: a platelet (or a small clump) is under 10 µm
  across, a white cell or erythroblast over 5 µm, so a 14 µm "platelet" or a 3 µm
  "lymphocyte" is a mistake of the segmentation or of the classifier.

The last two are fixed when the cell is analysed and stored with it as *flags*.
"""

from __future__ import annotations

import math

LOW_CONFIDENCE = "low confidence"
UNFAMILIAR = "unfamiliar image"
SIZE_SAYS_WBC = "size says white cell, class says platelet"
SIZE_SAYS_PLATELET = "size says platelet, class says white cell"
NOT_CLASSIFIED = "not classified"

# Diameters (µm) beyond which size and class contradict each other.  Measured on 40 PBC
# crops per class (segmented outline, scale from red cells): platelets (clumps included)
# 4.5-9.2 µm, median 5.8; white cells and erythroblasts 5.4-22 µm, 5th percentiles 7.0-12.0.
# The limits sit outside both ranges, so a PBC cell is never flagged by its size alone.
PLATELET_MAX_UM = 10.0
WBC_MIN_UM = 5.0

FLAG_SEPARATOR = "; "


def analysis_flags(predicted: str, diameter_um: float, image_unfamiliar: bool) -> list[str]:
    """The reasons fixed at analysis time (not the confidence, which depends on the threshold)."""
    flags = []
    if image_unfamiliar:
        flags.append(UNFAMILIAR)
    if predicted and diameter_um and math.isfinite(diameter_um):
        if predicted == "PLATELET" and diameter_um > PLATELET_MAX_UM:
            flags.append(SIZE_SAYS_WBC)
        elif predicted != "PLATELET" and diameter_um < WBC_MIN_UM:
            flags.append(SIZE_SAYS_PLATELET)
    return flags


def review_reasons(confidence: float, threshold: float, flags: str | list[str]) -> list[str]:
    """Every reason the cell waits for review ([] if none), in the words the reviewer sees."""
    if isinstance(flags, str):
        flags = split_flags(flags)
    reasons = []
    if confidence is None or not math.isfinite(confidence):
        reasons.append(NOT_CLASSIFIED)
    elif confidence < threshold:
        reasons.append(LOW_CONFIDENCE)
    return reasons + list(flags)


def waits_for_review(confidence, threshold: float, flagged):
    """``review_reasons`` of many unreviewed cells at once (numpy arrays of confidences and of
    "has analysis flags"): True where it gives a reason.  ``not confidence >= threshold``
    holds for nan too, a cell never classified."""
    return ~(confidence >= threshold) | flagged


def join_flags(flags: list[str]) -> str:
    return FLAG_SEPARATOR.join(flags)


def split_flags(joined: str) -> list[str]:
    """The flags of a stored ``join_flags`` string."""
    return [f for f in joined.split(FLAG_SEPARATOR) if f]
