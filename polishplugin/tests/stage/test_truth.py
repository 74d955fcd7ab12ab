"""The summary's comparison with the simulated truth: its measures and the table that states them."""

import json

import numpy as np
import pytest

from polishplugin.stage import truth as T
from polishplugin.stage.workflow import FAIRNESS_NOTE, format_summary, format_table


def test_bfactors_compared_relative_to_their_maximum_on_relion_scale():
    planted = -4.0 * 1.277 * np.arange(16)           # the demo's planted ramp, 0 .. -76.6 Å²
    q = ((64 // 2 + 1) / 32) ** 2
    fitted = q * planted - 30.0 + np.r_[0.0, 5.0, -5.0, 0.0, 2.0, -2.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10.0]
    c = T.bfactor_comparison(fitted, planted, 64)
    assert c["relion_scale"] == pytest.approx(q)
    assert c["planted_rel_A2"][0] == 0 and c["planted_rel_A2"][-1] == pytest.approx(q * planted[-1])
    assert c["fitted_rel_A2"] == pytest.approx(list(fitted - fitted.max()))
    # fitted - max: the +5 at frame 2 sets the maximum, so every difference is shifted by 5
    diffs = np.abs(np.asarray(c["fitted_rel_A2"]) - np.asarray(c["planted_rel_A2"]))
    assert c["median_abs_diff_A2"] == pytest.approx(np.median(diffs))
    assert c["max_abs_diff_A2"] == pytest.approx(diffs.max()) and c["correlation"] > 0.99


def test_track_rms_over_particles_and_frames():
    true = np.zeros((3, 4, 2))
    tracks = true.copy()
    tracks[..., 0] = 1.0
    assert T.track_rms_a(tracks, true) == pytest.approx(1.0)
    tracks[0, :, 1] = 3.0
    assert T.track_rms_a(tracks, true) == pytest.approx(np.sqrt((12 + 4 * 9) / 12))


def _comparison(gain: int = 1) -> dict:
    return {"resolution_before_A": 7.11, "resolution_after_A": 6.74 if gain > 0 else 7.11,
            "polishing_gain_shells": gain,
            "refine_resolution_A": 6.9, "refine_poses_resolution_A": 7.1, "true_pose_resolution_A": 6.74,
            "refine_shells_from_true_pose": -1, "refine_angle_error_deg": 1.8, "refine_offset_error_A": 0.4,
            "bfactors": {"fitted_rel_A2": [0.0, -12.0, -20.0], "planted_rel_A2": [0.0, -5.4, -10.9],
                         "median_abs_diff_A2": 6.6, "max_abs_diff_A2": 9.1, "rms_diff_A2": 6.5},
            "sigmas_planted": (0.4, 1155.0, 2.7), "sigmas_trained": (0.5, 2000.0, 3.0),
            "sigmas_used": (0.5, 2000.0, 3.0), "track_rms_trained_A": 0.61, "track_rms_planted_sigmas_A": 0.58,
            "track_rms_initial_A": 1.9,
            "autob": {"after": {"bfactor_A2": -300.0, "fit_shells": 5, "too_few": True},
                      "before": {"bfactor_A2": -250.0, "fit_shells": 12, "too_few": False}}}


def test_gain_sentence_says_what_polishing_did():
    assert T.gain_sentence(_comparison(1)).startswith("polishing improved the map by 1 Fourier shell:")
    assert "did not change" in T.gain_sentence(_comparison(0))
    assert "worse by 2 Fourier shells" in T.gain_sentence(_comparison(-2))


def test_summary_table_puts_each_estimate_beside_its_truth(tmp_path):
    c = _comparison()
    rows = dict(T.summary_rows(c))
    assert rows["per-frame B-factors planted (A^2, rel. to max)"] == "0 -5 -11"
    assert rows["sigmas planted (s_vel s_div s_acc)"] == "0.4 1155 2.7"
    assert rows["sigmas used for polishing (trained)"] == "0.5 2000 3"
    assert rows["polishing gain (Fourier shells)"] == "+1"
    warnings = [k for k in rows if k.startswith("WARNING auto-B")]
    assert warnings == ["WARNING auto-B (after): fit over 5 shells only"]
    summary = {"truth": c, "bfactor_after_a2": -300.0, "autob_fit_shells_after": 5, "times_s": {"27 refine": 12.0},
               "seconds_total": 99.0, "resolution_before_a": 7.1, "resolution_after_a": 6.9,
               "frame_bfactors_a2": [0.0, -12.0, -20.0], "sigmas": (0.5, 2000.0, 3.0)}
    text = format_summary(summary, "demo: summary")
    assert "polishing improved the map by 1 Fourier shell" in text
    assert "How the numbers were obtained" in text and "WARNING, fewer than 10" in text
    assert FAIRNESS_NOTE.split()[0] in text
    data = T.summary_json(c, 99.0)
    assert set(T.JSON_KEYS) <= set(data) and data["seconds_total"] == 99.0
    T.write_json(tmp_path / "summary.json", data)
    assert json.loads((tmp_path / "summary.json").read_text())["polishing_gain_shells"] == 1


def test_format_table_headings_and_rows():
    text = format_table("t", [("-- section", ""), ("a", "1"), ("long label", "2")], ["note"])
    lines = text.splitlines()
    assert lines[1] == "t" and lines[3] == "section" and lines[4].startswith("  a ") and lines[-1] == "note"
