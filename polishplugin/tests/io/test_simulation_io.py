"""Round trips of the simulator's own files: model atoms, truth.npz, truth.star; rectangular movie stacks."""

import mrcfile
import numpy as np
import pytest

from polishplugin.io.mrc import MrcStackWriter
from polishplugin.io.polish import FrameBfactors, read_bfactors
from polishplugin.io.simulation import (ModelError, read_model_atoms, read_truth, read_truth_star, truth_paths,
                                        write_truth, write_truth_star)

PARAMS = dict(s_vel=0.4, s_div=1155.0, s_acc=2.7, dose_per_frame=1.25, angpix=2.5, box=48, apply_mtf=True,
              preset="tiny", seed=3, model=None)


def test_truth_npz_round_trip(tmp_path):
    paths = truth_paths(tmp_path)
    arrays = {"tracks_a": np.arange(24.0).reshape(2, 6, 2), "micrograph_names": np.array(["a", "b"]),
              "final_resolution_a": 7.5}
    write_truth(paths["truth"], arrays, PARAMS)
    truth = read_truth(tmp_path)
    np.testing.assert_array_equal(truth["tracks_a"], arrays["tracks_a"])
    assert list(truth["micrograph_names"]) == ["a", "b"] and float(truth["final_resolution_a"]) == 7.5
    assert truth["params"] == PARAMS
    assert not list(paths["ground_truth_dir"].glob(".*tmp*"))
    with pytest.raises(ValueError, match="does not exist"):
        read_truth(tmp_path / "elsewhere")


def test_truth_star_round_trip(tmp_path):
    path = truth_paths(tmp_path)["truth_star"]
    table = FrameBfactors(np.arange(4), np.array([0.0, -5.0, -10.0, -15.0]), np.log([1.0, 0.9, 0.8, 0.7]))
    write_truth_star(path, PARAMS, "procedural D2 pseudo-protein", table)
    general, again = read_truth_star(path)
    assert general["rlnMotionParamSigmaDivergence"] == pytest.approx(1155.0)
    assert general["rlnMtfApplied"] == 1 and general["rlnSimulationPhantom"] == "procedural_D2_pseudo-protein"
    np.testing.assert_allclose(again.bfactor_a2, table.bfactor_a2, atol=1e-6)
    np.testing.assert_allclose(read_bfactors(path).scale, table.scale, atol=1e-5)   # bfactors.star layout


def test_model_atoms(tmp_path):
    pdb = tmp_path / "m.pdb"
    pdb.write_text("ATOM      1  CA  ALA A   1       1.000   0.000   0.000  1.00 20.00           C\n"
                   "ATOM      2  CA  ALA A   2      -1.000   2.000   0.000  1.00 20.00           C\nEND\n")
    xyz, w = read_model_atoms(pdb)
    np.testing.assert_allclose(xyz, [[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]], atol=1e-6)
    np.testing.assert_array_equal(w, [6, 6])
    with pytest.raises(ModelError, match="does not exist"):
        read_model_atoms(tmp_path / "absent.cif")


def test_rectangular_stack_writer(tmp_path):
    frames = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    with MrcStackWriter(tmp_path / "movie.mrcs", 3, (5, 7), 1.25) as writer:
        for f, frame in enumerate(frames):
            writer[f] = frame
    with mrcfile.open(tmp_path / "movie.mrcs", permissive=True) as m:
        np.testing.assert_array_equal(m.data, frames)
        assert float(m.voxel_size.x) == pytest.approx(1.25)
