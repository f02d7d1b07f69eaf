"""Preferences shared by the GUI and the CLI: defaults, round trip, damaged files."""

from __future__ import annotations

import json

from yawbcc_desktop.core.classes import REFERENCE_RANGES, ReferenceRange
from yawbcc_desktop.core.preferences import (
    CONFIG_ENV,
    DEFAULT_REVIEW_THRESHOLD,
    Preferences,
    load_preferences,
    preferences_path,
    save_preferences,
)


def test_defaults_round_trip_and_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "cfg"))
    assert preferences_path() == tmp_path / "cfg" / "preferences.json"
    prefs = load_preferences()
    assert prefs.review_threshold == DEFAULT_REVIEW_THRESHOLD and prefs.reference_ranges == REFERENCE_RANGES
    assert not prefs.problem
    prefs.reviewer, prefs.review_threshold, prefs.last_session = "Zoë", 0.8, "/lab/s.yawbcc"
    prefs.reference_ranges["NEUTROPHIL"] = ReferenceRange("NEUTROPHIL", 45.0, 70.0)
    save_preferences(prefs)
    assert [p.name for p in (tmp_path / "cfg").iterdir()] == ["preferences.json"]  # no temporary file left
    again = load_preferences()
    assert (again.reviewer, again.review_threshold, again.last_session) == ("Zoë", 0.8, "/lab/s.yawbcc")
    assert again.reference_ranges["NEUTROPHIL"] == ReferenceRange("NEUTROPHIL", 45.0, 70.0)
    assert again.reference_ranges["MONOCYTE"] == REFERENCE_RANGES["MONOCYTE"]


def test_damaged_or_odd_values_fall_back_to_defaults(tmp_path):
    path = tmp_path / "preferences.json"
    path.write_text("{not json")
    prefs = load_preferences(path)
    assert "damaged" in prefs.problem and prefs.review_threshold == DEFAULT_REVIEW_THRESHOLD
    path.write_text(
        json.dumps(
            {
                "review_threshold": 7,
                "min_wbc": -1,
                "reviewer": 3,
                "reference_ranges": {"NEUTROPHIL": [80, 40], "LYMPHOCYTE": [10, 50], "PLATELET": [1, 2]},
            }
        )
    )
    prefs = load_preferences(path)
    assert prefs.review_threshold == DEFAULT_REVIEW_THRESHOLD and prefs.min_wbc == Preferences().min_wbc
    assert prefs.reference_ranges["NEUTROPHIL"] == REFERENCE_RANGES["NEUTROPHIL"]  # low > high: ignored
    assert prefs.reference_ranges["LYMPHOCYTE"] == ReferenceRange("LYMPHOCYTE", 10.0, 50.0)
    assert "PLATELET" not in prefs.reference_ranges and not prefs.problem


def test_segmenter_choice_round_trips_and_unknown_values_fall_back(tmp_path):
    path = tmp_path / "preferences.json"
    assert Preferences().segmenter == "auto"
    save_preferences(Preferences(segmenter="classic"), path)
    assert load_preferences(path).segmenter == "classic"
    path.write_text(json.dumps({"segmenter": "watershed", "reviewer": "AB"}))
    prefs = load_preferences(path)
    assert (prefs.segmenter, prefs.reviewer) == ("auto", "AB")


def test_lab_pixel_size_round_trips_and_an_impossible_one_falls_back(tmp_path):
    path = tmp_path / "preferences.json"
    assert Preferences().lab_um_per_px is None  # by default each image is measured
    save_preferences(Preferences(lab_um_per_px=0.0965), path)
    assert load_preferences(path).lab_um_per_px == 0.0965
    # What the analysis of new images is handed: both settings in one object.
    from yawbcc_desktop.core.preferences import AnalysisSettings

    assert Preferences(segmenter="unet", lab_um_per_px=0.0965).analysis == AnalysisSettings("unet", 0.0965)
    for odd in (7.5, -0.1, "0.1", True, None):
        path.write_text(json.dumps({"lab_um_per_px": odd, "reviewer": "AB"}))
        prefs = load_preferences(path)
        assert (prefs.lab_um_per_px, prefs.reviewer) == (None, "AB")


def test_log_level_round_trips_and_an_unknown_one_is_the_default(tmp_path):
    path = tmp_path / "preferences.json"
    prefs = load_preferences(path)
    assert prefs.log_level == "INFO"
    prefs.log_level = "DEBUG"
    save_preferences(prefs, path)
    assert load_preferences(path).log_level == "DEBUG"
    path.write_text(json.dumps({"log_level": "LOUD"}))
    assert load_preferences(path).log_level == "INFO"
