"""Round trips of the post-processing files: postprocess.star (tables in RELION's order, comments),
the FSC XML/dat, the half-map reader's checks, the MTF table reader."""

import re

import numpy as np
import pandas as pd
import pytest

from polishplugin.io import labels as L
from polishplugin.io.mrc import MrcError, write_mrc
from polishplugin.io.mtf import Mtf, read_mtf_table, write_mtf
from polishplugin.io.postprocess import (PostprocessResult, fsc_table, guinier_table, other_half_name,
                                         postprocess_paths, read_fsc_dat, read_fsc_xml, read_half_maps,
                                         read_postprocess, write_fsc_dat, write_fsc_xml, write_postprocess)
from polishplugin.io.star import StarError


def _curves(n):
    x = np.linspace(1.0, -0.05, n)
    return {"corrected": x, "particle_mask_fraction": x * 0.9, "unmasked": x * 0.8, "masked": x * 0.7,
            "random_masked": x * 0.1}


def test_fsc_table_columns_and_resolution():
    table = fsc_table(16, 2.0, _curves(9))
    assert list(table.columns) == [
        L.SPECTRAL_INDEX, L.RESOLUTION, L.ANGSTROM_RESOLUTION, L.FOURIER_SHELL_CORRELATION_CORRECTED,
        L.FOURIER_SHELL_CORRELATION_PARTICLE_MASK_FRACTION, L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS,
        L.FOURIER_SHELL_CORRELATION_MASKED_MAPS, L.CORRECTED_FOURIER_SHELL_CORRELATION_PHASE_RANDOMIZED_MASKED_MAPS]
    # RELION: shell 0 at 999 Å, shell i at N angpix / i
    np.testing.assert_allclose(table[L.ANGSTROM_RESOLUTION], [999.0] + [32.0 / i for i in range(1, 9)])
    np.testing.assert_allclose(table[L.RESOLUTION], 1.0 / table[L.ANGSTROM_RESOLUTION])
    with pytest.raises(ValueError, match="unknown FSC curve"):
        fsc_table(16, 2.0, {"bogus": np.zeros(9)})


def test_postprocess_star_round_trip(tmp_path):
    general = {L.FINAL_RESOLUTION: 4.5, L.BFACTOR_USED_FOR_SHARPENING: -62.5,
               L.UNFILTERED_MAP_HALF1: "a/run_half1_class001_unfil.mrc", L.MASK_NAME: "mask.mrc",
               L.FITTED_SLOPE_GUINIER_PLOT: -15.625, L.FITTED_INTERCEPT_GUINIER_PLOT: 3.25}
    guinier = guinier_table(np.linspace(0, 0.2, 9), {"sharpened": np.full(9, -2.0), "original": np.full(9, -1.0)},
                            intercept=3.25)
    assert list(guinier.columns) == [L.RESOLUTION_SQUARED, L.LOG_AMPLITUDES_ORIGINAL, L.LOG_AMPLITUDES_SHARPENED,
                                     L.LOG_AMPLITUDES_INTERCEPT]
    result = PostprocessResult(general, fsc_table(16, 2.0, _curves(9)), guinier)
    path = tmp_path / "postprocess.star"
    write_postprocess(path, result, comments=("made by a test", "polishplugin postprocess --o x"))
    assert path.read_text().startswith("# made by a test\n# polishplugin postprocess --o x\n")
    again = read_postprocess(path)
    assert again.general == general
    assert again.guinier_fit == (-15.625, 3.25)
    pd.testing.assert_frame_equal(again.fsc, result.fsc, atol=1e-6)
    pd.testing.assert_frame_equal(again.guinier, guinier, atol=1e-6)
    res, curve = again.fsc_curve(L.FOURIER_SHELL_CORRELATION_MASKED_MAPS)
    np.testing.assert_allclose(curve, _curves(9)["masked"], atol=1e-6)
    no_guinier = PostprocessResult({L.FINAL_RESOLUTION: 8.0}, fsc_table(16, 2.0, {"unmasked": np.ones(9)}))
    write_postprocess(path, no_guinier)
    assert read_postprocess(path).guinier is None and read_postprocess(path).guinier_fit is None


