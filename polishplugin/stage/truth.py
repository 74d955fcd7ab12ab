"""The stage's estimates beside the simulated truth, and a fair before/after comparison of polishing.

For a stage run on a simulated dataset (``polishplugin simulate``: the truth is in ``ground_truth/``)
:func:`compare_with_truth` measures:

* per-frame B-factors fitted by polishing against the planted ones, both relative to their maximum
  (RELION's fit reports ``B ((s/2+1)/(s/2))^2`` for a box of s pixels: the planted values are put on
  that scale first);
* the trained sigmas against the planted ones, and the RMS distance of the fitted particle tracks from
  the planted tracks with the trained sigmas, with the planted sigmas (one more ``motion_refine`` run,
  tracks only) and for the initial tracks (minus the global motion-correction shifts);
* polishing's gain under a fair comparison: the particles before polishing (the extracted ones) and
  after (the shiny ones), each reconstructed at the same true poses into the same half sets and
  post-processed with the same mask, MTF and auto-B; the gain is counted in Fourier shells;
* the 3D auto-refine of the polished particles: its resolution (own poses) beside the true-pose
  resolution of the same particles, its median angular error (symmetry-aware) and offset error.

:func:`summary_rows` turns the numbers into the table ``polishplugin demo`` prints; :func:`summary_json`
keeps the machine-readable keys of ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("polishplugin.stage.truth")

__all__ = ["TruthInputs", "compare_with_truth", "summary_rows", "summary_json", "polishplugin_command",
           "bfactor_comparison", "track_rms_a", "JSON_KEYS", "write_truth_plots", "gain_sentence", "write_json"]

#: the previous refine, mask, MTF and motion-correction files of a simulated project
PREVIOUS_REFINE = "Refine3D/job021"
MASK = "MaskCreate/job022/mask.mrc"
MTF = "mtf_simulated.star"
CORRECTED_MICROGRAPHS = "MotionCorr/job002/corrected_micrographs.star"
PREVIOUS_POSTPROCESS = "PostProcess/job023/postprocess.star"

#: keys of summary.json (numbers; None where not measured)
JSON_KEYS = ("resolution_before_A", "resolution_after_A", "polishing_gain_shells", "bfactor_median_abs_diff_A2",
             "bfactor_max_abs_diff_A2", "track_rms_trained_A", "track_rms_planted_sigmas_A", "track_rms_initial_A",
             "refine_angle_error_deg", "refine_offset_error_A", "refine_resolution_A", "refine_poses_resolution_A",
             "true_pose_resolution_A", "refine_shells_from_true_pose", "seconds_total")


def polishplugin_command() -> list[str]:
    """The console script (or ``python -m polishplugin`` where it is not on the PATH)."""
    exe = shutil.which("polishplugin")
    return [exe] if exe else [sys.executable, "-m", "polishplugin"]


@dataclass
class TruthInputs:
    """Where a finished stage left what the comparison reads.

    ``project``: the simulated RELION project (``ground_truth/``, ``Refine3D/job021``, movies);
    ``polish_dir``: the polishing run's output folder (``bfactors.star``, ``shiny.star``, tracks);
    ``refine_root``: the 3D auto-refine's output root (``<root>_data.star``); ``refine_postprocess``: the
    post-processing of that refine (both None: polishing only, no refine numbers); ``opt_params``: the
    trained sigmas (None: not trained; ``sigmas_used`` then names those used); ``work``: where the
    comparison writes its reconstructions and post-processing.
    """

    project: Path
    polish_dir: Path
    refine_root: str | None
    refine_postprocess: Path | None
    work: Path
    opt_params: Path | None = None
    sigmas_used: tuple[float, float, float] | None = None
    threads: int = 1
    autob_lowres_a: float = 10.0
    notes: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ B-factors
def bfactor_comparison(fitted: np.ndarray, planted: np.ndarray, box: int) -> dict:
    """Fitted and planted per-frame B-factors (Å²) relative to each curve's maximum, the planted ones on
    RELION's ``((s/2+1)/(s/2))^2`` scale, and their median, largest and RMS absolute difference."""
    fitted = np.asarray(fitted, np.float64)
    planted = np.asarray(planted, np.float64)
    q = ((box // 2 + 1) / (box / 2)) ** 2
    rel_fit = fitted - fitted.max()
    rel_true = q * (planted - planted.max())
    diff = np.abs(rel_fit - rel_true)
    corr = float(np.corrcoef(rel_fit, rel_true)[0, 1]) if rel_fit.std() > 0 and rel_true.std() > 0 else float("nan")
    return {"fitted_rel_A2": rel_fit.tolist(), "planted_rel_A2": rel_true.tolist(), "relion_scale": q,
            "median_abs_diff_A2": float(np.median(diff)), "max_abs_diff_A2": float(diff.max()),
            "rms_diff_A2": float(np.sqrt(np.mean(diff ** 2))), "correlation": corr}


# ------------------------------------------------------------------------------------------ tracks
def track_rms_a(tracks_a: np.ndarray, true_a: np.ndarray) -> float:
    """RMS distance (Å) over particles and frames between tracks ``(n, frames, 2)`` and the planted ones."""
    return float(np.sqrt(np.mean(((np.asarray(tracks_a) - np.asarray(true_a)) ** 2).sum(-1))))


def _micrograph_rows(table) -> list[tuple[str, np.ndarray]]:
    import pandas as pd

    from ..io import labels as L

    names = table.particles[L.MICROGRAPH_NAME].to_numpy()
    return [(name, np.nonzero(names == name)[0]) for name in pd.unique(names)]


def _tracks_of(out_dir: Path, table, previous, n_frames: int) -> np.ndarray:
    """Tracks (Å) a polishing run fitted for the particles of ``table`` (the STAR file whose micrograph
    names and order it used), in the rows of ``previous``: ``(len(previous), n_frames, 2)``."""
    from ..io.polish import micrograph_root, read_tracks

    rows = _match_rows(table, previous)
    out = np.full((len(previous), n_frames, 2), np.nan)
    for name, mrows in _micrograph_rows(table):
        out[rows[mrows]] = read_tracks(str(micrograph_root(out_dir, name)) + "_tracks.star")
    return out


def _initial_tracks(project: Path, previous, n_frames: int) -> np.ndarray:
    """Minus the global motion-correction shifts (Å) of each particle's micrograph, in ``previous``'s rows."""
    from ..io.movies import read_movie_metadata

    out = np.zeros((len(previous), n_frames, 2))
    for name, rows in _micrograph_rows(previous):
        meta = read_movie_metadata(project / "MotionCorr/job002/Movies" / (Path(name).stem + ".star"))
        apix = float(meta.original_pixel_size_a or 1.0) * float(meta.binning)
        out[rows] = -np.asarray(meta.global_shifts_px)[None, :n_frames] * apix
    return out


def _planted_sigma_tracks(inp: TruthInputs, sigmas: tuple[float, float, float]) -> Path:
    """Tracks fitted with the planted sigmas (``motion_refine`` without --combine_frames)."""
    out = inp.work / "planted_sigmas"
    done = out / "PLANTED_SIGMAS_DONE"
    if done.exists():
        return out
    args = ["motion_refine", "--i", f"{PREVIOUS_REFINE}/run_data.star", "--f", PREVIOUS_POSTPROCESS,
            "--corr_mic", CORRECTED_MICROGRAPHS, "--o", str(out) + "/", "--first_frame", "1", "--last_frame", "-1",
            "--s_vel", f"{sigmas[0]:g}", "--s_div", f"{sigmas[1]:g}", "--s_acc", f"{sigmas[2]:g}",
            "--j", str(inp.threads)]
    log.info("[truth] tracks with the planted sigmas: polishplugin %s", " ".join(args))
    proc = subprocess.run(polishplugin_command() + args, cwd=inp.project, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"motion_refine with the planted sigmas failed: {proc.stderr.strip()[-500:]}")
    done.write_text("done\n")
    return out


# ------------------------------------------------------------------------------------------ true poses
def _match_rows(table, reference) -> np.ndarray:
    """For each row of ``table``, the row of ``reference`` with the same micrograph and coordinates."""
    from ..io import labels as L

    def keys(t):
        p = t.particles
        stems = [Path(n).stem for n in p[L.MICROGRAPH_NAME].astype(str)]
        return list(zip(stems, np.round(p[L.COORDINATE_X].to_numpy(float), 2),
                        np.round(p[L.COORDINATE_Y].to_numpy(float), 2)))

    index = {k: i for i, k in enumerate(keys(reference))}
    try:
        return np.array([index[k] for k in keys(table)], np.int64)
    except KeyError as exc:
        raise RuntimeError(f"particle {exc} of {table.path} is not in {reference.path}") from None


def _reconstruct(table, rotations: np.ndarray, origins_px: np.ndarray | None, halves: np.ndarray, folder: Path,
                 symmetry: str) -> Path:
    """Half maps of the particles of ``table`` at the given poses (origins: RELION's, the shift that
    centres a particle; None = 0), reconstructed as the simulator made the previous refine's half maps
    (CTF-weighted, every image inserted once per symmetry operator, no regularisation)."""
    from ..core import fourier
    from ..core.ctf import ctf_2d
    from ..core.simulate.maps import reconstruct_symmetric
    from ..io.mrc import write_mrc
    from ..io.refine import read_particle_images

    half1 = folder / "run_half1_class001_unfil.mrc"
    if half1.exists() and (folder / "run_half2_class001_unfil.mrc").exists():
        return half1
    angpix, box = float(table.pixel_sizes_a()[0]), int(table.box_sizes_px()[0])
    images = read_particle_images(table, np.arange(len(table)), box)
    if origins_px is not None:
        shape = (box, box)
        images = fourier.irfft(fourier.shift_rfft(fourier.rfft(images, axes=(-2, -1)), origins_px, shape), shape,
                               axes=(-2, -1)).astype(np.float32)
    ctfs = np.stack([ctf_2d(c, box, angpix) for c in table.ctf_params()])
    folder.mkdir(parents=True, exist_ok=True)
    for h in (1, 2):
        sel = halves == h
        vol = reconstruct_symmetric(images[sel], rotations[sel], ctfs[sel], symmetry)
        write_mrc(folder / f"run_half{h}_class001_unfil.mrc", vol, angpix)
    return half1


def _rotations(table) -> np.ndarray:
    from ..core.geometry import euler_to_matrix

    a = table.angles_deg()
    return euler_to_matrix(a[:, 0], a[:, 1], a[:, 2])


def _postprocess(half1: Path, out_root: Path, project: Path, angpix: float, autob_lowres_a: float):
    """``polishplugin postprocess`` with the stage's settings (mask, MTF, auto-B); its result."""
    from ..io.postprocess import read_postprocess
    from ..programs import postprocess
    from ..programs._cli import build_parser

    star = Path(f"{out_root}.star")
    if not star.exists():
        argv = ["--i", str(half1), "--mask", str(project / MASK), "--angpix", f"{angpix}", "--mtf", str(project / MTF),
                "--auto_bfac", "--autob_lowres", f"{autob_lowres_a:g}", "--o", str(out_root)]
        postprocess.main(build_parser("postprocess").parse_args(argv))
    return read_postprocess(star)


def _shell(resolution_a: float, box: int, angpix: float) -> int:
    return int(round(box * angpix / resolution_a))


# ------------------------------------------------------------------------------------------ all of it
def compare_with_truth(inp: TruthInputs) -> dict:
    """The numbers of the module docstring (a dict; see :data:`JSON_KEYS` for the headline keys)."""
    from ..core.geometry import symmetry_matrices
    from ..core.refine.schedule import symmetry_aware_angle_deg
    from ..io.particles import read_particles
    from ..io.polish import read_bfactors, read_opt_params
    from ..io.postprocess import read_postprocess
    from ..io.simulation import read_truth, truth_paths

    project = Path(inp.project)
    inp.work.mkdir(parents=True, exist_ok=True)
    truth = read_truth(project)
    params = truth["params"]
    box, angpix = int(params["box"]), float(params["angpix"])
    symmetry = str(params.get("symmetry", "C1")) if not params.get("model") else "C1"
    out: dict = {"box": box, "angpix": angpix, "symmetry": symmetry}

    # per-frame B-factors
    fitted = read_bfactors(inp.polish_dir / "bfactors.star").bfactor_a2
    planted = read_bfactors(truth_paths(project)["truth_star"]).bfactor_a2
    out["bfactors"] = bfactor_comparison(fitted, planted, box)

    # sigmas and tracks
    planted_sigmas = tuple(float(v) for v in truth["sigmas"])
    out["sigmas_planted"] = planted_sigmas
    if inp.opt_params is not None and Path(inp.opt_params).exists():
        s = read_opt_params(inp.opt_params)
        out["sigmas_trained"] = (s.s_vel, s.s_div, s.s_acc)
    out["sigmas_used"] = inp.sigmas_used or out.get("sigmas_trained")
    previous = read_particles(project / PREVIOUS_REFINE / "run_data.star")
    shiny = read_particles(inp.polish_dir / "shiny.star")
    true_tracks = np.asarray(truth["tracks_a"], np.float64)  # run_data.star order
    n_frames = true_tracks.shape[1]
    fitted_tracks = _tracks_of(inp.polish_dir, shiny, previous, n_frames)
    out["track_rms_trained_A"] = track_rms_a(fitted_tracks, true_tracks)
    planted_run = _planted_sigma_tracks(inp, planted_sigmas)
    out["track_rms_planted_sigmas_A"] = track_rms_a(_tracks_of(planted_run, previous, previous, n_frames),
                                                    true_tracks)
    out["track_rms_initial_A"] = track_rms_a(_initial_tracks(project, previous, n_frames), true_tracks)

    # fair before/after: both particle sets at the same true poses (the previous refine's: true angles,
    # zero offsets) and half sets, the same reconstruction and post-processing
    true_rots, halves = _rotations(previous), previous.half_sets()
    s_rows = _match_rows(shiny, previous)
    pp = {}
    for key, table, rots, origins, sets in (
            ("before", previous, true_rots, None, halves),
            ("after", shiny, true_rots[s_rows], None, halves[s_rows])):
        half1 = _reconstruct(table, rots, origins, sets, inp.work / f"true_poses_{key}", symmetry)
        pp[key] = _postprocess(half1, inp.work / f"true_poses_{key}" / "postprocess", project, angpix,
                               inp.autob_lowres_a)
        out[f"postprocess_{key}"] = str(inp.work / f"true_poses_{key}" / "postprocess.star")
    out["resolution_before_A"] = pp["before"].final_resolution_a
    out["resolution_after_A"] = pp["after"].final_resolution_a
    out["polishing_gain_shells"] = (_shell(pp["after"].final_resolution_a, box, angpix)
                                    - _shell(pp["before"].final_resolution_a, box, angpix))
    out["true_pose_resolution_A"] = pp["after"].final_resolution_a

    if inp.refine_root is None or inp.refine_postprocess is None:  # a design study: polishing only
        out["autob"] = {name: _autob(p) for name, p in pp.items()}
        return out
    # the refine of the polished particles against the true poses
    refined = read_particles(f"{inp.refine_root}_data.star")
    rows = _match_rows(refined, previous)
    err = symmetry_aware_angle_deg(_rotations(refined), true_rots[rows], symmetry_matrices(symmetry))
    out["refine_angle_error_deg"] = float(np.median(err))
    # a shiny particle sits at its coordinate moved by the mean over frames of (planted - fitted) track;
    # its true origin (RELION: the shift that centres it) is minus that
    true_origin_a = -(true_tracks - fitted_tracks).mean(1)[rows]
    r_angpix = float(refined.pixel_sizes_a()[0])
    out["refine_offset_error_A"] = float(np.median(np.linalg.norm(refined.origins_px() * r_angpix - true_origin_a,
                                                                  axis=1)))
    refine_pp = read_postprocess(inp.refine_postprocess)
    out["refine_resolution_A"] = refine_pp.final_resolution_a
    # the refine's poses through the same reconstruction as the true poses: the comparable number
    half1 = _reconstruct(refined, _rotations(refined), refined.origins_px(), refined.half_sets(),
                         inp.work / "refine_poses", symmetry)
    pp["refine_poses"] = _postprocess(half1, inp.work / "refine_poses" / "postprocess", project, angpix,
                                      inp.autob_lowres_a)
    out["postprocess_refine_poses"] = str(inp.work / "refine_poses" / "postprocess.star")
    out["refine_poses_resolution_A"] = pp["refine_poses"].final_resolution_a
    out["refine_shells_from_true_pose"] = (_shell(pp["refine_poses"].final_resolution_a, box, angpix)
                                           - _shell(pp["after"].final_resolution_a, box, angpix))
    out["autob"] = {name: _autob(p) for name, p in (("before", pp["before"]), ("after", pp["after"]),
                                                       ("refine", refine_pp))}
    return out


def _autob(pp) -> dict:
    from ..core.postprocess import AUTOB_MIN_SHELLS
    from ..io import labels as L

    shells = pp.general.get(L.POLISH_AUTOB_FIT_SHELLS)
    return {"bfactor_A2": pp.bfactor_a2, "fit_shells": None if shells is None else int(shells),
            "too_few": shells is not None and int(shells) < AUTOB_MIN_SHELLS}


# ------------------------------------------------------------------------------------------ the table
def _f(value, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def gain_sentence(c: dict) -> str:
    """What polishing gained, in words, from the fair comparison."""
    gain = c["polishing_gain_shells"]
    before, after = c["resolution_before_A"], c["resolution_after_A"]
    if gain > 0:
        verdict = f"polishing improved the map by {gain} Fourier shell{'s' if gain != 1 else ''}"
    elif gain == 0:
        verdict = "polishing did not change the FSC-0.143 resolution (same Fourier shell)"
    else:
        verdict = f"polishing made the map worse by {-gain} Fourier shell{'s' if gain != -1 else ''}"
    return (f"{verdict}: {before:.2f} -> {after:.2f} Å with the particles before and after polishing "
            "reconstructed at the same true poses and post-processed alike")


def summary_rows(c: dict) -> list[tuple[str, str]]:
    """``(label, value)`` rows: estimates beside the planted truth, the fair before/after, the refine."""
    b = c["bfactors"]
    rows = [
        ("-- resolution: fair before/after (same true poses, half sets, mask, MTF, auto-B)", ""),
        ("before polishing: extracted particles at the true poses (A)", _f(c["resolution_before_A"])),
        ("after polishing: polished particles at the same poses (A)", _f(c["resolution_after_A"])),
        ("polishing gain (Fourier shells)", f"{c['polishing_gain_shells']:+d}"),
        ("-- 3D auto-refine of the polished particles (its own poses)", ""),
        ("resolution, its own half maps and post-processing (A)", _f(c["refine_resolution_A"])),
        ("the refine's poses, reconstructed as the true poses (A)", _f(c["refine_poses_resolution_A"])),
        ("the same particles at the true poses (A)", _f(c["true_pose_resolution_A"])),
        ("refine's poses vs true poses (Fourier shells, + = refine higher)",
         f"{c['refine_shells_from_true_pose']:+d}"),
        ("median angular error vs true poses (deg, symmetry-aware)", _f(c["refine_angle_error_deg"])),
        ("median offset error vs true offsets (A)", _f(c["refine_offset_error_A"])),
        ("-- polishing estimates beside the planted truth", ""),
        ("per-frame B-factors fitted (A^2, rel. to max)", " ".join(f"{v:.0f}" for v in b["fitted_rel_A2"])),
        ("per-frame B-factors planted (A^2, rel. to max)", " ".join(f"{v:.0f}" for v in b["planted_rel_A2"])),
        ("B-factor |fitted - planted| (A^2, median / max / RMS)",
         f"{b['median_abs_diff_A2']:.1f} / {b['max_abs_diff_A2']:.1f} / {b['rms_diff_A2']:.1f}"),
        ("sigmas planted (s_vel s_div s_acc)", " ".join(f"{v:.4g}" for v in c["sigmas_planted"])),
        ("sigmas used for polishing" + (" (trained)" if "sigmas_trained" in c else ""),
         " ".join(f"{v:.4g}" for v in c["sigmas_used"]) if c.get("sigmas_used") else "n/a"),
        ("track RMS vs planted tracks (A): used sigmas", _f(c["track_rms_trained_A"], ".3f")),
        ("track RMS vs planted tracks (A): planted sigmas", _f(c["track_rms_planted_sigmas_A"], ".3f")),
        ("track RMS vs planted tracks (A): initial (global shifts)", _f(c["track_rms_initial_A"], ".3f")),
    ]
    for name, a in c["autob"].items():
        if a["too_few"]:
            rows.append((f"WARNING auto-B ({name}): fit over {a['fit_shells']} shells only",
                         f"B = {a['bfactor_A2']:.0f} A^2 is poorly determined"))
    return rows


def summary_json(c: dict, seconds_total: float | None = None) -> dict:
    """The machine-readable summary: :data:`JSON_KEYS` plus the per-frame curves and sigmas."""
    out = {k: c.get(k) for k in JSON_KEYS}
    out["bfactor_median_abs_diff_A2"] = c["bfactors"]["median_abs_diff_A2"]
    out["bfactor_max_abs_diff_A2"] = c["bfactors"]["max_abs_diff_A2"]
    out["seconds_total"] = seconds_total
    out.update({"bfactors_fitted_rel_A2": c["bfactors"]["fitted_rel_A2"],
                "bfactors_planted_rel_A2": c["bfactors"]["planted_rel_A2"],
                "sigmas_planted": list(c["sigmas_planted"]),
                "sigmas_used": list(c["sigmas_used"]) if c.get("sigmas_used") else None,
                "polishing_gain": gain_sentence(c)})
    return out


def write_truth_plots(c: dict, refine_postprocess: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """The comparison's figures as PNGs in ``dest``: the fair before/after FSCs (and the refine's) in one
    plot, each true-pose post-processing's FSC and Guinier plots, fitted vs planted per-frame B-factors."""
    from ..io.postprocess import read_postprocess
    from ..plots import polish as plots_polish
    from ..plots import postprocess as plots_pp

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(fig, name):
        plots_pp.save_png(fig, dest / name)
        paths.append(str(dest / name))

    posts = {"before polishing (true poses)": read_postprocess(c["postprocess_before"]),
             "after polishing (same true poses)": read_postprocess(c["postprocess_after"]),
             "3D auto-refine of the polished particles (own poses)": read_postprocess(refine_postprocess)}
    curves = {name: (*pp.fsc_curve(), pp.final_resolution_a) for name, pp in posts.items()}
    save(plots_pp.fsc_comparison_figure(curves, "fair comparison (same true poses): " + gain_sentence(c).split(":")[0]),
         "truth_fsc_before_after.png")
    for key, name in (("before", "before polishing (true poses)"), ("after", "after polishing (same true poses)")):
        save(plots_pp.fsc_figure_from_result(posts[name], title=name), f"truth_{key}_fsc.png")
        fig = plots_pp.guinier_figure_from_result(posts[name], title=name)
        if fig is not None:
            save(fig, f"truth_{key}_guinier.png")
    b = c["bfactors"]
    save(plots_polish.plot_bfactors(np.asarray(b["fitted_rel_A2"]), planted=np.asarray(b["planted_rel_A2"]),
                                    title=f"per-frame B-factors relative to the maximum\n(median |fitted - planted| "
                                          f"{b['median_abs_diff_A2']:.1f} Å²)"), "truth_bfactors.png")
    return paths


def write_json(path: str | os.PathLike, data: dict) -> None:
    """``summary.json``, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)
