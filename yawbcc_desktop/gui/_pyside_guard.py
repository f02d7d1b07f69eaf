"""A guard against a PySide6 bug that would abort the application after a few minutes.

PySide6 6.12.0 (abi3 wheel) returns ``None`` from every void method without taking a
reference.  On Python 3.12+ ``None`` is immortal and nothing happens; on 3.11 each call
drops ``None``'s reference count by one, and after some tens of thousands of calls (a few
minutes of painting) Python aborts with "none_dealloc: deallocating None".  PySide6 6.11.3
is not affected.  Where the bug is seen, ``None`` is made immortal the way Python 3.12 does
it: a reference count so large that no run can exhaust it.
"""

from __future__ import annotations

import ctypes
import sys

_IMMORTAL = 1 << 48


def leaks_none_references() -> bool:
    """True if PySide's void methods drop a reference to ``None`` on this Python."""
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(64):
        probe.setObjectName("")
    return before - sys.getrefcount(None) >= 32


def protect_none() -> bool:
    """Make ``None`` immortal if PySide leaks its references; True if it had to."""
    if not leaks_none_references():
        return False
    if sys.implementation.name == "cpython" and sys.getrefcount(None) < _IMMORTAL:
        ctypes.c_ssize_t.from_address(id(None)).value = _IMMORTAL  # ob_refcnt is the first field
    return True
