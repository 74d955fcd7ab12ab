"""``polishplugin local_resolution`` on small planted half maps: outputs, RELION names, valid STAR,
ChimeraX script, MPI, bad input (clear sentence, earlier results untouched)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from polishplugin.io.local_resolution import locres_paths, point_table_name, relion_integer_string
from polishplugin.io.mrc import read_mrc, write_mrc
from polishplugin.io.star import read_star
from polishplugin.testing.planted_maps import two_resolution_half_maps as planted_half_maps
from polishplugin.programs import local_resolution as prog
from polishplugin.programs._cli import run_module

BOX = 40
ANGPIX = 1.244
ARGS = ["--locres_sampling", "12", "--adhoc_bfac", "-50"]


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    root = tmp_path_factory.mktemp("locres_in")
    h1, h2, region = planted_half_maps(BOX, ANGPIX, (4.0, 8.0), noise=0.45, seed=4)
    paths = {"half1": root / "run_half1_class001_unfil.mrc", "half2": root / "run_half2_class001_unfil.mrc",
             "mask": root / "mask.mrc", "mtf": root / "mtf.star"}
    write_mrc(paths["half1"], h1, ANGPIX)
    write_mrc(paths["half2"], h2, ANGPIX)
    mask = np.zeros((BOX,) * 3, np.float32)
    mask[4:-4, 4:-4, 4:-4] = 1.0
    write_mrc(paths["mask"], mask, ANGPIX)
    rows = "".join(f"{x:.4f} {1.0 - 0.8 * x:.6f}\n" for x in np.linspace(0, 0.5, 21))
    paths["mtf"].write_text("data_mtf_test\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n" + rows)
    out = {k: str(v) for k, v in paths.items()}
    out["root"] = str(root)
    return out


def _run(argv):
    return run_module(prog, argv, "polishplugin local_resolution")


def test_relion_integer_string_and_table_names():
    assert relion_integer_string(-20) == "-0020"
    assert relion_integer_string(8) == "00008"
    assert relion_integer_string(0) == "00000"
    assert point_table_name((-20, 4, 0)) == "fsc_-0020_00004_00000"


def test_full_run_outputs(maps, tmp_path):
    out = str(tmp_path / "LocalRes" / "job031" / "relion")
    assert _run(["--i", maps["half1"], "--o", out, "--mask", maps["mask"], "--mtf", maps["mtf"],
                 "--mtf_angpix", "1.0"] + ARGS) == 0
    folder = os.path.dirname(out)
    paths = locres_paths(out)
    for path in paths.values():
        assert os.path.exists(path), path
    locres, angpix = read_mrc(paths["locres"])
    filt, angpix2 = read_mrc(paths["filtered"])
    assert angpix == pytest.approx(ANGPIX, abs=1e-4) and angpix2 == pytest.approx(ANGPIX, abs=1e-4)
    assert locres.shape == (BOX,) * 3
    inside = locres[locres > 0]
    assert inside.min() >= 2 * ANGPIX - 1e-4 and inside.max() <= 50.0 + 1e-4
    assert np.all(filt[locres == 0] == 0)
    # links with the short names
    assert os.path.realpath(os.path.join(folder, "locres.mrc")) == os.path.realpath(paths["locres"])
    assert os.path.exists(os.path.join(folder, "locres_filtered.mrc"))
    # valid STAR: summary table + one FSC table per point, RELION names
    blocks = read_star(paths["fscs"])
    names = list(blocks)
    summary = blocks["locres_points"]
    assert names[0] == "locres_points"
    assert len(names) == 1 + len(summary)
    first = summary.iloc[0]
    expected = point_table_name((int(first["rlnCoordinateX"]), int(first["rlnCoordinateY"]),
                                      int(first["rlnCoordinateZ"])))
    assert names[1] == expected
    table = blocks[expected]
    assert len(table) == BOX // 2 + 1
    assert list(table.columns)[:3] == ["rlnSpectralIndex", "rlnResolution", "rlnAngstromResolution"]
    assert "rlnFourierShellCorrelationCorrected" in table.columns
    assert np.all((summary["rlnAngstromResolution"] >= 2 * ANGPIX - 1e-4) &
                  (summary["rlnAngstromResolution"] <= 50.0))
    script = open(paths["chimerax"]).read()
    assert "open relion_locres_filtered.mrc" in script and "open relion_locres.mrc" in script
    assert "color sample #1 map #2 palette" in script


def test_mtf_changes_only_the_filtered_map(maps, tmp_path):
    a = str(tmp_path / "a" / "relion")
    b = str(tmp_path / "b" / "relion")
    assert _run(["--i", maps["half1"], "--o", a] + ARGS) == 0
    assert _run(["--i", maps["half1"], "--o", b, "--mtf", maps["mtf"]] + ARGS) == 0
    la, lb = read_mrc(a + "_locres.mrc")[0], read_mrc(b + "_locres.mrc")[0]
    fa, fb = read_mrc(a + "_locres_filtered.mrc")[0], read_mrc(b + "_locres_filtered.mrc")[0]
    np.testing.assert_array_equal(la, lb)                 # the MTF only sharpens the filtered map
    assert np.std(fb) > np.std(fa)                         # dividing by MTF < 1 boosts high frequencies


def test_real_mtf_file(maps, tmp_path):
    data = os.environ.get("POLISHPLUGIN_TEST_DATA")
    if not data:
        pytest.skip("POLISHPLUGIN_TEST_DATA unset")
    mtf = os.path.join(data, "mtf", "mtf_k2_200kV.star")
    out = str(tmp_path / "relion")
    assert _run(["--i", maps["half1"], "--o", out, "--mtf", mtf, "--mtf_angpix", "0.885"] + ARGS) == 0
    assert os.path.exists(out + "_locres_filtered.mrc")


def test_exact_mode_runs(maps, tmp_path):
    out = str(tmp_path / "relion")
    assert _run(["--i", maps["half1"], "--o", out, "--mode", "exact", "--locres_sampling", "20"]) == 0
    assert read_mrc(out + "_locres.mrc")[0].max() > 0


def _mpirun():
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    return shutil.which("mpirun") or (beside if os.path.exists(beside) else None)


@pytest.mark.skipif(_mpirun() is None, reason="no mpirun")
def test_mpi_matches_single_process(maps, tmp_path):
    single = str(tmp_path / "single" / "relion")
    assert _run(["--i", maps["half1"], "--o", single] + ARGS) == 0
    multi = str(tmp_path / "multi" / "relion")
    exe = os.path.join(os.path.dirname(sys.executable), "polishplugin")
    cmd = [_mpirun(), "--allow-run-as-root", "--oversubscribe", "-np", "2", exe, "local_resolution",
           "--i", maps["half1"], "--o", multi] + ARGS
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(read_mrc(multi + "_locres.mrc")[0], read_mrc(single + "_locres.mrc")[0],
                               rtol=1e-5)
    np.testing.assert_allclose(read_mrc(multi + "_locres_filtered.mrc")[0],
                               read_mrc(single + "_locres_filtered.mrc")[0], rtol=1e-4, atol=1e-6)
    assert len(read_star(multi + "_locres_fscs.star")) == len(read_star(single + "_locres_fscs.star"))


# ------------------------------------------------------------------------------------------ bad input

def _bad(maps, tmp_path, argv, capsys, *fragments):
    out = str(tmp_path / "bad" / "relion")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    marker = out + "_locres.mrc"
    with open(marker, "w") as fh:
        fh.write("earlier result")
    assert _run(argv + ["--o", out]) == 1
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert open(marker).read() == "earlier result"          # earlier results untouched


def test_bad_shapes(maps, tmp_path, capsys):
    other = str(tmp_path / "other_half2.mrc")
    write_mrc(other, np.zeros((BOX, BOX, BOX - 2), np.float32), ANGPIX)
    _bad(maps, tmp_path, ["--i", maps["half1"], "--i2", other], capsys, other, "different shapes")


def test_bad_pixel_sizes(maps, tmp_path, capsys):
    other = str(tmp_path / "other_half2.mrc")
    write_mrc(other, read_mrc(maps["half2"])[0], 2.0)
    _bad(maps, tmp_path, ["--i", maps["half1"], "--i2", other], capsys, other, "pixel sizes")


def test_bad_mask_range_and_shape(maps, tmp_path, capsys):
    mask = str(tmp_path / "bad_mask.mrc")
    write_mrc(mask, np.full((BOX,) * 3, 1.5, np.float32), ANGPIX)
    _bad(maps, tmp_path, ["--i", maps["half1"], "--mask", mask] + ARGS, capsys, mask, "outside [0, 1]")
    small = str(tmp_path / "small_mask.mrc")
    write_mrc(small, np.ones((BOX // 2,) * 3, np.float32), ANGPIX)
    _bad(maps, tmp_path, ["--i", maps["half1"], "--mask", small] + ARGS, capsys, small, "shape")


def test_nan_map(maps, tmp_path, capsys):
    h1 = read_mrc(maps["half1"])[0]
    h1[3, 4, 5] = np.nan
    half1 = str(tmp_path / "nan_half1.mrc")
    write_mrc(half1, h1, ANGPIX)
    _bad(maps, tmp_path, ["--i", half1, "--i2", maps["half2"]], capsys, half1, "NaN")


def test_sampling_larger_than_box(maps, tmp_path, capsys):
    _bad(maps, tmp_path, ["--i", maps["half1"], "--locres_sampling", "100"], capsys,
         maps["half1"], "larger than the box")


def test_no_half1_in_name_and_bad_mtf(maps, tmp_path, capsys):
    renamed = str(tmp_path / "map_a.mrc")
    shutil.copy(maps["half1"], renamed)
    _bad(maps, tmp_path, ["--i", renamed], capsys, renamed, "half1")
    mtf = str(tmp_path / "bad_mtf.star")
    with open(mtf, "w") as fh:
        fh.write("data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n0.0 1.0\n0.25 0.0\n0.5 0.3\n")
    _bad(maps, tmp_path, ["--i", maps["half1"], "--mtf", mtf] + ARGS, capsys, mtf)
