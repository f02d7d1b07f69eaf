"""A model card in words, shared by ``yawbcc models`` and the window's model chooser."""

from __future__ import annotations

from typing import Any


def adaptation_text(extra: dict[str, Any]) -> str:
    """``from lite0-accurate for lab X on 2025-05-02, 45 cells``: an adapted card's origin."""
    how = extra.get("adaptation") or {}
    text = f"from {extra.get('adapted_from')}"
    if how.get("lab"):
        text += f" for {how['lab']}"
    if how.get("date"):
        text += f" on {str(how['date'])[:10]}"
    if how.get("cells"):
        text += f", {how['cells']} cells"
    rule = extra.get("lab_review") or {}
    if rule.get("session_neighbours") and how.get("session_cells_kept"):
        text += f"; checks each cell against {how['session_cells_kept']} cells of that session"
    if rule.get("changed_calls"):
        text += "; queues the cells whose class adapting changed"
    return text
