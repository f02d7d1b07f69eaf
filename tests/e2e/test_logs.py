"""The ``yawbcc`` command's log: a rotating file in the log folder, at the preferences' level."""

from __future__ import annotations

import json
import shutil

from yawbcc_desktop.cli import EXIT_SOME_FAILED, main
from yawbcc_desktop.core import logs


def test_classify_run_writes_the_log_with_failures_and_summary(pbc, tiny_bundle, tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for src in sorted((pbc / "lymphocyte").glob("*.jpg"))[:2]:
        shutil.copy(src, folder / src.name)
    (folder / "broken.jpg").write_bytes(b"not a picture")
    monkeypatch.setenv("YAWBCC_LOG_DIR", str(tmp_path / "logs"))
    status = main(["classify", str(folder), "--model", str(tiny_bundle), "--mode", "cell", "--out", str(tmp_path / "c.csv")])
    assert status == EXIT_SOME_FAILED
    log = (tmp_path / "logs" / logs.LOG_FILE).read_text(encoding="utf-8")
    assert "yawbcc started" in log
    assert "WARNING" in log and "broken.jpg" in log  # the failed file, named
    assert "INFO" in log and "2 files read, " in log and "yawbcc classify: exit status 1" in log


def test_the_preferences_level_applies_to_the_command(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config"
    config.mkdir()
    (config / "preferences.json").write_text(json.dumps({"log_level": "WARNING"}), encoding="utf-8")
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(config))
    monkeypatch.setenv("YAWBCC_LOG_DIR", str(tmp_path / "logs"))
    main(["models"])
    log = tmp_path / "logs" / logs.LOG_FILE
    assert log.is_file() and "INFO" not in log.read_text(encoding="utf-8")  # only warnings and errors kept
    logs.set_level("INFO")


def test_an_unwritable_log_folder_does_not_stop_the_command(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("YAWBCC_LOG_DIR", str(blocked / "logs"))
    assert logs.start_logging("yawbcc") is None
    assert "no log file" in capsys.readouterr().err
    monkeypatch.setenv("YAWBCC_LOG_DIR", str(tmp_path / "logs"))
    assert logs.start_logging("yawbcc") == tmp_path / "logs" / logs.LOG_FILE
