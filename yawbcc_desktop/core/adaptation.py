"""What adapting a bundle to one lab needs, in one place: ``training/adapt.py`` fits, the
window counts the reviewed cells before it offers to start.

A bundle is adaptable when it carries a replay sample (pooled features of its own training
cells, so the old labs are replayed without their images).  A class is adapted from at
least ``MIN_PER_CLASS`` of the lab's cells, and an adaptation needs ``MIN_CELLS`` in all:
fewer cannot be checked by cross-validation.
"""

from __future__ import annotations

REPLAY_FILE = "replay.npz"
MIN_PER_CLASS = 5
MIN_CELLS = 30

# Adapting to a lab's images without corrections (``training/adapt_images.py``): the share of
# the lab's own batch-norm statistics in the adapted bundle's (the rest stays the base's), the
# cells it needs, and how many it samples.  Half and half did better than either end on both
# labs held out of training (README, *Adapting to a lab's images*); all-the-lab's lost 6 points
# on one of them.
IMAGE_STATISTICS_SHARE = 0.5
MIN_IMAGE_CELLS = 50
MAX_IMAGE_CELLS = 2000
