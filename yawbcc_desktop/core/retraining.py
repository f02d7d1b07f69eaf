"""What the window's retraining and ``python -m training fit`` agree on, in one place.

The window runs training as a separate process (it never imports ``training``); both sides
import this light module instead.
"""

from __future__ import annotations

# Set to "1" by the application's retraining: ``fit`` then prints within-epoch progress lines
# on stdout (not in train.log), ``@progress PHASE epoch E/N batch B/S``, because an epoch on
# the full data set takes minutes.
PROGRESS_ENV = "YAWBCC_TRAINING_PROGRESS"
