"""Per-micrograph track fit: GP prior + CC data term, L-BFGS (ALGORITHMS 1.10).

RELION uses liblbfgs (m=6, stop when ``||g|| / max(1, ||x||) <= eps``).  We use scipy's L-BFGS-B with
``maxcor=6`` and the analytic gradient; its projected-gradient test (max-norm) is given
``gtol = eps * max(1, ||x0||)``, which implies RELION's test up to the norm's ``sqrt(n)`` factor and
the change of ``||x||`` during the fit (documented difference; tracks agree to well below a pixel).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from .gp_basis import gp_basis, tracks_to_params
from .objective import MotionObjective

__all__ = ["sigmas_to_pixels", "estimate_tracks", "fit_tracks", "TrackFit", "MotionFitSettings", "cc_crop_px",
           "polish_tracks"]

log = logging.getLogger(__name__)


def sigmas_to_pixels(s_vel: float, s_div: float, s_acc: float, dose_per_frame: float, angpix: float,
                     coords_angpix: float, absolute: bool = False) -> tuple[float, float, float]:
    """RELION ``normalizeSig*``: (s_vel Å/dose, s_div Å, s_acc Å/dose) -> (vel px, div coord-px, acc px).

    ``sig_vel_px = dose * s_vel / angpix`` (``absolute``: ``s_vel / angpix``), same for acc (a negative
    s_acc stays negative = acceleration prior off), ``sig_div_px = s_div / coords_angpix``.
    """
    f = 1.0 if absolute else float(dose_per_frame)
    return f * s_vel / angpix, s_div / coords_angpix, (f * s_acc / angpix if s_acc > 0 else -1.0)


@dataclass
class TrackFit:
    tracks_px: np.ndarray  # (n_p, n_f, 2) including the global component
    params: np.ndarray     # final parameter vector
    value: float           # final objective
    n_iter: int
    n_evals: int


def fit_tracks(cc: np.ndarray, initial_tracks_px: np.ndarray, positions_px: np.ndarray,
               sig_vel_px: float, sig_div_px: float, sig_acc_px: float,
               global_comp_px: np.ndarray | None = None, max_iters: int = 10000, eps: float = 1e-5,
               cc_origin: int = 0, sq_exp: bool = False, max_ed: int = -1, ftol: float = 1e-12,
               backend: str = "numpy", interp=None) -> TrackFit:
    """Fit the tracks of one micrograph; see :func:`estimate_tracks`. Returns a :class:`TrackFit`.

    ``ftol``: scipy's relative-decrease stop (1e-12: effectively RELION's gradient test only; training
    uses 1e-9, which moves tracks by < 0.01 px and saves a third of the iterations).
    ``backend="opencl"``: the CC maps go to the device once and every objective call interpolates
    there (:class:`.objective_cl.CatmullRomCL`, float32, ~10x faster per call on PoCL); ``interp``
    passes such an interpolator built earlier (training reuses one per micrograph).
    """
    cc = np.asarray(cc)
    n_p, n_f = cc.shape[:2]
    init = np.asarray(initial_tracks_px, np.float64).reshape(n_p, n_f, 2)
    glob = np.zeros((n_f, 2)) if global_comp_px is None else np.asarray(global_comp_px, np.float64)
    if n_p < 2 or n_f < 2:  # RELION does not optimise micrographs with a single particle
        return TrackFit(init.copy(), np.zeros(0), 0.0, 0, 0)
    basis, lam = gp_basis(positions_px, sig_vel_px, sig_div_px, sq_exp=sq_exp, max_ed=max_ed)
    if interp is None and backend == "opencl":
        from .objective_cl import CatmullRomCL

        interp = CatmullRomCL(cc.reshape(n_p * n_f, *cc.shape[2:]))
    elif interp is None and backend != "numpy":
        raise ValueError(f"unknown backend {backend!r} (numpy or opencl)")
    obj = MotionObjective(cc, basis, lam, sig_acc_px, glob, cc_origin, interp=interp)
    x0 = tracks_to_params(init - glob[None], basis, lam)
    gtol = eps * max(1.0, float(np.linalg.norm(x0)))
    res = minimize(obj, x0, jac=True, method="L-BFGS-B",
                   options={"maxcor": 6, "maxiter": int(max_iters), "gtol": gtol, "ftol": ftol,
                            "maxls": 40})
    x = res.x
    tracks = obj.tracks(x) + glob[None]
    if not np.all(np.isfinite(tracks)):
        log.warning("track fit produced NaN/Inf; those positions are set to 0")
        tracks = np.nan_to_num(tracks, nan=0.0, posinf=0.0, neginf=0.0)
    return TrackFit(tracks, x, float(res.fun), int(res.nit), obj.n_evals)


def estimate_tracks(cc: np.ndarray, initial_tracks_px: np.ndarray, positions_px: np.ndarray,
                    sig_vel_px: float, sig_div_px: float, sig_acc_px: float,
                    global_comp_px: np.ndarray | None = None, max_iters: int = 10000, eps: float = 1e-5,
                    cc_origin: int = 0, backend: str = "numpy") -> np.ndarray:
    """Fitted tracks ``(n_p, n_f, 2)`` in particle px (displacements, incl. ``global_comp_px``).

    ``cc (n_p, n_f, M, M)`` from :func:`.cross_correlation.cc_maps` (``cc_origin`` = index of zero
    shift: 0 for uncropped maps, ``M//2`` for cropped ones); ``initial_tracks_px (n_p, n_f, 2)``;
    ``positions_px (n_p, 2)`` particle coordinates in the units of ``sig_div_px``; sigmas in pixels
    (:func:`sigmas_to_pixels`; ``sig_acc_px <= 0``: no acceleration prior); ``backend`` "numpy" or
    "opencl" (interpolation on the device, see :func:`fit_tracks`).
    """
    return fit_tracks(cc, initial_tracks_px, positions_px, sig_vel_px, sig_div_px, sig_acc_px,
                      global_comp_px, max_iters, eps, cc_origin, backend=backend).tracks_px


@dataclass
class MotionFitSettings:
    """The track fit of polishing mode: sigmas (Å units: s_vel, s_acc in Å/dose, s_div in Å; ``s_acc <= 0``:
    no acceleration prior), L-BFGS limits, whitening, dose-damage model ``(a, b, c)`` and switches
    (``global_init``: start from the summed-CC global track; ``sq_exp``: squared-exponential kernel;
    ``max_ed``: eigen-deformations kept), and the backends of the CC maps and of the fit's interpolation."""

    s_vel: float = 0.5
    s_div: float = 5000.0
    s_acc: float = 2.0
    max_iters: int = 10000
    eps: float = 1e-5
    whiten: bool = True
    absolute: bool = False
    dmg: tuple[float, float, float] = (3.40, -1.06, -0.54)
    global_init: bool = False
    sq_exp: bool = False
    max_ed: int = -1
    cc_backend: str = "numpy"
    fit_backend: str = "numpy"


def cc_crop_px(box: int, initial_tracks_px: np.ndarray) -> int | None:
    """Size of the CC-map window that holds the initial tracks plus a 24 px margin (memory); ``None`` (full
    maps) for boxes up to 128 px or when the window would not be smaller than the box."""
    if box <= 128:
        return None
    init = np.asarray(initial_tracks_px)
    extent = int(np.ceil(np.abs(init).max())) if init.size else 0
    m = 2 * (extent + 24)
    return None if m >= box else m


def polish_tracks(frames_rfft: np.ndarray, pred_own_rfft: np.ndarray, initial_tracks_px: np.ndarray,
                  positions_px: np.ndarray, dose_per_frame: float, angpix: float, coords_angpix: float,
                  first_frame: int, settings: MotionFitSettings) -> np.ndarray:
    """Fitted tracks ``(n_p, n_f, 2)`` (particle px) of one micrograph in polishing mode (ALGORITHMS 1.5-1.10).

    ``frames_rfft`` ``(n_p, n_f, N, N//2+1)`` is normalised and (``settings.whiten``) whitened **in place**
    (the FCC uses these frames); the own-half predictions are whitened with the same spectrum, the CC maps
    dose-weighted (frame ``first_frame`` = 0-based first movie frame), then the GP-prior fit runs from
    ``initial_tracks_px`` (or from the summed-CC global track with ``settings.global_init``).
    """
    from ..dose import dose_weights
    from .cross_correlation import cc_maps, cc_origin
    from .initial_tracks import global_track_from_cc
    from .prepare import normalize_whiten_inplace, whiten

    n = frames_rfft.shape[-2]
    n_f = frames_rfft.shape[1]
    sigma2 = normalize_whiten_inplace(frames_rfft, settings.whiten)
    pred = whiten(pred_own_rfft, sigma2, n) if sigma2 is not None else pred_own_rfft  # sigma2: settings.whiten
    a, b, c = settings.dmg
    weights = dose_weights(n_f, n, angpix, dose_per_frame, first_frame, a, b, c).astype(np.float32)
    init = initial_tracks_px
    crop = None if settings.global_init else cc_crop_px(n, init)
    cc = cc_maps(frames_rfft, pred, weights, crop_px=crop, backend=settings.cc_backend)
    origin = cc_origin(cc.shape, crop is not None)
    if settings.global_init:  # --gi: all particles start on the sub-pixel maximum of the summed CC
        init = np.broadcast_to(global_track_from_cc(cc, origin)[None], init.shape).copy()
    sv, sd, sa = sigmas_to_pixels(settings.s_vel, settings.s_div, settings.s_acc, dose_per_frame, angpix,
                                  coords_angpix, absolute=settings.absolute)
    return fit_tracks(cc, init, positions_px, max(sv, 1e-20), max(sd, 1e-20), sa, max_iters=settings.max_iters,
                      eps=settings.eps, cc_origin=origin, sq_exp=settings.sq_exp, max_ed=settings.max_ed,
                      backend=settings.fit_backend).tracks_px
