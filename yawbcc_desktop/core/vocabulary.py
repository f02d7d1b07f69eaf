"""The words the analysis, the session file, the command line and the window share.

One place for each, light on purpose (no numpy, no scikit-image): the GUI imports it at
start-up and the session's SQL compares against it.
"""

from __future__ import annotations

# How an image is read: ``cell`` a single-cell crop (its central cell), ``smear`` a whole
# field of view (every cell), ``auto`` decided per image (core/segmentation.py).
MODES = ("auto", "cell", "smear")

# Which method finds the cells: ``classic`` thresholds and watershed (core/smear.py,
# core/segmentation.py), ``unet`` the network trained across labs (core/unet_segmentation.py),
# ``auto`` the one the segmentation benchmark favours for each kind of image.
SEGMENTERS = ("auto", "classic", "unet")

# What became of an image, in the words the image list shows.  The analysis ends an image
# with one of FINAL_STATUSES (stored in the session's ``image.status``); ``queued`` and
# ``cancelled`` exist only in the window, before or instead of an analysis.
QUEUED, CANCELLED = "queued", "cancelled"
ANALYSED, NO_CELL, FAILED = "analysed", "no cell found", "failed"
IMAGE_STATUSES = (QUEUED, ANALYSED, NO_CELL, FAILED, CANCELLED)
FINAL_STATUSES = (ANALYSED, NO_CELL, FAILED)
