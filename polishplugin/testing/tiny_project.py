"""A tiny RELION-shaped project on disk for convert and protocol tests (a few kB, < 0.1 s).

Layout (paths inside STAR files relative to ``root``, as RELION writes them)::

    root/Movies/mic_001.mrcs ...                      3 movies, 4 frames of 32x32 px
    root/MotionCorr/job002/corrected_micrographs.star
    root/MotionCorr/job002/Movies/mic_001.star ...    per-movie STAR: shifts, 36 coefficients, hot pixels
    root/Extract/job010/Movies/mic_001.mrcs ...       particle stacks, 2 particles per micrograph, 16 px box
    root/Refine3D/job020/particles.star               optics + particles (poses, CTF, half sets)
    root/Refine3D/job020/run_half1_class001_unfil.mrc / half2, root/MaskCreate/job021/mask.mrc (16^3)
    root/PostProcess/job022/postprocess.star
    root/mtf_test.star
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polishplugin.io import labels as L
from polishplugin.io.movies import MicrographTable, MovieMetadata, write_corrected_micrographs, \
    write_movie_metadata
from polishplugin.io.mrc import write_mrc
from polishplugin.io.mtf import Mtf, write_mtf
from polishplugin.io.postprocess import PostprocessResult, write_postprocess
from polishplugin.io.particles import ParticleTable, write_particles

N_MOVIES = 3
N_FRAMES = 4
MOVIE_SIZE = 32
BOX = 16
PER_MIC = 2
ANGPIX = 2.0
MOVIE_ANGPIX = 1.0


def make_tiny_project(root: str | Path, seed: int = 7) -> dict:
    """Write the project under ``root``; return a dict of the main file paths and planted values."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    mic_rows, particle_rows, metas = [], [], []
    for m in range(1, N_MOVIES + 1):
        name = f"mic_{m:03d}"
        write_mrc(root / "Movies" / f"{name}.mrcs",
                  rng.normal(size=(N_FRAMES, MOVIE_SIZE, MOVIE_SIZE)).astype(np.float32), MOVIE_ANGPIX)
        shifts = np.cumsum(rng.normal(scale=0.5, size=(N_FRAMES, 2)), axis=0)
        shifts -= shifts[0]
        meta = MovieMetadata(width_px=MOVIE_SIZE, height_px=MOVIE_SIZE, n_frames=N_FRAMES,
                             movie_name=f"Movies/{name}.mrcs", global_shifts_px=shifts,
                             original_pixel_size_a=MOVIE_ANGPIX, dose_per_frame_e_per_a2=1.5,
                             voltage_kv=300.0, motion_model_version=1,
                             local_coeffs=rng.normal(scale=0.01, size=36),
                             hot_pixels_px=np.array([[3.0, 4.0], [10.0, 11.0]]))
        write_movie_metadata(root / "MotionCorr/job002/Movies" / f"{name}.star", meta)
        metas.append(meta)
        mic_name = f"MotionCorr/job002/Movies/{name}.mrc"
        mic_rows.append({L.MICROGRAPH_NAME: mic_name,
                         L.MICROGRAPH_METADATA: f"MotionCorr/job002/Movies/{name}.star",
                         L.OPTICS_GROUP: 1})
        stack = f"Extract/job010/Movies/{name}.mrcs"
        write_mrc(root / stack, rng.normal(size=(PER_MIC, BOX, BOX)).astype(np.float32), ANGPIX)
        for p in range(1, PER_MIC + 1):
            particle_rows.append({
                L.COORDINATE_X: float(rng.uniform(8, 24)), L.COORDINATE_Y: float(rng.uniform(8, 24)),
                L.IMAGE_NAME: f"{p:06d}@{stack}", L.MICROGRAPH_NAME: mic_name, L.OPTICS_GROUP: 1,
                L.DEFOCUS_U: float(rng.uniform(9000, 12000)), L.DEFOCUS_V: float(rng.uniform(9000, 12000)),
                L.DEFOCUS_ANGLE: float(rng.uniform(-90, 90)), L.PHASE_SHIFT: 0.0,
                L.ANGLE_ROT: float(rng.uniform(-180, 180)), L.ANGLE_TILT: float(rng.uniform(5, 175)),
                L.ANGLE_PSI: float(rng.uniform(-180, 180)),
                L.ORIGIN_X_ANGST: float(rng.uniform(-3, 3)), L.ORIGIN_Y_ANGST: float(rng.uniform(-3, 3)),
                L.RANDOM_SUBSET: 1 + (len(particle_rows) % 2), L.GROUP_NUMBER: 1,
                L.NORM_CORRECTION: 1.0})
    mic_optics = pd.DataFrame({L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1],
                               L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [MOVIE_ANGPIX], L.VOLTAGE: [300.0],
                               L.SPHERICAL_ABERRATION: [2.7], L.AMPLITUDE_CONTRAST: [0.1],
                               L.MICROGRAPH_PIXEL_SIZE: [MOVIE_ANGPIX]})
    mics_star = root / "MotionCorr/job002/corrected_micrographs.star"
    write_corrected_micrographs(mics_star, MicrographTable(mic_optics, pd.DataFrame(mic_rows)))
    optics = pd.DataFrame({L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1],
                           L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [MOVIE_ANGPIX], L.VOLTAGE: [300.0],
                           L.SPHERICAL_ABERRATION: [2.7], L.AMPLITUDE_CONTRAST: [0.1],
                           L.IMAGE_PIXEL_SIZE: [ANGPIX], L.IMAGE_SIZE: [BOX], L.IMAGE_DIMENSIONALITY: [2]})
    particles_star = root / "Refine3D/job020/particles.star"
    write_particles(particles_star, ParticleTable(optics, pd.DataFrame(particle_rows)))
    half1 = "Refine3D/job020/run_half1_class001_unfil.mrc"
    half2 = "Refine3D/job020/run_half2_class001_unfil.mrc"
    mask = "MaskCreate/job021/mask.mrc"
    for rel in (half1, half2):
        write_mrc(root / rel, rng.normal(size=(BOX, BOX, BOX)).astype(np.float32), ANGPIX)
    write_mrc(root / mask, np.ones((BOX, BOX, BOX), dtype=np.float32), ANGPIX)
    n_shells = BOX // 2 + 1
    shells = np.arange(n_shells)
    fsc = pd.DataFrame({L.SPECTRAL_INDEX: shells,
                        L.RESOLUTION: shells / (BOX * ANGPIX),
                        L.ANGSTROM_RESOLUTION: np.where(shells > 0, BOX * ANGPIX / np.maximum(shells, 1), 999.0),
                        L.FOURIER_SHELL_CORRELATION_CORRECTED: np.linspace(1.0, 0.0, n_shells)})
    post = PostprocessResult({L.FINAL_RESOLUTION: 8.0, L.BFACTOR_USED_FOR_SHARPENING: -50.0,
                              L.UNFILTERED_MAP_HALF1: half1, L.UNFILTERED_MAP_HALF2: half2,
                              L.MASK_NAME: mask, L.POSTPROCESSED_MAP: "PostProcess/job022/postprocess.mrc"},
                             fsc)
    post_star = root / "PostProcess/job022/postprocess.star"
    write_postprocess(post_star, post)
    mtf_star = root / "mtf_test.star"
    freq = np.linspace(0, 0.5, 11)
    write_mtf(mtf_star, Mtf(freq, 1.0 - 0.8 * freq, "mtf_test"))
    return {"root": root, "micrographs_star": mics_star, "particles_star": particles_star,
            "postprocess_star": post_star, "half1": root / half1, "half2": root / half2,
            "mask": root / mask, "mtf_star": mtf_star, "metas": metas,
            "n_particles": N_MOVIES * PER_MIC, "n_movies": N_MOVIES}
