"""``yawbcc session copy`` between a session file and the lab's server, and ``--session URL``
wherever the command line takes a session: the exports of the copies equal the original's."""

from __future__ import annotations

import os

from tests.unit.test_store import image_result
from yawbcc_desktop.cli import EXIT_OK, EXIT_UNUSABLE, main
from yawbcc_desktop.core.store import ReviewSession


def test_session_copy_file_to_server_and_back_exports_the_same(tmp_path, postgres_server, capsys):
    original = tmp_path / "bench.yawbcc"
    with ReviewSession.create(original) as s:
        ids: list[int] = []
        for k in range(3):
            ids += s.add_image(image_result(f"/lab/p{k % 2}/f{k}.png", [("NEUTROPHIL", 0.99), ("LYMPHOCYTE", 0.55)]))
        s.set_label(ids[1:3], "MONOCYTE", "Ann")
        s.confirm(ids[3:], "Bob")
    url = postgres_server.url(f"cli{os.getpid()}")
    assert main(["session", "copy", str(original), url]) == EXIT_OK
    assert f"3 images, 6 cells, 5 audit rows -> {url}" in capsys.readouterr().err
    back = tmp_path / "back.yawbcc"
    assert main(["session", "copy", url, str(back)]) == EXIT_OK

    exports = {}
    for name, where in [("file", str(original)), ("server", url), ("back", str(back))]:
        cells, diff = tmp_path / f"{name}_cells.csv", tmp_path / f"{name}_diff.csv"
        assert main(["export", "--session", where, "--cells", str(cells), "--differential", str(diff)]) == EXIT_OK
        exports[name] = (cells.read_text(), diff.read_text())
    assert exports["file"] == exports["server"] == exports["back"]
    assert "MONOCYTE" in exports["server"][0] and "Bob" in exports["server"][0]

    capsys.readouterr()
    assert main(["session", "copy", str(original), url]) == EXIT_UNUSABLE  # never over a session
    assert "already exists" in capsys.readouterr().err
    assert main(["session", "copy", url.replace(f"cli{os.getpid()}", "absent"), str(tmp_path / "x.yawbcc")]) == EXIT_UNUSABLE
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.yawbcc").exists()
