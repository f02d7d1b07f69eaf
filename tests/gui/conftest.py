"""GUI tests: offscreen, on real images from ../shared/data, with the tests' tiny bundle.

The tiny bundle (tests/conftest.py) has random weights: its predictions mean nothing.
These tests check the plumbing -- rows, signals, filled panes, threads that end -- never
the accuracy, which the trained bundles' benchmarks measure.
"""

from __future__ import annotations

import shutil

import pytest

from yawbcc_desktop.core.classes import GROUPS


@pytest.fixture(autouse=True)
def _private_config(tmp_path, monkeypatch):
    # Settings and recent files go to a temporary folder, never the user's.
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="session")
def cell_folder(tmp_path_factory, pbc):
    """Two single-cell images of each class, in nested folders (opening is recursive)."""
    root = tmp_path_factory.mktemp("cells")
    for group in GROUPS:
        sub = root / ("wbc" if group != "PLATELET" else "other") / group.lower()
        sub.mkdir(parents=True)
        for src in [p for p in sorted((pbc / group.lower()).glob("*.jpg")) if not p.name.startswith(".")][:2]:
            shutil.copy(src, sub / src.name)
    return root


@pytest.fixture(scope="session")
def many_cells(pbc):
    """40 single-cell files, enough for a run to be cancelled in the middle."""
    paths = []
    for group in GROUPS:
        paths += sorted((pbc / group.lower()).glob("*.jpg"))[10:15]
    return [str(p) for p in paths]
