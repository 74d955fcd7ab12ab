"""3D auto-refine files (io/refine.py): model, sampling, optimiser and data STAR files round-trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from polishplugin.io import labels as L
from polishplugin.io.mrc import write_mrc
from polishplugin.io.particles import ParticleTable, read_particles, write_particles
from polishplugin.io.refine import (OPTIMISER_VERSION, OptimiserState, RefinedParticles, RefineModel, RefineSampling,
                                    norm_corrections, particle_groups, read_model, read_optimiser,
                                    read_particle_images, read_sampling, refined_particles, write_model,
                                    write_optimiser, write_sampling)
from polishplugin.io.star import StarError, read_star, write_star


def _model() -> RefineModel:
    rng = np.random.default_rng(0)
    n = 11
    return RefineModel(20, 5.0, 12.5, 16, np.linspace(1, 0, n), rng.uniform(0, 9, n), rng.uniform(0.1, 2, n),
                       pad=2, tau2_fudge=1.5, avg_norm=0.875, sigma_offset_a=3.25, local=True, local_sigma_deg=3.75,
                       loglik=-1234.5, ave_pmax=0.625, healpix_order=3, offset_range_px=2.5, offset_step_px=1.25,
                       reference_image="Refine3D/job027/run_it003_half1_class001.mrc", acc_rot_deg=2.5,
                       acc_trans_a=1.75, group_names=["mic001.mrc", "mic002.mrc"], group_counts=np.array([7, 9]),
                       group_scales=np.array([0.9375, 1.046875]))


def test_model_round_trip(tmp_path):
    m = _model()
    path = tmp_path / "run_model.star"
    write_model(path, m)
    blocks = read_star(path)
    assert list(blocks) == ["model_general", "model_classes", "model_class_1", "model_groups", "model_optics_group_1"]
    assert blocks["model_class_1"][L.ANGSTROM_RESOLUTION].iloc[2] == pytest.approx(50.0)
    back = read_model(path)
    for f in dataclasses.fields(RefineModel):
        a, b = getattr(m, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(b, a, atol=1e-6, err_msg=f.name)
        elif isinstance(a, float):
            assert b == pytest.approx(a), f.name
        else:
            assert b == a, f.name
    np.testing.assert_array_equal(back.spectral_index, np.arange(11))


def test_model_minimal_file_and_missing_class(tmp_path):
    """A model with only the FSC of class 1 (as other programs write it) reads with defaults."""
    path = tmp_path / "run_model.star"
    shells = np.arange(5)
    write_star(path, {
        "model_general": {L.CURRENT_RESOLUTION: 7.5, L.CURRENT_IMAGE_SIZE: 8},
        "model_class_1": pd.DataFrame({L.SPECTRAL_INDEX: shells, L.RESOLUTION: shells / 20.0,
                                       L.GOLD_STANDARD_FSC: [1.0, 0.9, 0.5, 0.1, 0.0]})})
    m = read_model(path)
    assert m.current_resolution_a == 7.5 and m.box == 8 and m.ssnr is None and m.sigma2 is None
    np.testing.assert_allclose(m.fsc, [1.0, 0.9, 0.5, 0.1, 0.0])
    np.testing.assert_allclose(m.resolution_per_a, shells / 20.0)
    with pytest.raises(StarError, match="model_class_2"):
        read_model(path, class_number=2)
    write_star(path, {"model_general": {L.CURRENT_RESOLUTION: 7.5},
                      "model_class_1": pd.DataFrame({L.SPECTRAL_INDEX: shells, L.RESOLUTION: shells / 20.0})})
    with pytest.raises(StarError, match=L.GOLD_STANDARD_FSC):
        read_model(path)


def test_sampling_round_trip(tmp_path):
    s = RefineSampling(2, 15.0, 3.0, 2.0, -0.25, 0.5, "d2", False, 0.0,
                       np.array([[0.0, 10.0], [45.0, 60.0], [-90.0, 120.0]]))
    path = tmp_path / "run_sampling.star"
    write_sampling(path, s)
    back = read_sampling(path)
    assert back.symmetry == "D2"
    assert dataclasses.replace(back, symmetry="d2", directions_deg=None) == dataclasses.replace(s, directions_deg=None)
    np.testing.assert_allclose(back.directions_deg, s.directions_deg)
    write_star(path, {"sampling_general": {L.HEALPIX_ORDER: 2}})
    with pytest.raises(StarError, match="sampling_directions"):
        read_sampling(path)


def _optimiser_state(n: int = 4) -> OptimiserState:
    rng = np.random.default_rng(1)
    options = {"o": "Refine3D/job027/run", "iter": 999, "low_resol_join_halves": 40.0, "particle_diameter": 200.0,
               "ctf": True, "auto_local_healpix_order": 4, "sym": "D2", "norm": True}
    schedule = {"healpix_order": 3, "offset_range_px": 2.5, "offset_step_px": 1.25, "auto_local_order": 4,
                "oversampling": 1, "local": False, "local_sigma_deg": None, "nr_iter_wo_resol_gain": 1,
                "nr_iter_wo_large_changes": 0, "smallest_angle_change": 1.5, "smallest_offset_change": 0.25,
                "best_resolution_inv_a": 0.1, "has_fine_enough_sampling": False}
    return OptimiserState(options, 17, 2, False, 16, 12.5, 3.1, 0.7, 3.25, 0.875, schedule,
                          rng.normal(size=(n, 3, 3)), rng.normal(size=(n, 2)), rng.uniform(0.1, 2, 11),
                          rng.uniform(0.5, 2, n), np.array([0.9, 1.1]), rng.uniform(0, 9, 11))


def test_optimiser_round_trip(tmp_path):
    s = _optimiser_state()
    it_root = str(tmp_path / "run_it002")
    refs = {h: np.full((8, 8, 8), h, np.float32) for h in (1, 2)}
    for h in (1, 2):
        write_mrc(f"{it_root}_half{h}_class001.mrc", refs[h], 5.0)
    write_optimiser(it_root, s, 5.0)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary was renamed
    g = read_star(f"{it_root}_optimiser.star")["optimiser_general"].iloc[0]
    assert int(g[L.CURRENT_ITERATION]) == 2 and int(g[L.POLISH_OPTIMISER_VERSION]) == OPTIMISER_VERSION
    assert float(g[L.ACCURACY_TRANSLATIONS_ANGST]) == pytest.approx(3.5)
    back = read_optimiser(f"{it_root}_optimiser.star")
    for f in dataclasses.fields(OptimiserState):
        a, b = getattr(s, f.name), getattr(back, f.name)
        if f.name == "refs":
            assert all(np.array_equal(b[h], refs[h]) and b[h].dtype == np.float64 for h in (1, 2))
        elif isinstance(a, np.ndarray):
            assert np.array_equal(a, b), f.name  # exact: the arrays live in the .npz
        else:
            assert a == b, f.name


def test_optimiser_errors(tmp_path):
    with pytest.raises(StarError, match="run_it004_optimiser.star does not exist"):
        read_optimiser(tmp_path / "run_it004_optimiser.star")
    bad = tmp_path / "run_it001_optimiser.star"
    write_star(bad, {"optimiser_general": {L.CURRENT_ITERATION: 1}})
    with pytest.raises(StarError, match="cannot be read"):
        read_optimiser(bad)
    write_star(bad, {"optimiser_general": {L.POLISH_OPTIMISER_VERSION: OPTIMISER_VERSION - 1}})
    with pytest.raises(StarError, match="another version"):
        read_optimiser(bad)


def _table(tmp_path, n: int = 4, **extra) -> ParticleTable:
    optics = pd.DataFrame({L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1], L.VOLTAGE: [300.0],
                           L.SPHERICAL_ABERRATION: [2.7], L.AMPLITUDE_CONTRAST: [0.1], L.IMAGE_PIXEL_SIZE: [2.0],
                           L.IMAGE_SIZE: [8], L.IMAGE_DIMENSIONALITY: [2]})
    parts = pd.DataFrame({L.IMAGE_NAME: [f"{i + 1:06d}@stack.mrcs" for i in range(n)],
                          L.MICROGRAPH_NAME: ["b.mrc", "a.mrc", "b.mrc", "a.mrc"][:n], L.OPTICS_GROUP: [1] * n,
                          **extra})
    return ParticleTable(optics, parts, tmp_path / "particles.star", tmp_path)


def test_refined_particles_round_trip(tmp_path):
    table = _table(tmp_path)
    rng = np.random.default_rng(2)
    r = RefinedParticles(rng.uniform(-180, 180, (4, 3)), rng.uniform(-2, 2, (4, 2)), rng.uniform(0, 1, 4),
                         rng.uniform(-10, 0, 4), np.array([3, 1, 4, 1]), np.array([1, 2, 1, 2]),
                         np.array([1.0, 1.5, 0.5, 1.25]), np.array([1, 0, 1, 0]))
    path = tmp_path / "run_data.star"
    write_particles(path, refined_particles(table, r, 2.0))
    back = read_particles(path)
    assert list(back.particles[L.MICROGRAPH_NAME]) == list(table.particles[L.MICROGRAPH_NAME])  # input kept
    np.testing.assert_allclose(back.angles_deg(), r.angles_deg, atol=1e-5)
    np.testing.assert_allclose(back.origins_px(), r.offsets_px, atol=1e-5)
    p = back.particles
    np.testing.assert_allclose(p[L.MAX_VALUE_PROB_DISTRIBUTION], r.pmax, atol=1e-6)
    np.testing.assert_allclose(p[L.LOG_LIKELI_CONTRIBUTION], r.loglik, atol=1e-5)
    np.testing.assert_allclose(p[L.NORM_CORRECTION], r.norm)
    assert list(p[L.NR_OF_SIGNIFICANT_SAMPLES]) == [3, 1, 4, 1] and list(p[L.RANDOM_SUBSET]) == [1, 2, 1, 2]
    assert list(p[L.GROUP_NUMBER]) == [2, 1, 2, 1] and (p[L.CLASS_NUMBER] == 1).all()
    assert list(back.half_sets()) == [1, 2, 1, 2]
    # what refine3d reads back from it: groups (by rlnGroupNumber now) and norm corrections
    idx, names = particle_groups(back)
    assert list(idx) == [1, 0, 1, 0] and names == ["group_1", "group_2"]
    np.testing.assert_allclose(norm_corrections(back), r.norm)


def test_particle_groups_and_norms(tmp_path):
    idx, names = particle_groups(_table(tmp_path))  # one group per micrograph, in name order
    assert list(idx) == [1, 0, 1, 0] and names == ["a.mrc", "b.mrc"]
    idx, names = particle_groups(_table(tmp_path, **{L.GROUP_NUMBER: [10, 2, 10, 2]}))  # numeric order
    assert list(idx) == [1, 0, 1, 0] and names == ["group_2", "group_10"]
    assert (norm_corrections(_table(tmp_path)) == 1).all()
    with pytest.raises(StarError, match=f"particles.star: {L.NORM_CORRECTION} must be positive"):
        norm_corrections(_table(tmp_path, **{L.NORM_CORRECTION: [1.0, 0.0, 1.0, 1.0]}))


def test_read_particle_images(tmp_path):
    table = _table(tmp_path)
    with pytest.raises(StarError, match="image stack stack.mrcs does not exist"):
        read_particle_images(table, np.arange(4), 8)
    stack = np.arange(4 * 64, dtype=np.float32).reshape(4, 8, 8)
    write_mrc(tmp_path / "stack.mrcs", stack, 2.0)
    np.testing.assert_array_equal(read_particle_images(table, np.array([2, 0]), 8), stack[[2, 0]])
    stack[1, 3, 3] = np.nan
    write_mrc(tmp_path / "stack.mrcs", stack, 2.0)
    with pytest.raises(StarError, match=r"contains NaN or Inf values \(image 2"):
        read_particle_images(table, np.arange(4), 8)


def test_run_arguments_round_trip(tmp_path):
    from polishplugin.io.refine import read_run_arguments, write_run_arguments

    path = tmp_path / "refine3d_arguments.json"
    assert read_run_arguments(path) is None
    tokens = ["--i", "Runs/000012_Prot/extra/input particles.star", "--ini_high", "50", "--sigma_ang", "1.5"]
    write_run_arguments(path, tokens)
    assert read_run_arguments(path) == tokens
    path.write_text('{"not": "a list"}')
    with pytest.raises(StarError, match="does not hold a list"):
        read_run_arguments(path)
    path.write_text("[1, 2")
    with pytest.raises(StarError, match="cannot be read"):
        read_run_arguments(path)