def test_fsc_xml_and_dat_round_trip(tmp_path):
    inv_res, curve = np.linspace(0.0, 0.25, 9), np.linspace(1.0, -0.125, 9)
    write_fsc_xml(tmp_path / "p_fsc.xml", inv_res, curve, "masked-corrected FSC")
    x, y, title = read_fsc_xml(tmp_path / "p_fsc.xml")
    np.testing.assert_allclose(x, inv_res, atol=1e-6)
    np.testing.assert_allclose(y, curve, atol=1e-6)
    assert title == "masked-corrected FSC"
    write_fsc_dat(tmp_path / "p_fsc.dat", inv_res, curve)
    x, y = read_fsc_dat(tmp_path / "p_fsc.dat")
    np.testing.assert_allclose(x, inv_res, atol=1e-6)
    np.testing.assert_allclose(y, curve, atol=1e-6)
    (tmp_path / "bad.xml").write_text("<fsc><coordinate><x>a</x></coordinate>")
    with pytest.raises(StarError, match="bad.xml"):
        read_fsc_xml(tmp_path / "bad.xml")
    with pytest.raises(StarError, match="does not exist"):
        read_fsc_dat(tmp_path / "absent.dat")


def test_half_maps_reader(tmp_path):
    h1 = tmp_path / "run_half1_class001_unfil.mrc"
    rng = np.random.default_rng(0)
    write_mrc(h1, rng.standard_normal((8, 8, 8)), 1.5)
    write_mrc(tmp_path / "run_half2_class001_unfil.mrc", rng.standard_normal((8, 8, 8)), 1.5)
    write_mrc(tmp_path / "mask.mrc", np.ones((8, 8, 8)), 1.5)
    maps = read_half_maps(str(h1), mask=str(tmp_path / "mask.mrc"))
    assert maps.half1.shape == maps.half2.shape == maps.mask.shape == (8, 8, 8)
    assert maps.angpix == pytest.approx(1.5) and maps.half2_name.endswith("run_half2_class001_unfil.mrc")
    assert read_half_maps(str(h1), angpix=2.0).angpix == 2.0
    assert other_half_name("a/half1_half1.mrc") == "a/half2_half2.mrc"
    with pytest.raises(MrcError, match="no 'half1'"):
        other_half_name("map.mrc")
    write_mrc(tmp_path / "m2.mrc", np.full((8, 8, 8), 2.0), 1.5)
    with pytest.raises(MrcError, match=re.escape("outside [0, 1]")):
        read_half_maps(str(h1), mask=str(tmp_path / "m2.mrc"))


def test_output_names():
    paths = postprocess_paths("PostProcess/job030/postprocess")
    assert paths["star"] == "PostProcess/job030/postprocess.star"
    assert paths["masked"] == "PostProcess/job030/postprocess_masked.mrc"
    assert paths["logfile"] == "PostProcess/job030/logfile.pdf"


def test_mtf_comments_and_table_reader(tmp_path):
    path = tmp_path / "mtf.star"
    write_mtf(path, Mtf(np.linspace(0, 0.5, 5), np.linspace(1.0, 0.5, 5), name="mtf_x"), comments=("a note",))
    assert path.read_text().startswith("# a note\n")
    x, y = read_mtf_table(path)
    np.testing.assert_allclose(y, np.linspace(1.0, 0.5, 5), atol=1e-6)
    with pytest.raises(StarError, match="does not exist"):
        read_mtf_table(tmp_path / "absent.star")
    path.write_text("data_m\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n0.0 1.0\n")
    with pytest.raises(StarError, match="unusable"):
        read_mtf_table(path)
