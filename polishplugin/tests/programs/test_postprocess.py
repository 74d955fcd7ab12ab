"""``polishplugin postprocess`` on small planted half maps: outputs, RELION names, bad input."""

import os
import xml.etree.ElementTree as ET

import mrcfile
import numpy as np
import pytest

from polishplugin.io.mrc import write_mrc
from polishplugin.io.mtf import read_mtf_table
from polishplugin.core.filters import raised_cosine_sphere
from polishplugin.programs import postprocess as prog
from polishplugin.testing.planted_maps import sphere_half_maps
from polishplugin.programs._cli import ProgramError, build_parser, run_module

BOX = 48
ANGPIX = 1.0
K_CROSS = 18.5      # true FSC crosses 0.143 between shells 18 and 19
BFACTOR = 60.0


def _planted(rng, identical=False):
    """True FSC crosses 0.143 at K_CROSS (sphere of radius 14 px)."""
    return sphere_half_maps(rng, BOX, ANGPIX, BFACTOR, K_CROSS, 14.0, identical=identical)[1:]


@pytest.fixture
def inputs(tmp_path, rng):
    h1, h2 = _planted(rng)
    paths = {"half1": tmp_path / "run_half1_class001_unfil.mrc", "half2": tmp_path / "run_half2_class001_unfil.mrc",
             "mask": tmp_path / "mask.mrc", "mtf": tmp_path / "mtf.star"}
    write_mrc(paths["half1"], h1, ANGPIX)
    write_mrc(paths["half2"], h2, ANGPIX)
    write_mrc(paths["mask"], raised_cosine_sphere(h1.shape, 19.0, 4.0), ANGPIX)
    rows = "".join(f"{x:.4f} {1.0 - 0.8 * x:.6f}\n" for x in np.linspace(0, 0.5, 21))
    paths["mtf"].write_text("data_mtf_test\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n" + rows)
    return {k: str(v) for k, v in paths.items()}


def _run(argv):
    return prog.main(build_parser("postprocess").parse_args(argv))


def test_full_run_outputs_and_names(inputs, tmp_path):
    import starfile

    out = str(tmp_path / "PostProcess" / "job030" / "postprocess")
    assert _run(["--i", inputs["half1"], "--o", out, "--mask", inputs["mask"], "--mtf", inputs["mtf"],
                 "--mtf_angpix", "1.0", "--auto_bfac", "--autob_lowres", "10", "--half_maps"]) == 0
    folder = os.path.dirname(out)
    for name in ["postprocess.mrc", "postprocess_masked.mrc", "postprocess.star", "postprocess_fsc.xml",
                 "postprocess_fsc.dat", "postprocess_fsc.png", "postprocess_guinier.png", "logfile.pdf",
                 "postprocess_half1.mrc", "postprocess_half2.mrc"]:
        assert os.path.getsize(os.path.join(folder, name)) > 0, name
    for name in ["postprocess.mrc", "postprocess_masked.mrc", "postprocess_half1.mrc"]:
        with mrcfile.open(os.path.join(folder, name)) as m:
            assert m.voxel_size.x == pytest.approx(ANGPIX) and m.data.shape == (BOX,) * 3
    star = starfile.read(out + ".star")
    assert list(star) == ["general", "fsc", "guinier"]
    general = star["general"]
    assert list(general)[:5] == ["rlnFinalResolution", "rlnBfactorUsedForSharpening", "rlnUnfilteredMapHalf1",
                                 "rlnUnfilteredMapHalf2", "rlnPostprocessedMap"]
    assert general["rlnUnfilteredMapHalf2"] == inputs["half2"]
    assert general["rlnPostprocessedMap"] == out + ".mrc"
    for label in ["rlnParticleBoxFractionSolventMask", "rlnMaskName", "rlnRandomiseFrom",
                  "rlnPostprocessedMapMasked", "rlnFittedSlopeGuinierPlot", "rlnFittedInterceptGuinierPlot",
                  "rlnCorrelationFitGuinierPlot"]:
        assert label in general
    assert general["rlnBfactorUsedForSharpening"] == pytest.approx(4 * general["rlnFittedSlopeGuinierPlot"], rel=1e-4)
    fsc = star["fsc"]
    assert list(fsc.columns) == [
        "rlnSpectralIndex", "rlnResolution", "rlnAngstromResolution", "rlnFourierShellCorrelationCorrected",
        "rlnFourierShellCorrelationParticleMaskFraction", "rlnFourierShellCorrelationUnmaskedMaps",
        "rlnFourierShellCorrelationMaskedMaps", "rlnCorrectedFourierShellCorrelationPhaseRandomizedMaskedMaps"]
    assert len(fsc) == BOX // 2 + 1 and fsc["rlnAngstromResolution"].iloc[0] == 999
    guinier = star["guinier"]
    assert list(guinier.columns) == ["rlnResolutionSquared", "rlnLogAmplitudesOriginal",
                                     "rlnLogAmplitudesMTFCorrected", "rlnLogAmplitudesWeighted",
                                     "rlnLogAmplitudesSharpened", "rlnLogAmplitudesIntercept"]
    # the MTF (< 1) raises the amplitudes
    assert np.all(guinier["rlnLogAmplitudesMTFCorrected"][1:] >= guinier["rlnLogAmplitudesOriginal"][1:] - 1e-9)
    root = ET.parse(out + "_fsc.xml").getroot()
    assert root.tag == "fsc" and root.get("xaxis") == "Resolution (A-1)"
    assert len(root.findall("coordinate")) == BOX // 2 + 1


