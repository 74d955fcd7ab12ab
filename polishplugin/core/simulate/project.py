"""The simulated project's numerics: presets, the phantom, one micrograph's movie, the "previous refine"
half maps and the ground-truth arrays (no file I/O; ``polishplugin simulate`` writes the files).

One micrograph (:class:`MicrographSimulation`) draws, from its own generator seeded ``[seed, 1000 + m]``
and in this order: particle positions, poses, defocus, global drift and local tracks; then, frame by
frame, the detector noise.  The same seed gives identical numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from polishplugin.core import fourier
from polishplugin.core.ctf import CtfParams, ctf_2d
from polishplugin.core.fsc import SolventCorrectedFscs, resolution_shell, solvent_corrected_fscs
from polishplugin.core.geometry import euler_to_matrix
from polishplugin.core.simulate import frames, maps, phantom, tracks

if TYPE_CHECKING:
    from polishplugin.core.projector import FourierProjector
    from polishplugin.core.simulate.detector import DetectorModel

__all__ = ["PRESETS", "simulation_params", "optics_group_params", "movie_name", "Phantom", "contrast_scale",
           "MicrographSimulation", "MicrographTruth", "random_subsets", "previous_refine_half_maps", "half_map_fscs",
           "ground_truth_arrays"]

_COMMON = dict(
    seed=1, voltage=200.0, cs=1.4, q0=0.1, dose_per_frame=1.277,
    s_vel=0.4, s_div=1155.0, s_acc=2.7,            # planted motion sigmas (tutorial's trained values)
    global_drift_a=12.0,                           # length of the global drift path over the movie (Å)
    bfactor_slope=4.0,                             # planted B_f = -slope * accumulated dose (Å^2 per e/Å^2)
    scale_decay=0.0,                               # planted scale_f = exp(-decay * dose)
    defocus_min=8000.0, defocus_max=25000.0, astigmatism_max=600.0,
    atom_sigma_a=1.0, particle_radius_fraction=0.33, contrast=0.05, noise="poisson",
    symmetry="D2", model=None, float16=False, projection="analytic",
    half_maps="reconstruct",                       # or "noisy_truth" (expected map + noise, big presets)
    half_map_resolution_a=3.6,                     # target FSC=0.143 resolution for "noisy_truth"
    apply_mtf=False,                               # multiply the frames' signal by mtf_simulated.star
    min_distance_fraction=1.0,                     # particles at least this x diameter apart
    # the detector (issue 20): movie file format, gain, hot pixels, super-resolution, EER rendering
    movie_format="mrc",                            # mrc | mrc4 (4-bit, mode 101) | tiff (8-bit LZW) | eer
    gain=False,                                    # non-uniform sensitivity; the gain reference is its inverse
    hot_pixels=0,                                  # planted hot pixels (+ a dead column) and a defect file
    super_resolution=False,                        # movies at half the pixel size (binning 2)
    eer_upsampling=1,                              # EER rendering: 1 = detector size = simulation grid
    eer_grouping=0,                                # raw EER frames per fraction (0: enough to avoid pile-up)
    optics_groups=1,                               # K groups: group g has box + 12 g px over the same extent
)

#: The presets; every key can be overridden (``simulate_project(..., frames=8)`` or ``--frames 8``).
PRESETS: dict[str, dict] = {
    "tiny": dict(_COMMON, n_movies=3, frames=10, particles_per_movie=12, box=48, angpix=2.5,
                 movie_width=400, movie_height=400, dose_per_frame=2.0, bfactor_slope=5.0, contrast=0.12,
                 global_drift_a=10.0),
    # the demo's signal is designed for what it must show (bench/README.md, "demo design"): per-frame
    # B-factors fitted within ~15 Å^2 of the planted ramp and polishing's gain visible (contrast 0.06 and
    # 1.277 e/Å^2 per frame left the per-frame fit at noise and the gain at 0 shells)
    "demo": dict(_COMMON, n_movies=8, frames=16, particles_per_movie=36, box=64, angpix=2.0,
                 movie_width=768, movie_height=768, contrast=0.3, dose_per_frame=2.5,
                 apply_mtf=True),                  # the demo post-processes with the MTF: it must be in the data
    # the tutorial's particles are 256 px at 1.244 Å; its movies (3710x3838 at 0.885 Å) cover the same
    # area as 2640x2730 px at 1.244 Å, which we simulate directly (movie px = particle px).
    "tutorial": dict(_COMMON, n_movies=24, frames=24, particles_per_movie=190, box=256, angpix=1.244,
                     movie_width=2640, movie_height=2730, projection="projector", atom_sigma_a=1.2,
                     half_maps="noisy_truth", particle_radius_fraction=0.28, min_distance_fraction=0.85),
}


def simulation_params(preset: str, seed: int, overrides: dict) -> dict:
    """The preset's parameters with ``overrides`` (None values ignored), ``seed`` and ``preset``;
    ``ValueError`` (one sentence) for an unknown preset or parameter or impossible sizes."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    p = dict(PRESETS[preset])
    unknown = set(overrides) - set(p)
    if unknown:
        raise ValueError(f"unknown simulation parameter(s): {', '.join(sorted(unknown))}")
    p.update({k: v for k, v in overrides.items() if v is not None})
    p["seed"], p["preset"] = int(seed), preset
    if p["box"] % 2 or p["box"] < 16:
        raise ValueError(f"--box must be even and >= 16, got {p['box']}")
    if p["frames"] < 2 or p["n_movies"] < 1 or p["particles_per_movie"] < 1:
        raise ValueError("--frames must be >= 2 and --n_movies, --particles_per_movie >= 1")
    if p["optics_groups"] < 1:
        raise ValueError(f"--optics_groups must be >= 1, got {p['optics_groups']}")
    if p["optics_groups"] > 1 and p["gain"]:
        raise ValueError("--gain with --optics_groups > 1 is not simulated (one gain reference per detector)")
    if p["movie_format"] not in ("mrc", "mrc4", "tiff", "eer"):
        raise ValueError(f"--movie_format must be mrc, mrc4, tiff or eer, got {p['movie_format']!r}")
    if p["movie_format"] == "eer":
        if p["super_resolution"]:
            raise ValueError("--super_resolution does not apply to EER movies (use --eer_upsampling 2)")
        if p["eer_upsampling"] not in (1, 2):
            raise ValueError(f"--eer_upsampling must be 1 or 2, got {p['eer_upsampling']}")
        if p["eer_upsampling"] == 2 and (p["movie_width"] % 2 or p["movie_height"] % 2):
            raise ValueError("--eer_upsampling 2 needs an even movie width and height")
    return p


