"""Fixtures of the end-to-end tests: a review session of real images (tests/review_sessions.py)."""

from __future__ import annotations

import pytest

from tests import review_sessions
from yawbcc_desktop.core.store import ReviewSession


@pytest.fixture(scope="session")
def reviewed_session_file(tmp_path_factory, data_dir, tiny_bundle):
    """The reviewed session; copy it (``reviewed_session``) before changing it."""
    return review_sessions.build(tmp_path_factory.mktemp("reviewed"), data_dir, tiny_bundle)


@pytest.fixture
def reviewed_session(reviewed_session_file, tmp_path):
    """A fresh copy of the reviewed session, in a folder of its own (the images are shared)."""
    folder = tmp_path / "session"
    folder.mkdir()
    with ReviewSession.open(reviewed_session_file, readonly=True) as s:
        s.copy_to(folder / "review.yawbcc").close()
    return folder / "review.yawbcc"
