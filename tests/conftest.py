"""Shared fixtures: where the real data is, and a small model bundle the tests build."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests' runs log to a folder of their own, never the user's log (core/logs.py).
os.environ.setdefault("YAWBCC_LOG_DIR", tempfile.mkdtemp(prefix="yawbcc-test-logs-"))

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def missing_data(what: str) -> None:
    """Skip a test whose real data is absent, or fail it where the data must be there
    (``YAWBCC_REQUIRE_DATA=1``, set by CI): a silently skipped test proves nothing."""
    if os.environ.get("YAWBCC_REQUIRE_DATA") == "1":
        pytest.fail(f"{what} (YAWBCC_REQUIRE_DATA=1)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "pbc").is_dir():
        missing_data(f"real data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def pbc(data_dir) -> Path:
    return data_dir / "pbc"


@pytest.fixture(scope="session")
def bccd(data_dir) -> Path:
    return data_dir / "bccd"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A plumbing-only bundle: EfficientNet-Lite0 at 64 px with random weights.

    It exists so the CLI/GUI/pipeline tests run without the trained bundles; its
    predictions mean nothing, only their shape and bookkeeping are checked.
    """
    from training.bundle import write_random_bundle

    return write_random_bundle(tmp_path_factory.mktemp("bundles") / "tiny-test", "tiny-test", 64, temperature=1.5)


@pytest.fixture(scope="session")
def unfamiliar_bundle(tmp_path_factory) -> Path:
    """The tiny bundle with a familiarity model (fitted on random images) whose threshold, tiny,
    finds every real image unfamiliar; it frames cells at 0.5 µm per input pixel."""
    from training.bundle import write_random_bundle

    folder = tmp_path_factory.mktemp("bundles") / "tiny-unfamiliar"
    return write_random_bundle(folder, "tiny-unfamiliar", 64, 1.5, familiarity=True, um_per_px=0.5, familiarity_threshold=1e-30)


@pytest.fixture(scope="session")
def familiar_bundle(unfamiliar_bundle, tmp_path_factory) -> Path:
    """The same model and familiarity scores with a threshold no image reaches."""
    import shutil

    from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE, Familiarity

    folder = tmp_path_factory.mktemp("bundles") / "tiny-familiar"
    shutil.copytree(unfamiliar_bundle, folder)
    card = folder / "model.json"
    card.write_text(card.read_text().replace('"tiny-unfamiliar"', '"tiny-familiar"'))
    familiarity = Familiarity.load(folder / FAMILIARITY_FILE)
    familiarity.threshold = 1e300
    familiarity.save(folder / FAMILIARITY_FILE)
    return folder


@pytest.fixture(scope="session")
def adaptable_bundle(tmp_path_factory) -> Path:
    """The tiny bundle with a replay sample (so ``training adapt`` accepts it) and a familiarity
    model that finds every image familiar; alone in its folder, for YAWBCC_MODELS."""
    from training.bundle import write_random_bundle

    folder = tmp_path_factory.mktemp("adaptable") / "tiny-adaptable"
    return write_random_bundle(folder, "tiny-adaptable", 64, 1.5, familiarity=True, familiarity_threshold=1e300, replay=True)


def _postgres_server():
    from tests.postgres_server import PostgresServer, server_bin

    if server_bin() is None:
        missing_data("PostgreSQL's server programs are not installed (apt-get install postgresql)")
    return PostgresServer().start()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for this test run (tests/postgres_server.py), stopped at the end.
    Missing server programs skip, or fail under ``YAWBCC_REQUIRE_DATA=1`` (CI)."""
    server = _postgres_server()
    yield server
    server.remove()


@pytest.fixture
def own_postgres_server():
    """A server of the test's own, for a test that stops and restarts it."""
    server = _postgres_server()
    yield server
    server.remove()


_session_numbers = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def session_location(request, tmp_path) -> str:
    """Where a new session goes, once in each store: a file, and a fresh name on the server."""
    if request.param == "sqlite":
        return str(tmp_path / "review.yawbcc")
    return request.getfixturevalue("postgres_server").url(f"test{os.getpid()}_{next(_session_numbers)}")


@pytest.fixture
def session(session_location):
    """A new review session, once in each store (SQLite file, PostgreSQL server): one contract."""
    from yawbcc_desktop.core.store import ReviewSession

    s = ReviewSession.create(session_location)
    yield s
    s.close()