def optics_group_params(p: dict, group: int) -> dict:
    """The parameters of optics group ``group`` (0-based): box ``box + 12 group`` px over the same physical
    extent (pixel size ``angpix * box / box_g``), movies over the same area; group 0 is ``p`` itself."""
    if group == 0:
        return dict(p, optics_group=1)
    box = int(p["box"]) + 12 * group
    f = p["box"] / box
    even = lambda v: 2 * int(round(v / 2.0))  # noqa: E731
    return dict(p, box=box, angpix=p["angpix"] * f, movie_width=even(p["movie_width"] / f),
                movie_height=even(p["movie_height"] / f), optics_group=group + 1)


def movie_name(index: int) -> str:
    """Name (no extension) of micrograph ``index`` (0-based)."""
    return f"sim_{index + 1:05d}_frameImage"


# --------------------------------------------------------------------------------------------------
# phantom

class Phantom:
    """The true object: atoms (Å, weights), its map and ``project(rotations) -> rfft``.

    ``projection="analytic"`` projects the Gaussian atoms exactly while that stays cheap (atoms x box^2
    < 2e8); otherwise (or with ``"projector"``) the atoms are splatted into a map that a Fourier
    projector slices.
    """

    def __init__(self, xyz_a: np.ndarray, weights: np.ndarray, source: str, box: int, angpix: float,
                 sigma_a: float, projection: str = "analytic"):
        self.xyz, self.w, self.source = xyz_a, weights, source
        self.box, self.angpix, self.sigma = box, angpix, sigma_a
        self.method = projection
        if self.method == "analytic" and len(self.w) * box * box < 2e8:  # else too slow: splat + projector
            self.map = phantom.gaussian_atoms_map(self.xyz, self.w, box, angpix, self.sigma)
        else:
            self.method = "projector"
            self.map = phantom.splat_atoms_map(self.xyz, self.w, box, angpix, self.sigma)
        self._projector: FourierProjector | None = None
        self.radius_px = float(np.max(np.linalg.norm(self.xyz, axis=1))) / angpix + 2 * self.sigma / angpix

    @classmethod
    def pseudo_protein(cls, p: dict, rng: np.random.Generator) -> "Phantom":
        """The procedural pseudo-protein of the parameters ``p`` (draws its atoms from ``rng``)."""
        radius = p["particle_radius_fraction"] * p["box"] * p["angpix"]
        xyz, w = phantom.pseudo_protein_atoms(rng, radius, p["symmetry"])
        return cls(xyz, w, f"procedural {p['symmetry']} pseudo-protein", p["box"], p["angpix"],
                   p["atom_sigma_a"], p["projection"])

    def release(self) -> None:
        """Free the projector's padded transform (memory) once all particles are projected."""
        self._projector = None

    def project(self, rotations: np.ndarray) -> np.ndarray:
        if self.method == "analytic":
            return phantom.project_atoms_rfft(self.xyz, self.w, rotations, self.box, self.angpix, self.sigma)
        if self._projector is None:
            from polishplugin.core.projector import FourierProjector
            self._projector = FourierProjector(self.map, pad=2)
        return self._projector.project(rotations).astype(np.complex128)


