"""The desktop review application (PySide6).

Start-up stays fast because nothing here imports TensorFlow: the analysis worker
(``worker.py``) imports it in its own thread when it loads a model.
"""

from ._pyside_guard import protect_none

protect_none()