def test_planted_resolution_unmasked(inputs, tmp_path):
    import starfile

    out = str(tmp_path / "pp")
    assert _run(["--i", inputs["half1"], "--o", out, "--auto_bfac", "--autob_highres", "3"]) == 0
    star = starfile.read(out + ".star")
    shell = round(BOX * ANGPIX / star["general"]["rlnFinalResolution"])
    assert abs(shell - 18) <= 1
    assert star["general"]["rlnBfactorUsedForSharpening"] == pytest.approx(-BFACTOR, rel=0.1)
    assert list(star["fsc"].columns)[3:] == ["rlnFourierShellCorrelationUnmaskedMaps"]


def test_adhoc_bfactor_and_low_pass(inputs, tmp_path):
    import starfile

    out = str(tmp_path / "pp")
    assert _run(["--i", inputs["half1"], "--o", out, "--adhoc_bfac", "-50", "--skip_fsc_weighting",
                 "--low_pass", "-1"]) == 0
    star = starfile.read(out + ".star")
    assert star["general"]["rlnBfactorUsedForSharpening"] == -50
    assert list(star["guinier"].columns) == ["rlnResolutionSquared", "rlnLogAmplitudesOriginal",
                                             "rlnLogAmplitudesSharpened"]


def test_autob_fit_over_few_shells_is_flagged(inputs, tmp_path, caplog):
    """10 -> 7 Å on a 48 px, 1 Å box: shells 5..6, 2 points (RELION fits them); the log warns and
    postprocess.star records the shell count, its range and the flag; 10 Å -> Nyquist does not warn."""
    import logging

    import starfile

    from polishplugin.core.postprocess import AUTOB_MIN_SHELLS

    caplog.set_level(logging.INFO)
    few = str(tmp_path / "few")
    assert _run(["--i", inputs["half1"], "--o", few, "--auto_bfac", "--autob_lowres", "10",
                 "--autob_highres", "7"]) == 0
    general = starfile.read(few + ".star")["general"]
    assert general["rlnPolishAutobFitShells"] == 2 < AUTOB_MIN_SHELLS
    assert general["rlnPolishAutobFitLowres"] == pytest.approx(48 / 5)
    assert general["rlnPolishAutobFitHighres"] == pytest.approx(48 / 6)
    assert general["rlnPolishAutobTooFewShells"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("spans only 2 Fourier shells" in w for w in warnings), warnings
    caplog.clear()
    many = str(tmp_path / "many")
    assert _run(["--i", inputs["half1"], "--o", many, "--auto_bfac", "--autob_lowres", "10"]) == 0
    general = starfile.read(many + ".star")["general"]
    assert general["rlnPolishAutobFitShells"] >= AUTOB_MIN_SHELLS
    assert general["rlnPolishAutobTooFewShells"] == 0
    assert not any("Fourier shells" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_real_mtf_file_reads():
    data = os.environ.get("POLISHPLUGIN_TEST_DATA")
    if not data:
        pytest.skip("POLISHPLUGIN_TEST_DATA unset")
    x, y = read_mtf_table(os.path.join(data, "mtf", "mtf_k2_200kV.star"))
    assert x[0] == 0 and y[0] == 1 and x.size == y.size > 100


def _bad(tmp_path, name, data, angpix=ANGPIX):
    path = str(tmp_path / name)
    write_mrc(path, data, angpix)
    return path


@pytest.mark.parametrize("case,match", [
    ("shape", "different shapes"),
    ("angpix", "different pixel sizes"),
    ("mask_range", "outside \\[0, 1\\]"),
    ("mask_shape", "mask .* has shape"),
    ("nan", "NaN"),
    ("mtf_zero", "MTF file .* unusable"),
    ("mtf_text", "MTF file .* unusable"),
    ("mtf_columns", "MTF file .* has no table"),
    ("identical", "never drops below 0.8"),
    ("auto_adhoc", "mutually exclusive"),
    ("no_half1", "no 'half1'"),
])
def test_bad_input_is_a_clear_error(inputs, tmp_path, case, match):
    argv = ["--i", inputs["half1"], "--o", str(tmp_path / "bad" / "pp"), "--mask", inputs["mask"]]
    box = (BOX,) * 3
    if case == "shape":
        argv += ["--i2", _bad(tmp_path, "h2.mrc", np.zeros((BOX - 2,) * 3))]
    elif case == "angpix":
        argv += ["--i2", _bad(tmp_path, "h2.mrc", np.zeros(box), 1.3)]
    elif case == "mask_range":
        argv[-1] = _bad(tmp_path, "m.mrc", np.full(box, 1.5))
    elif case == "mask_shape":
        argv[-1] = _bad(tmp_path, "m.mrc", np.ones((BOX - 2,) * 3))
    elif case == "nan":
        h = np.zeros(box)
        h[3, 4, 5] = np.nan
        argv += ["--i2", _bad(tmp_path, "h2.mrc", h)]
    elif case.startswith("mtf"):
        path = tmp_path / "bad_mtf.star"
        body = {"mtf_zero": "0.0 1.0\n0.25 0.0\n0.5 0.5\n", "mtf_text": "0.0 1.0\n0.25 abc\n0.5 0.5\n"}
        header = "data_m\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n"
        if case == "mtf_columns":
            header = "data_m\nloop_\n_rlnResolutionInversePixel\n_rlnSomethingElse\n"
        path.write_text(header + body.get(case, "0.0 1.0\n0.5 0.5\n"))
        argv += ["--mtf", str(path)]
    elif case == "identical":
        h1, h2 = _planted(np.random.default_rng(5), identical=True)
        argv[1] = _bad(tmp_path, "same_half1.mrc", h1)
        argv += ["--i2", _bad(tmp_path, "same_half2.mrc", h2)]
    elif case == "auto_adhoc":
        argv += ["--auto_bfac", "--adhoc_bfac", "-100"]
    elif case == "no_half1":
        argv[1] = _bad(tmp_path, "map.mrc", np.zeros(box))
    from polishplugin.io.mrc import MrcError
    from polishplugin.io.star import StarError
    with pytest.raises((ProgramError, MrcError, StarError), match=match):
        _run(argv)
    assert not os.path.exists(tmp_path / "bad")       # nothing written


def test_cli_exit_code_and_message(inputs, tmp_path, capsys):
    rc = run_module(prog, ["--i", inputs["half1"], "--o", str(tmp_path / "pp"), "--mask",
                           _bad(tmp_path, "m.mrc", np.full((BOX,) * 3, -0.5))], "polishplugin postprocess")
    assert rc == 1
    assert "outside [0, 1]" in capsys.readouterr().err


def test_molweight_columns(inputs, tmp_path):
    import starfile

    out = str(tmp_path / "pp")
    assert _run(["--i", inputs["half1"], "--o", out, "--mask", inputs["mask"], "--molweight", "50",
                 "--random_seed", "3"]) == 0
    star = starfile.read(out + ".star")
    general = star["general"]
    box_volume = BOX ** 3 * ANGPIX ** 3
    assert general["rlnMolecularWeight"] == 50
    assert general["rlnParticleBoxFractionMolecularWeight"] == pytest.approx(0.476 * box_volume * 0.81 / 50000,
                                                                             rel=1e-5)
    cols = list(star["fsc"].columns)
    assert cols[4:6] == ["rlnFourierShellCorrelationParticleMaskFraction",
                         "rlnFourierShellCorrelationParticleMolWeight"]
    assert general["rlnBfactorUsedForSharpening"] == 0          # no --auto_bfac, no --adhoc_bfac
    assert list(star["guinier"].columns) == ["rlnResolutionSquared", "rlnLogAmplitudesOriginal",
                                             "rlnLogAmplitudesWeighted"]
