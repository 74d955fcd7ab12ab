"""MTF files and the program-output readers (postprocess.star, bfactors.star, opt_params; model.star:
test_refine_files.py)."""

import re

import numpy as np
import pandas as pd
import pytest

from polishplugin.io import labels as L
from polishplugin.io.mtf import Mtf, read_mtf, write_mtf
from polishplugin.io.polish import (FrameBfactors, OptParams, read_bfactors, read_opt_params, write_bfactors,
                                    write_opt_params)
from polishplugin.io.postprocess import PostprocessResult, read_postprocess, write_postprocess
from polishplugin.io.star import StarError


def test_tutorial_mtf_files(tutorial_data):
    k2_200 = read_mtf(tutorial_data / "mtf/mtf_k2_200kV.star")
    assert k2_200.name == "mtf_k2_200kv"
    assert len(k2_200.value) == 200
    assert k2_200.frequency_per_px[1] == pytest.approx(0.002512563)
    assert k2_200.value[1] == pytest.approx(0.997005994)
    assert k2_200.frequency_per_px[-1] == pytest.approx(0.5)
    k2_300 = read_mtf(tutorial_data / "mtf/mtf_k2_300kV.star")
    assert len(k2_300.value) == 1001
    assert k2_300.value[1] == pytest.approx(0.988714)
    assert k2_300.value[-1] == pytest.approx(0.388115)
    np.testing.assert_allclose(k2_300.frequency_per_a(0.885)[-1], 0.5 / 0.885)


def test_mtf_round_trip(tutorial_data, tmp_path):
    mtf = read_mtf(tutorial_data / "mtf/mtf_k2_300kV.star")
    write_mtf(tmp_path / "m.star", mtf)
    again = read_mtf(tmp_path / "m.star")
    np.testing.assert_allclose(again.frequency_per_px, mtf.frequency_per_px, atol=1e-6)
    np.testing.assert_allclose(again.value, mtf.value, atol=1e-6)
    assert again.name == mtf.name


@pytest.mark.parametrize("rows, message", [
    ("", "no rows"),
    ("0.0 1.0\n0.2 0.5\n0.1 0.4\n", "must increase row by row .row 3"),
    ("0.0 1.0\n0.2 0.0\n", r"must be > 1e-10 .row 2 is 0"),
    ("0.0 1.0\n0.2 -0.3\n", "must be > 1e-10"),
    ("0.0 1.0\n0.7 0.3\n", r"must lie in \[0, 0.5\]"),
    ("0.0 1.0\n0.2 nan\n", "non-finite"),
])
def test_unusable_mtf_rows(tmp_path, rows, message):
    path = tmp_path / "bad_mtf.star"
    path.write_text("data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n" + rows)
    with pytest.raises(StarError, match=re.escape(str(path)) + ".*" + message):
        read_mtf(path)


def test_mtf_missing_columns(tmp_path):
    path = tmp_path / "cols.star"
    path.write_text("data_mtf\nloop_\n_rlnResolutionInversePixel\n0.1\n")
    with pytest.raises(StarError, match="rlnMtfValue"):
        read_mtf(path)
    with pytest.raises(StarError, match="increase"):
        write_mtf(tmp_path / "w.star", Mtf(np.array([0.2, 0.1]), np.array([1.0, 0.5])))


def test_postprocess_round_trip(tiny, tmp_path):
    post = read_postprocess(tiny["postprocess_star"])
    assert post.final_resolution_a == pytest.approx(8.0)
    assert post.bfactor_a2 == pytest.approx(-50.0)
    assert post.half_maps() == ("Refine3D/job020/run_half1_class001_unfil.mrc",
                                "Refine3D/job020/run_half2_class001_unfil.mrc")
    assert post.mask_name == "MaskCreate/job021/mask.mrc"
    res, fsc = post.fsc_curve()
    assert len(res) == 9 and fsc[0] == pytest.approx(1.0) and res[8] == pytest.approx(0.25)
    guinier = pd.DataFrame({L.RESOLUTION_SQUARED: [0.0, 0.01], L.LOG_AMPLITUDES_ORIGINAL: [-1.0, -99.0]})
    out = tmp_path / "post.star"
    write_postprocess(out, PostprocessResult(post.general, post.fsc, guinier))
    again = read_postprocess(out)
    assert again.general == post.general
    pd.testing.assert_frame_equal(again.fsc, post.fsc, atol=1e-6)
    pd.testing.assert_frame_equal(again.guinier, guinier, atol=1e-6)
    with pytest.raises(StarError, match="rlnFourierShellCorrelationMaskedMaps"):
        again.fsc_curve(L.FOURIER_SHELL_CORRELATION_MASKED_MAPS)


def test_postprocess_missing_block(tmp_path):
    path = tmp_path / "post.star"
    path.write_text("data_general\n_rlnFinalResolution 3.0\n")
    with pytest.raises(StarError, match=re.escape(str(path)) + ".*data_fsc"):
        read_postprocess(path)


def test_bfactors_round_trip(tmp_path):
    table = FrameBfactors(np.arange(4), np.array([0.0, -10.5, -30.25, -60.0]),
                          np.log([1.0, 0.98, 0.95, 0.9]))
    write_bfactors(tmp_path / "bfactors.star", table)
    text = (tmp_path / "bfactors.star").read_text()
    assert "data_perframe_bfactors" in text and "_rlnMovieFrameNumber #1" in text
    again = read_bfactors(tmp_path / "bfactors.star")
    np.testing.assert_array_equal(again.frames, [0, 1, 2, 3])
    np.testing.assert_allclose(again.bfactor_a2, table.bfactor_a2, atol=1e-6)
    # negative logs are written %12.5f: 1e-5 on the log scale
    np.testing.assert_allclose(again.scale, [1.0, 0.98, 0.95, 0.9], atol=1e-5)


def test_opt_params(tmp_path):
    path = tmp_path / "opt_params_all_groups.txt"
    write_opt_params(path, OptParams(0.4335, 1020.0, 2.595))
    assert path.read_text() == "0.4335 1020 2.595\n"
    assert read_opt_params(path) == OptParams(0.4335, 1020.0, 2.595)
    path.write_text("0.5 1000\n")
    with pytest.raises(StarError, match=re.escape(str(path)) + ".*three numbers"):
        read_opt_params(path)
    with pytest.raises(StarError, match="does not exist"):
        read_opt_params(tmp_path / "absent.txt")

