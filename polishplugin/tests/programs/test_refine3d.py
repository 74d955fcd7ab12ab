"""``polishplugin refine3d`` on small synthetic particle sets with known poses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polishplugin.convert import labels as L
from polishplugin.convert.mrc import read_mrc, write_mrc
from polishplugin.convert.particles import read_particles
from polishplugin.convert.star import read_star, write_star
from polishplugin.core.filters import raised_cosine_sphere
from polishplugin.core.fsc import fsc, resolution_shell
from polishplugin.core.geometry import euler_to_matrix, rotation_about, symmetry_matrices
from polishplugin.core.refine.schedule import symmetry_aware_angle_deg
from polishplugin.core.refine.synthetic import blob_phantom, simulate_particles
from polishplugin.programs import refine3d
from polishplugin.programs._cli import ProgramError, build_parser


def write_synthetic_project(folder: Path, box: int = 32, angpix: float = 4.0, n: int = 60, sym: str = "D2",
                            snr: float = 0.1, perturb_deg: float = 3.0, perturb_px: float = 1.0, seed: int = 0,
                            volume: np.ndarray | None = None, half2_volume: np.ndarray | None = None,
                            with_ctf: bool = True) -> dict:
    """Write particles (stack + STAR with perturbed poses), the true map, a reference and a mask."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 100)
    vol = blob_phantom(box, sym, seed=seed) if volume is None else volume
    sim = simulate_particles(vol, n, angpix, snr=snr, seed=seed)
    halves = np.arange(n) % 2 + 1
    images = sim.images
    if half2_volume is not None:
        sim2 = simulate_particles(half2_volume, n, angpix, snr=snr, seed=seed)
        images = np.where((halves == 2)[:, None, None], sim2.images, images)
    write_mrc(folder / "particles.mrcs", images, angpix)
    start = sim.angles_deg.copy()
    mats = euler_to_matrix(start[:, 0], start[:, 1], start[:, 2])
    from polishplugin.core.geometry import matrix_to_euler
    for i in range(n):  # rotate by perturb_deg about a random axis
        mats[i] = mats[i] @ rotation_about(rng.normal(size=3), perturb_deg)
    start = np.column_stack(matrix_to_euler(mats))
    origins = sim.origins_px + rng.uniform(-perturb_px, perturb_px, (n, 2))
    optics = pd.DataFrame({L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1],
                           L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [angpix], L.VOLTAGE: [300.0],
                           L.SPHERICAL_ABERRATION: [2.7], L.AMPLITUDE_CONTRAST: [0.1],
                           L.IMAGE_PIXEL_SIZE: [angpix], L.IMAGE_SIZE: [box], L.IMAGE_DIMENSIONALITY: [2],
                           L.CTF_DATA_ARE_CTF_PREMULTIPLIED: [0]})
    parts = {L.IMAGE_NAME: [f"{i + 1:06d}@particles.mrcs" for i in range(n)],
             L.MICROGRAPH_NAME: [f"mic{i // 10:03d}.mrc" for i in range(n)], L.OPTICS_GROUP: np.ones(n, int),
             L.ANGLE_ROT: start[:, 0], L.ANGLE_TILT: start[:, 1], L.ANGLE_PSI: start[:, 2],
             L.ORIGIN_X_ANGST: origins[:, 0] * angpix, L.ORIGIN_Y_ANGST: origins[:, 1] * angpix,
             L.RANDOM_SUBSET: halves}
    if with_ctf:
        parts.update({L.DEFOCUS_U: [p.defocus_u_a for p in sim.ctf], L.DEFOCUS_V: [p.defocus_v_a for p in sim.ctf],
                      L.DEFOCUS_ANGLE: [p.defocus_angle_deg for p in sim.ctf]})
    write_star(folder / "particles.star", {"optics": optics, "particles": pd.DataFrame(parts)})
    write_mrc(folder / "true.mrc", vol, angpix)
    write_mrc(folder / "ref.mrc", vol, angpix)
    mask = raised_cosine_sphere((box,) * 3, box / 2 - 6, 3)
    write_mrc(folder / "mask.mrc", mask.astype(np.float32), angpix)
    return {"dir": folder, "star": folder / "particles.star", "ref": folder / "ref.mrc", "mask": folder / "mask.mrc",
            "true": vol, "angles": sim.angles_deg, "origins": sim.origins_px, "box": box, "angpix": angpix,
            "sym": sym, "halves": halves}


def run_refine(proj: dict, out: Path, extra: list[str] = (), sym: str | None = None) -> int:
    argv = ["--i", str(proj["star"]), "--o", str(out), "--ref", str(proj["ref"]), "--ini_high", "30",
            "--sym", sym or proj["sym"], "--ctf", "--particle_diameter", str(0.8 * proj["box"] * proj["angpix"]),
            "--zero_mask", "--healpix_order", "2", "--auto_local_healpix_order", "4", "--offset_range", "3",
            "--offset_step", "2", "--random_seed", "1", *extra]
    return refine3d.main(build_parser("refine3d").parse_args(argv))
