"""Training and polishing over optics groups of different pixel sizes and boxes in one run (issue 20;
RELION fails there, 3dem/relion#658).

``polishplugin simulate --optics_groups 2``: group 1 has box 48 at 2.5 Å (the reference's), group 2 box 60
at 2.0 Å over the same extent; movies alternate between the groups.  Polishing predicts group 2's particles
from the 48-px reference at their own pixel size; training computes every micrograph's frequencies in its own
pixels and fits groups of micrographs of one optics group jointly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polishplugin.io import labels as L
from polishplugin.io.polish import read_opt_params, read_tracks
from polishplugin.io.star import read_star
from polishplugin.programs import motion_refine, motion_train
from polishplugin.programs._cli import ProgramError, build_parser

OVERRIDES = dict(contrast=0.5, n_movies=6, particles_per_movie=30, optics_groups=2)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from polishplugin.tests.fixtures_simulate import simulated_project

    return simulated_project(tmp_path_factory, "tiny", 1, **OVERRIDES)


def _common(sim) -> list[str]:
    return ["--i", str(sim["particles"]), "--f", str(sim["postprocess"]), "--corr_mic",
            str(sim["corrected_micrographs"])]


def _in_project(sim, module, name, argv):
    cwd = os.getcwd()
    os.chdir(sim["project_dir"])
    try:
        return module.main(build_parser(name).parse_args(argv))
    finally:
        os.chdir(cwd)


def _train(sim, out: Path, group: int) -> list[str]:
    assert _in_project(sim, motion_train, "motion_train", [*_common(sim), "--o", f"{out}/", "--min_p", "10000",
                                                           "--par_iters", "10", "--par_group", str(group)]) == 0
    # RELION's names: opt_params_all_groups.txt, or opt_params_group_<name>.txt for one group (and no other)
    relion = out / ("opt_params_all_groups.txt" if group < 0 else f"opt_params_group_opticsGroup{group}.txt")
    assert sorted(f.name for f in out.glob("opt_params*")) == sorted([relion.name, "opt_params.txt"])
    p = read_opt_params(relion)
    assert read_opt_params(out / "opt_params.txt") == p
    return ["--s_vel", str(p.s_vel), "--s_div", str(p.s_div), "--s_acc", str(p.s_acc)]


def _polish(sim, out: Path, sigmas: list[str]) -> dict[int, float]:
    """Polish every micrograph; track RMS error (Å) per optics group."""
    assert _in_project(sim, motion_refine, "motion_refine", [*_common(sim), "--o", str(out), *sigmas]) == 0
    parts = read_star(sim["particles"])["particles"]
    truth = sim["truth_data"]
    err: dict[int, list] = {}
    for name in pd.unique(parts[L.MICROGRAPH_NAME]):
        rows = np.nonzero(parts[L.MICROGRAPH_NAME].to_numpy() == name)[0]
        group = int(parts[L.OPTICS_GROUP].iloc[rows[0]])
        fit_a = read_tracks(out / "Movies" / f"{Path(name).stem}_tracks.star", 1.0)  # Å
        err.setdefault(group, []).append(((fit_a - truth["tracks_a"][rows]) ** 2).sum(-1).ravel())
    return {g: float(np.sqrt(np.concatenate(e).mean())) for g, e in err.items()}


def test_simulated_optics_groups(sim):
    optics = read_star(sim["particles"])["optics"]
    assert list(optics[L.IMAGE_SIZE]) == [48, 60]
    np.testing.assert_allclose(optics[L.IMAGE_PIXEL_SIZE], [2.5, 2.0])
    parts = read_star(sim["particles"])["particles"]
    assert set(parts[L.OPTICS_GROUP]) == {1, 2}


def test_training_two_groups_in_one_run_is_as_good_as_alone(sim, tmp_path):
    """Sigmas trained on both groups at once polish each group's tracks within 10 % of the RMS reached with the
    sigmas trained on that group alone."""
    both = _polish(sim, tmp_path / "P_both", _train(sim, tmp_path / "T_both", -1))
    alone = {g: _polish(sim, tmp_path / f"P_{g}", _train(sim, tmp_path / f"T_{g}", g))[g] for g in (1, 2)}
    print(f"track RMS (Å) with sigmas trained on both groups {both}, on each group alone {alone}")
    for g in (1, 2):
        assert both[g] <= 1.10 * alone[g]


def test_shiny_particles_of_both_groups_at_the_reference_scale(sim, tmp_path):
    out = tmp_path / "Polish"
    planted = ["--s_vel", "0.4", "--s_div", "1155", "--s_acc", "2.7", "--combine_frames"]
    rms = _polish(sim, out, planted)
    shiny = read_star(out / "shiny.star")
    assert list(shiny["optics"][L.IMAGE_SIZE]) == [48, 48]  # RELION: shiny particles at the reference's scale
    np.testing.assert_allclose(shiny["optics"][L.IMAGE_PIXEL_SIZE], [2.5, 2.5])
    assert len(shiny["particles"]) == 180
    print(f"track RMS (Å) per optics group with the planted sigmas: {rms}")
    assert rms[2] <= 1.2 * rms[1]  # the rescaled 2.0 Å group is tracked at least as well as the reference's


def test_par_group_without_micrographs_is_an_error(sim, tmp_path):
    with pytest.raises(ProgramError, match="--par_group 5: no micrograph of .* is in optics group 5"):
        _train(sim, tmp_path / "T", 5)