def contrast_scale(ph: Phantom, contrast: float) -> float:
    """Scale making the rms of a projection (identity pose) over the box ``contrast`` of the mean intensity."""
    box = ph.box
    ref = fourier.irfft(ph.project(np.eye(3)[None]), (box, box), axes=(-2, -1))
    return contrast / float(np.sqrt(np.mean(ref ** 2)))


# --------------------------------------------------------------------------------------------------
# one micrograph

@dataclass
class MicrographTruth:
    """What one simulated micrograph planted: positions (px), poses, CTF, global drift and local
    tracks (px), the particles' tracks in Å (drift + local) and, for reconstructed half maps, the
    extracted particles."""

    name: str
    pos: np.ndarray
    angles: np.ndarray
    rots: np.ndarray
    ctf: CtfParams
    drift_px: np.ndarray
    local_px: np.ndarray
    tracks_a: np.ndarray
    particles: np.ndarray | None = None
    angpix: float = 0.0                  # pixel size of this micrograph's optics group (Å)
    optics_group: int = 1


class MicrographSimulation:
    """Movie ``index`` of the project: :meth:`frames` yields its frames (detector counts, one at a
    time), after which :meth:`corrected_sum` is the global-shift-corrected sum and :meth:`particles`
    the particles extracted from it (white protein, normalised background)."""

    def __init__(self, p: dict, ph: Phantom, index: int, bfactors: np.ndarray, scales: np.ndarray,
                 contrast: float, detector: "DetectorModel | None" = None):
        self.p, self.ph, self.bfactors, self.scales, self.contrast = p, ph, bfactors, scales, contrast
        self.detector = detector
        self.rng = rng = np.random.default_rng([p["seed"], 1000 + index])
        box, angpix, nf = p["box"], p["angpix"], p["frames"]
        self.width, self.height = p["movie_width"], p["movie_height"]
        self.name = movie_name(index)
        min_dist = max(p["min_distance_fraction"] * 2 * ph.radius_px, 0.5 * box)
        self.pos = tracks.random_positions(rng, p["particles_per_movie"], self.width, self.height,
                                           margin=box // 2 + 2, min_dist=min_dist)
        self.angles = phantom.random_rotations(rng, len(self.pos))
        self.rots = euler_to_matrix(self.angles[:, 0], self.angles[:, 1], self.angles[:, 2])
        du = rng.uniform(p["defocus_min"], p["defocus_max"])
        dv = du - rng.uniform(0.0, p["astigmatism_max"])
        dang = rng.uniform(0.0, 180.0)
        self.ctf = CtfParams(du, dv, dang, p["voltage"], p["cs"], p["q0"])
        self.drift = tracks.global_drift(rng, nf, p["global_drift_a"] / angpix)
        sv, sd, sa = tracks.normalized_sigmas(p["s_vel"], p["s_div"], p["s_acc"], p["dose_per_frame"], angpix)
        self.local = tracks.sample_local_tracks(rng, self.pos.astype(np.float64), nf, sv, sd, sa)
        self.disp = self.drift[None] + self.local  # (n, nf, 2) px: position in frame f minus coordinate
        self._acc: np.ndarray | None = None

    @property
    def shifts_px(self) -> np.ndarray:
        """RELION's global shifts (the correction: minus the drift), ``(frames, 2)``."""
        return -self.drift + 0.0

    def frames(self) -> Iterator[np.ndarray]:
        """The movie's frames (counts, float64, ``(H, W)``), in order; sums them aligned on the way."""
        p, h, w = self.p, self.height, self.width
        angpix = p["angpix"]
        proj = self.ph.project(self.rots)
        ctf = frames.ctf_rect(self.ctf, h, w, angpix)
        if p["apply_mtf"]:  # detector MTF on the signal (movie px = detector px)
            ctf = ctf * frames.mtf_rect(h, w, *maps.smooth_mtf())
        dose_px = p["dose_per_frame"] * angpix ** 2
        self._acc = np.zeros((h, w // 2 + 1), np.complex128)
        for f in range(p["frames"]):
            pasted = frames.paste_particles(h, w, proj, self.pos + self.disp[:, f])
            damage = frames.bfactor_rect(h, w, angpix, self.bfactors[f], self.scales[f])
            clean = frames.clean_frame(pasted, ctf, damage)
            if self.detector is None:
                counts = frames.detector_counts(self.rng, clean, dose_px, self.contrast, p["noise"])
                self._acc += frames.align_shift_rfft(counts, -self.drift[f])  # RELION shift = -drift
                yield counts
                continue
            mean = np.maximum(dose_px * (1.0 - self.contrast * clean), 0.0)
            written, corrected = self.detector.expose(self.rng, mean, p["noise"])
            self._acc += frames.align_shift_rfft(corrected, -self.drift[f])
            yield written

    def corrected_sum(self) -> np.ndarray:
        """The global-shift-corrected frame sum (float32), after :meth:`frames` was consumed."""
        if self._acc is None:
            raise RuntimeError("corrected_sum() needs the frames to be generated first")
        return fourier.irfft(self._acc, (self.height, self.width)).astype(np.float32)

    def particles(self, corrected: np.ndarray) -> np.ndarray:
        """Particles boxed from the corrected sum, contrast inverted (white protein), background
        normalised like ``relion_preprocess --norm``."""
        box = self.p["box"]
        boxes = frames.extract_boxes(-corrected, self.pos, box)
        return frames.normalize_background(boxes, 0.75 * box / 2)

    def truth(self, particles: np.ndarray | None = None) -> MicrographTruth:
        angpix = self.p["angpix"]
        return MicrographTruth(self.name, self.pos, self.angles, self.rots, self.ctf, self.drift, self.local,
                               self.disp * angpix, particles, float(angpix), int(self.p.get("optics_group", 1)))


# --------------------------------------------------------------------------------------------------
# the project's maps and truth

def random_subsets(rng: np.random.Generator, n_particles: int) -> np.ndarray:
    """Half sets 1/2 balanced over the whole set (``rlnRandomSubset``)."""
    return np.where(rng.permutation(n_particles) % 2 == 0, 1, 2)


def previous_refine_half_maps(p: dict, ph: Phantom, truths: list[MicrographTruth], subset: np.ndarray,
                              contrast: float, bfactors: np.ndarray, scales: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray]:
    """The "previous refine": reconstructions of each half with the true poses (``half_maps =
    "reconstruct"``) or the map the particles see plus independent noise giving a target FSC."""
    box, angpix = p["box"], p["angpix"]
    if p["half_maps"] == "reconstruct":
        imgs = np.concatenate([t.particles for t in truths])
        rots = np.concatenate([t.rots for t in truths])
        ctfs = np.concatenate([np.repeat(ctf_2d(t.ctf, box, angpix)[None], len(t.pos), 0) for t in truths])
        sym = p["symmetry"] if not p.get("model") else "C1"
        h1, h2 = (maps.reconstruct_symmetric(imgs[subset == s], rots[subset == s], ctfs[subset == s], sym)
                  for s in (1, 2))
        return h1, h2
    amplitude = contrast * np.sqrt(p["frames"] * p["dose_per_frame"] * angpix ** 2)
    expected = maps.expected_particle_map(ph.map, angpix, amplitude, bfactors, scales)
    return maps.noisy_half_maps(np.random.default_rng([p["seed"], 7]), expected, angpix,
                                p["half_map_resolution_a"])


def half_map_fscs(h1: np.ndarray, h2: np.ndarray, mask: np.ndarray, angpix: float,
                  seed: int) -> tuple[SolventCorrectedFscs, float]:
    """The half maps' solvent-corrected FSCs and their FSC = 0.143 resolution (Å)."""
    fscs = solvent_corrected_fscs(h1, h2, mask, seed)
    shell = resolution_shell(fscs.corrected, 0.143)
    return fscs, float(h1.shape[0] * angpix / max(shell, 1))


def ground_truth_arrays(p: dict, truths: list[MicrographTruth], subset: np.ndarray, bfactors: np.ndarray,
                        scales: np.ndarray, contrast: float, final_resolution_a: float) -> dict[str, np.ndarray]:
    """The arrays of ``truth.npz``: tracks (Å, run_data.star order), drift, local tracks, micrograph of
    every particle, coordinates, poses, half sets, planted B-factors, scales and sigmas (Å and px)."""
    angpix = p["angpix"]
    sigmas_px = tracks.normalized_sigmas(p["s_vel"], p["s_div"], p["s_acc"], p["dose_per_frame"], angpix)
    return dict(
        tracks_a=np.concatenate([t.tracks_a for t in truths]),
        global_drift_a=np.stack([t.drift_px * (t.angpix or angpix) for t in truths]),
        local_tracks_a=np.concatenate([t.local_px * (t.angpix or angpix) for t in truths]),
        optics_group=np.concatenate([np.full(len(t.pos), t.optics_group) for t in truths]),
        micrograph_index=np.concatenate([np.full(len(t.pos), i) for i, t in enumerate(truths)]),
        micrograph_names=np.array([t.name for t in truths]), coords_px=np.concatenate([t.pos for t in truths]),
        angles_deg=np.concatenate([t.angles for t in truths]), random_subset=subset,
        bfactors=bfactors, scales=scales, sigmas=np.array([p["s_vel"], p["s_div"], p["s_acc"]]),
        sigmas_px=np.array(sigmas_px), contrast_scale=contrast, final_resolution_a=final_resolution_a)

