"""A very small synthetic polishing project (RELION file layout) with known tracks and per-frame B-factors.

Used by the polishing tests (engineer F2) so that they do not depend on the full simulator.  Movies are
MRC stacks with the particles drawn dark (RELION negates on load), pixel size ``angpix`` equal for movie,
particles and reference (binning 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polishplugin.convert import labels as L
from polishplugin.convert.mrc import write_mrc
from polishplugin.convert.star import write_star
from polishplugin.core.ctf import CtfParams, ctf_2d
from polishplugin.core.fourier import centre_shift_phase, frequency_grid, irfft
from polishplugin.core.geometry import euler_to_matrix
from polishplugin.core.projector import FourierProjector


def blob_volume(box: int, seed: int = 3, n_blobs: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = (np.indices((box,) * 3) - box // 2).astype(np.float64)
    vol = np.zeros((box,) * 3)
    for _ in range(n_blobs):
        c = rng.uniform(-box / 4, box / 4, 3)
        s = rng.uniform(0.45, 0.6)
        vol += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s))
    return vol.astype(np.float32)


def make_project(root: str | Path, n_mics: int = 2, n_per_mic: int = 8, n_frames: int = 8, box: int = 32,
                 angpix: float = 2.0, mic_size: int = 192, noise: float = 2.0, seed: int = 7,
                 motion_px: float = 1.5, local_px: float = 0.8) -> dict:
    """Write the project under ``root`` and return paths and ground truth.

    Ground truth: ``tracks_px`` (per micrograph, (n_p, n_f, 2) particle px, absolute incl. global drift),
    ``bfactors`` (n_f,) planted per-frame B-factors (A^2, <= 0), ``scales`` (n_f,).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "Movies").mkdir(parents=True, exist_ok=True)
    (root / "MotionCorr/job002/Movies").mkdir(parents=True, exist_ok=True)
    (root / "PostProcess/job010").mkdir(parents=True, exist_ok=True)
    vol = blob_volume(box, seed)
    half1 = vol + rng.normal(0, 0.02, vol.shape).astype(np.float32)
    half2 = vol + rng.normal(0, 0.02, vol.shape).astype(np.float32)
    write_mrc(root / "PostProcess/job010/half1.mrc", half1, angpix)
    write_mrc(root / "PostProcess/job010/half2.mrc", half2, angpix)
    write_mrc(root / "PostProcess/job010/mask.mrc", np.ones_like(vol), angpix)
    sh = box // 2 + 1
    # list block written by hand: convert.star pads long values without a separating space
    gen = "".join(f"_{k} {v}\n" for k, v in [
        (L.FINAL_RESOLUTION, 2 * angpix), (L.UNFILTERED_MAP_HALF1, "PostProcess/job010/half1.mrc"),
        (L.UNFILTERED_MAP_HALF2, "PostProcess/job010/half2.mrc"), (L.MASK_NAME, "PostProcess/job010/mask.mrc")])
    fsc_rows = "".join(f"{i} {1.0:.6f}\n" for i in range(sh))
    (root / "PostProcess/job010/postprocess.star").write_text(
        f"\n# version 50001\n\ndata_general\n\n{gen}\n\ndata_fsc\n\nloop_\n_{L.SPECTRAL_INDEX} #1\n"
        f"_{L.FOURIER_SHELL_CORRELATION_CORRECTED} #2\n{fsc_rows}\n")
    proj = FourierProjector(vol.astype(np.float64), pad=2)
    frames = np.arange(n_frames)
    bfac = -np.concatenate([[60.0], np.linspace(0, 12, n_frames - 1) ** 1.6 * 8])[:n_frames]
    bfac[1] = 0.0
    bfac = bfac - bfac.max()
    scales = np.exp(-0.02 * frames)
    dose = 2.0
    optics = pd.DataFrame({L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1],
                           L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [angpix], L.VOLTAGE: [300.0],
                           L.SPHERICAL_ABERRATION: [2.7], L.AMPLITUDE_CONTRAST: [0.1],
                           L.IMAGE_PIXEL_SIZE: [angpix], L.IMAGE_SIZE: [box], L.IMAGE_DIMENSIONALITY: [2]})
    mic_optics = optics[[L.OPTICS_GROUP_NAME, L.OPTICS_GROUP, L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, L.VOLTAGE,
                         L.SPHERICAL_ABERRATION, L.AMPLITUDE_CONTRAST]].copy()
    mic_optics[L.MICROGRAPH_PIXEL_SIZE] = angpix
    ky, kx = frequency_grid((box, box))
    k2 = (kx ** 2 + ky ** 2) / (box * angpix) ** 2
    rows, mic_rows, truth = [], [], []
    half = box // 2 + 20
    for m in range(n_mics):
        name = f"MotionCorr/job002/Movies/mic{m:03d}.mrc"
        # particle coordinates on a jittered grid
        g = int(np.ceil(np.sqrt(n_per_mic)))
        step = (mic_size - 2 * half) / max(g - 1, 1)
        coords = np.array([[half + (i % g) * step, half + (i // g) * step] for i in range(n_per_mic)])
        coords = np.round(coords + rng.uniform(-3, 3, coords.shape))
        # tracks: global drift + smooth local random walk
        glob = np.cumsum(np.vstack([[0, 0], rng.normal(0, motion_px, (n_frames - 1, 2)) + [0.8, -0.5]]), 0)
        loc = np.cumsum(np.concatenate([np.zeros((n_per_mic, 1, 2)),
                                        rng.normal(0, local_px, (n_per_mic, n_frames - 1, 2))], 1), 1)
        tracks = glob[None] + loc
        truth.append(tracks)
        angles = rng.uniform([-180, 0, -180], [180, 180, 180], (n_per_mic, 3))
        origins = rng.uniform(-2, 2, (n_per_mic, 2)) * angpix  # Å
        dfu = rng.uniform(8000, 15000, n_per_mic)
        rots = euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2]).reshape(-1, 3, 3)
        projs = proj.project(rots)
        ctfs = np.stack([ctf_2d(CtfParams(d, d, 0.0, 300.0, 2.7, 0.1), box, angpix) for d in dfu])
        movie = np.zeros((n_frames, mic_size, mic_size), np.float32)
        for f in range(n_frames):
            damp = scales[f] * np.exp(bfac[f] / 4 * k2)
            frame = np.zeros((mic_size, mic_size))
            for p in range(n_per_mic):
                pos = coords[p] + tracks[p, f]  # where the particle centre is in frame f
                ipos = np.floor(pos).astype(int)
                frac = pos - ipos
                # image of the particle (centre at box//2) shifted by -origin + frac
                img_f = projs[p] * ctfs[p] * damp * centre_shift_phase((box, box), frac - origins[p] / angpix)
                img = irfft(img_f, (box, box))
                x0, y0 = ipos - box // 2
                frame[y0:y0 + box, x0:x0 + box] += img
            movie[f] = -(frame + rng.normal(0, noise, frame.shape)) + 10.0
        write_mrc(root / f"Movies/mic{m:03d}.mrcs", movie, angpix)
        gshift = -glob  # RELION: initial track = -shift (movie px == particle px here)
        gen = "".join(f"_{k} {v}\n" for k, v in [
            (L.IMAGE_SIZE_X, mic_size), (L.IMAGE_SIZE_Y, mic_size), (L.IMAGE_SIZE_Z, n_frames),
            (L.MICROGRAPH_MOVIE_NAME, f"Movies/mic{m:03d}.mrcs"), (L.MICROGRAPH_BINNING, 1.0),
            (L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, angpix), (L.MICROGRAPH_DOSE_RATE, dose),
            (L.MICROGRAPH_PRE_EXPOSURE, 0.0), (L.VOLTAGE, 300.0), (L.MICROGRAPH_START_FRAME, 1),
            (L.MOTION_MODEL_VERSION, 0)])
        shifts = "".join(f"{f + 1} {gshift[f, 0]:.6f} {gshift[f, 1]:.6f}\n" for f in range(n_frames))
        (root / f"MotionCorr/job002/Movies/mic{m:03d}.star").write_text(
            f"\n# version 50001\n\ndata_general\n\n{gen}\n\ndata_global_shift\n\nloop_\n"
            f"_{L.MICROGRAPH_FRAME_NUMBER} #1\n_{L.MICROGRAPH_SHIFT_X} #2\n_{L.MICROGRAPH_SHIFT_Y} #3\n{shifts}\n")
        mic_rows.append({L.MICROGRAPH_NAME: name, L.MICROGRAPH_METADATA: f"MotionCorr/job002/Movies/mic{m:03d}.star",
                         L.OPTICS_GROUP: 1})
        for p in range(n_per_mic):
            rows.append({L.COORDINATE_X: coords[p, 0], L.COORDINATE_Y: coords[p, 1],
                         L.IMAGE_NAME: f"{p + 1:06d}@Extract/job018/Movies/mic{m:03d}.mrcs",
                         L.MICROGRAPH_NAME: name, L.OPTICS_GROUP: 1, L.DEFOCUS_U: dfu[p], L.DEFOCUS_V: dfu[p],
                         L.DEFOCUS_ANGLE: 0.0, L.ANGLE_ROT: angles[p, 0], L.ANGLE_TILT: angles[p, 1],
                         L.ANGLE_PSI: angles[p, 2], L.ORIGIN_X_ANGST: origins[p, 0], L.ORIGIN_Y_ANGST: origins[p, 1],
                         L.RANDOM_SUBSET: 1 + (len(rows) % 2)})
    write_star(root / "particles.star", {"optics": optics, "particles": pd.DataFrame(rows)})
    write_star(root / "MotionCorr/job002/corrected_micrographs.star",
               {"optics": mic_optics, "micrographs": pd.DataFrame(mic_rows)})
    return {"root": root, "particles": root / "particles.star",
            "corr_mic": root / "MotionCorr/job002/corrected_micrographs.star",
            "postprocess": root / "PostProcess/job010/postprocess.star", "tracks_px": truth,
            "bfactors": bfac, "scales": scales, "volume": vol, "dose": dose, "angpix": angpix, "box": box}
