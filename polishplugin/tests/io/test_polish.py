"""Bayesian-polishing files: tracks, FCC tables, tsc_trace.star and the per-micrograph output names
(bfactors.star and opt_params: tests/io/test_mtf_outputs.py)."""

import re

import numpy as np
import pandas as pd
import pytest

from polishplugin.io import labels as L
from polishplugin.io.polish import (OptParams, TscTrace, micrograph_root, read_fcc_tables, read_tracks,
                                    read_tsc_trace, write_fcc_tables, write_tracks, write_tsc_trace)
from polishplugin.io.star import StarError, read_star


def test_tracks_star_round_trip(tmp_path):
    tr = np.random.default_rng(0).normal(size=(3, 5, 2))
    write_tracks(tmp_path / "a_tracks.star", tr, 1.25)
    blocks = read_star(tmp_path / "a_tracks.star")
    assert list(blocks) == ["general", "0", "1", "2"]
    assert int(blocks["general"][L.PARTICLE_NUMBER].iloc[0]) == 3
    np.testing.assert_allclose(blocks["1"][L.ORIGIN_X_ANGST], tr[1, :, 0] * 1.25, atol=1e-5)
    np.testing.assert_allclose(read_tracks(tmp_path / "a_tracks.star", 1.25), tr, atol=1e-5)
    np.testing.assert_allclose(read_tracks(tmp_path / "a_tracks.star"), tr * 1.25, atol=1e-5)  # Å
    bad = tmp_path / "b_tracks.star"
    bad.write_text((tmp_path / "a_tracks.star").read_text().replace("data_2", "data_x"))
    with pytest.raises(StarError, match=re.escape(str(bad)) + ".*no data_2 block"):
        read_tracks(bad)


def test_fcc_tables_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    tables = tuple(rng.normal(size=(6, 25)) for _ in range(3))
    tables[0][2, 3] = np.nan  # kept: the sum over micrographs decides what to do with it
    root = tmp_path / "Movies" / "mic_001"
    root.parent.mkdir()
    write_fcc_tables(root, tables, 2.5)
    assert sorted(p.name for p in root.parent.iterdir()) == [f"mic_001_FCC_{p}.mrc" for p in ("cc", "w0", "w1")]
    again = read_fcc_tables(root)
    for a, b in zip(again, tables):
        assert a.dtype == np.float64 and a.shape == (6, 25)
        np.testing.assert_allclose(a, b.astype(np.float32), equal_nan=True)
    (root.parent / "mic_001_FCC_w1.mrc").unlink()
    assert read_fcc_tables(root) is None


def test_tsc_trace_round_trip(tmp_path):
    evaluations = pd.DataFrame({"evaluation": [1, 2, 3], "s_vel": [0.6, 0.3, 0.4035],
                                "s_div": [10005.0, 5010.0, 1155.0], "s_acc": [3.0, 1.5, 2.715],
                                "tsc": [0.123456789012, 0.1234567, 0.12345691]})
    trace = TscTrace(evaluations, OptParams(0.4035, 1155.0, 2.715), 0.12345691, False, 4, 120)
    path = tmp_path / "tsc_trace.star"
    write_tsc_trace(path, trace)
    text = path.read_text()
    assert "data_tsc_trace" in text and "0.123456789" in text  # TSCs keep 10 significant digits
    again = read_tsc_trace(path)
    assert len(again) == 3 and list(again.evaluations.columns) == ["evaluation", "s_vel", "s_div", "s_acc", "tsc"]
    pd.testing.assert_frame_equal(again.evaluations, evaluations, check_dtype=False, atol=1e-6)
    assert again.evaluations.tsc.iloc[0] == pytest.approx(0.123456789012, rel=1e-10)
    assert again.best == OptParams(0.4035, 1155.0, 2.715) and again.best_tsc == pytest.approx(0.12345691)
    assert (again.flat, again.n_micrographs, again.n_particles) == (False, 4, 120)
    path.write_text(text.replace("data_general", "data_other"))
    with pytest.raises(StarError, match=re.escape(str(path)) + ".*data_general"):
        read_tsc_trace(path)


def test_micrograph_root_strips_job_prefix():
    r = micrograph_root("Polish/job028", "MotionCorr/job002/Movies/20170629_00021_frameImage.mrc")
    assert str(r) == "Polish/job028/Movies/20170629_00021_frameImage"
    assert str(micrograph_root("out", "/data/run/MotionCorr/job002/Movies/a.mrc")) == "out/Movies/a"
    assert str(micrograph_root("out", "/data/Movies/a.tiff")) == "out/data/Movies/a"
    assert str(micrograph_root("out", "Movies/a.mrc")) == "out/Movies/a"
