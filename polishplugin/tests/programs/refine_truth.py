"""A simulated project's true poses for refine3d tests and benchmarks: perturb them, compare with them,
reconstruct with them.

``polishplugin simulate`` writes the true orientations in ``Refine3D/job021/run_data.star`` (the
"previous refine") and each particle's true offset as minus its mean local displacement
(``ground_truth/truth.npz``, ``local_tracks_a``): the extracted image shows the particle at the mean of
its track.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polishplugin.io import labels as L
from polishplugin.io.particles import ParticleTable, read_particles
from polishplugin.io.star import read_star, write_star
from polishplugin.core.geometry import euler_to_matrix, matrix_to_euler, rotation_about, symmetry_matrices
from polishplugin.core.refine.schedule import symmetry_aware_angle_deg

__all__ = ["project_truth", "perturb_project_poses", "pose_errors", "refine_arguments", "true_pose_half_maps",
           "reconstruct_halves"]

PREVIOUS_REFINE = Path("Refine3D/job021")


def project_truth(project: Path, sym: str = "D2") -> dict:
    """True rotations, offsets (px), half sets and geometry of a simulated project."""
    project = Path(project)
    table = read_particles(project / PREVIOUS_REFINE / "run_data.star")
    angpix, box = float(table.pixel_sizes_a()[0]), int(table.box_sizes_px()[0])
    ang = table.angles_deg()
    tracks = np.load(project / "ground_truth" / "truth.npz", allow_pickle=True)["local_tracks_a"]
    return {"star": project / PREVIOUS_REFINE / "run_data.star", "table": table, "angpix": angpix, "box": box,
            "rotations": euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2]), "offsets_px": -tracks.mean(1) / angpix,
            "halves": table.half_sets(), "sym": sym}


def perturb_project_poses(project: Path, truth: dict, out_star: Path, degrees: float, pixels: float,
                          seed: int = 5) -> tuple[float, float]:
    """Write ``out_star``: every true pose rotated by ``degrees`` about a random axis, every offset moved
    by up to ``pixels`` in x and y (uniform); returns the start's median angle and offset errors."""
    rng = np.random.default_rng(seed)
    stars = read_star(truth["star"])
    part = stars["particles"].copy()
    n = len(part)
    rot = np.stack([truth["rotations"][i] @ rotation_about(rng.normal(size=3), degrees) for i in range(n)])
    e = np.column_stack(matrix_to_euler(rot))
    part[L.ANGLE_ROT], part[L.ANGLE_TILT], part[L.ANGLE_PSI] = e[:, 0], e[:, 1], e[:, 2]
    off = truth["offsets_px"] + rng.uniform(-pixels, pixels, (n, 2))
    part[L.ORIGIN_X_ANGST], part[L.ORIGIN_Y_ANGST] = off[:, 0] * truth["angpix"], off[:, 1] * truth["angpix"]
    stars["particles"] = part
    # image names stay relative to the project: the perturbed STAR file lives in it
    write_star(Path(out_star), stars)
    ang_err = symmetry_aware_angle_deg(rot, truth["rotations"], symmetry_matrices(truth["sym"]))
    return float(np.median(ang_err)), float(np.median(np.linalg.norm(off - truth["offsets_px"], axis=1)))


def pose_errors(table: ParticleTable, truth: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per particle: symmetry-aware angle error (deg), offset error (px), rlnMaxValueProbDistribution."""
    a = table.angles_deg()
    err = symmetry_aware_angle_deg(euler_to_matrix(a[:, 0], a[:, 1], a[:, 2]), truth["rotations"],
                                   symmetry_matrices(truth["sym"]))
    oerr = np.linalg.norm(table.origins_px() - truth["offsets_px"], axis=1)
    return err, oerr, table.particles[L.MAX_VALUE_PROB_DISTRIBUTION].to_numpy(float)


def refine_arguments(project: Path, star: Path, out: Path) -> list[str]:
    """refine3d's command line with the tutorial's step-27 values (absolute paths)."""
    project = Path(project)
    return ["--i", str(star), "--o", str(out), "--ref", str(project / PREVIOUS_REFINE / "run_class001.mrc"),
            "--solvent_mask", str(project / "MaskCreate" / "job022" / "mask.mrc"), "--ini_high", "50",
            "--sym", "D2", "--ctf", "--ctf_corrected_ref", "--particle_diameter", "100", "--zero_mask",
            "--flatten_solvent", "--solvent_correct_fsc", "--healpix_order", "2", "--auto_local_healpix_order", "4",
            "--offset_range", "5", "--offset_step", "1", "--low_resol_join_halves", "40", "--norm", "--scale",
            "--random_seed", "1"]


def true_pose_half_maps(project: Path, truth: dict) -> tuple[np.ndarray, np.ndarray]:
    """Unregularised half maps from the particles with their true poses, offsets and CTFs."""
    from polishplugin.core.ctf import ctf_rfft_stack
    from polishplugin.io.refine import read_particle_images

    table, box = truth["table"], truth["box"]
    images = read_particle_images(table, np.arange(len(table)), box)
    ctf = ctf_rfft_stack(table.ctf_params(), box, truth["angpix"])
    return reconstruct_halves(images, ctf, truth["rotations"], truth["offsets_px"], truth["halves"], truth["sym"])


def reconstruct_halves(images: np.ndarray, ctf: np.ndarray, rotations: np.ndarray, offsets_px: np.ndarray,
                       halves: np.ndarray, sym: str) -> tuple[np.ndarray, np.ndarray]:
    """Unregularised half maps of ``images`` (n, box, box) with given poses, offsets and rfft CTFs."""
    from polishplugin.core.refine.estep import prepare_images
    from polishplugin.core.refine.fourier3d import Backprojector, grid_to_map, pixel_list, regularised_grid

    box = images.shape[-1]
    x, _ = prepare_images(images, np.zeros((len(images), 2)), 0.4 * box)
    iy, ix, k = pixel_list(box, box / 2)
    phase = np.exp(-2j * np.pi * (offsets_px @ k.T) / box)  # shift each image by its offset
    maps = []
    for h in (1, 2):
        sel = halves == h
        bp = Backprojector(box)
        c = ctf[sel][:, iy, ix]
        bp.insert(x[sel][:, iy, ix] * phase[sel] * c, c * c, rotations[sel], k)
        d, w = bp.finalised(symmetry_matrices(sym))
        maps.append(grid_to_map(regularised_grid(d, w, None, 2, box), box))
    return maps[0], maps[1]
