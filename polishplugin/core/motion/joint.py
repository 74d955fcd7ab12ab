"""All training micrographs' track fits as ONE L-BFGS problem (training speed, ALGORITHMS 1.14).

The motion objective is a sum over micrographs with no shared parameter, so minimising the sum is the
same problem as RELION's one fit per micrograph.  Solving it jointly pays the per-call costs once per
evaluation instead of once per micrograph: one interpolation call over every particle-frame map of every
micrograph (one OpenCL launch), one batched matrix product for the GP bases (micrographs padded to the
largest particle count and basis size), one scipy L-BFGS driver.  Padded particles and basis components
carry zero basis rows and zero prior weight: their gradient is exactly zero, so they stay at zero.

Stopping: ``ftol`` (relative decrease) and ``gtol = eps * max(1, median_m ||x0_m||)`` on the joint
max-norm gradient.  A micrograph whose own fit would have stopped earlier keeps improving while the
others converge, so joint tracks are at least as converged as separate ones (documented difference to
RELION, which stops each micrograph on its own test).

``MicrographFit`` holds one micrograph's fixed data; :class:`JointFit` the padded batch and the GP-basis
cache (the eigenvectors depend on ``sig_div`` only and the eigenvalues scale with ``sig_vel^2``, so a
search that changes ``sig_vel`` alone reuses the decomposition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from .gp_basis import basis_from_eigen, kernel_eigen, tracks_to_params
from .objective import catmull_rom

__all__ = ["MicrographFit", "JointFit", "one_blas_thread"]


def one_blas_thread():
    """BLAS on one thread (a context manager): OpenBLAS results change in the last bits with the thread
    count (checked here: 1.4e-13 differences in a product, and LAPACK's eigh uses it too), and the training
    search on a flat TSC must see the same numbers whatever the ranks and threads; the products are small,
    so nothing is lost (threads would only spin)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a listed dependency
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


@dataclass
class MicrographFit:
    """One micrograph: particle positions (units of ``sig_div_px``) and its particle-frame maps' index range."""

    positions_px: np.ndarray  # (n_p, 2)
    n_frames: int


class JointFit:
    """Fit every micrograph's tracks at once for given sigmas (pixels per micrograph).

    ``interp(xy (K, 2), origin) -> (values, grad)`` interpolates the ``K = sum_m n_p(m) n_f`` maps in
    micrograph, particle, frame order; ``None`` uses :func:`.objective.catmull_rom` on ``maps``.
    ``map_centres (K, 2)``: maps cut around each track's start (``cross_correlation.crop_windows``):
    map k at index ``origin`` is the shift ``map_centres[k]``.
    """

    def __init__(self, mics: list[MicrographFit], maps: np.ndarray | None, origin: int, interp=None,
                 sq_exp: bool = False, map_centres: np.ndarray | None = None, precondition: bool = True):
        self.mics = mics
        self.n_f = int(mics[0].n_frames)
        if any(int(m.n_frames) != self.n_f for m in mics):
            raise ValueError("all micrographs of a joint fit need the same number of frames")
        self.counts = np.array([int(np.asarray(m.positions_px).shape[0]) for m in mics])
        if self.counts.min() < 2:  # RELION does not optimise single-particle micrographs; training skips them
            raise ValueError("every micrograph of a joint fit needs at least 2 particles")
        self.n_m, self.pmax = len(mics), int(self.counts.max())
        self.valid = np.arange(self.pmax)[None, :] < self.counts[:, None]  # (n_m, P)
        self.maps, self.origin, self.interp, self.sq_exp = maps, int(origin), interp, sq_exp
        #: (K, 2) shift at each map's index ``origin`` (maps cut around each track's start), or None
        self.map_centres = None if map_centres is None else np.asarray(map_centres, np.float64).reshape(-1, 2)
        #: (micrograph, sig_div) -> kernel_eigen's (lam, V)
        self._eig: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}
        self.n_evals = 0
        self.precondition = precondition

    # ------------------------------------------------------------------ GP bases (padded)
    def _bases(self, sig_vel: np.ndarray, sig_div: np.ndarray):
        """Padded ``B (n_m, P, D)`` and ``lam (n_m, D)`` (zeros where a micrograph has fewer)."""
        per = []
        for i, m in enumerate(self.mics):
            key = (i, float(sig_div[i]))
            if key not in self._eig:
                if len(self._eig) > 4 * self.n_m:  # a search visits a few s_div values at a time
                    self._eig.clear()
                self._eig[key] = kernel_eigen(m.positions_px, sig_div[i], self.sq_exp)
            per.append(basis_from_eigen(*self._eig[key], sig_vel[i]))
        d = max(b.shape[1] for b, _ in per)
        basis = np.zeros((self.n_m, self.pmax, d))
        lams = np.zeros((self.n_m, d))
        for i, (b, lam) in enumerate(per):
            basis[i, :b.shape[0], :b.shape[1]] = b
            lams[i, :lam.size] = lam
        return basis, lams, per

    # ------------------------------------------------------------------ parameters
    def _split(self, x):
        n_m, p, f, d = self.n_m, self.pmax, self.n_f, self.d
        pos0 = x[:n_m * p * 2].reshape(n_m, p, 2)
        c = x[n_m * p * 2:].reshape(n_m, f - 1, d, 2)
        return pos0, c

    def tracks_padded(self, x):
        pos0, c = self._split(x)
        n_m, p, f, d = self.n_m, self.pmax, self.n_f, self.d
        vel = np.matmul(self.basis, c.transpose(0, 2, 1, 3).reshape(n_m, d, (f - 1) * 2)).reshape(n_m, p, f - 1, 2)
        tracks = np.empty((n_m, p, f, 2))
        tracks[:, :, 0] = pos0
        np.cumsum(vel, axis=2, out=tracks[:, :, 1:])
        tracks[:, :, 1:] += pos0[:, :, None, :]
        return tracks

    def objective(self, x):
        self.n_evals += 1
        n_m, p, f, d = self.n_m, self.pmax, self.n_f, self.d
        tracks = self.tracks_padded(x)
        val, g = self._sample(tracks[self.valid].reshape(-1, 2))
        gp = np.zeros((n_m, p, f, 2))
        gp[self.valid] = g.reshape(-1, f, 2)
        e = -float(val.sum())
        _, c = self._split(x)
        grad = np.empty_like(x)
        gpos, gc = self._split(grad)
        gpos[:] = -gp.sum(axis=2)
        tail = np.cumsum(gp[:, :, ::-1], axis=2)[:, :, ::-1]  # tail[m, p, f] = sum_{f' >= f} g
        bt = np.matmul(self.basis.transpose(0, 2, 1), tail[:, :, 1:].reshape(n_m, p, (f - 1) * 2))
        gc[:] = -bt.reshape(n_m, d, f - 1, 2).transpose(0, 2, 1, 3)
        e += float((c * c).sum())
        gc += 2.0 * c
        if f > 2 and self.acc_w is not None:
            wl = self.acc_w[:, None, :, None]  # (n_m, 1, D, 1): lam_d / sig_acc^2 (0 where off or padded)
            dcf = c[:, 1:] - c[:, :-1]
            e += float((wl * dcf * dcf).sum())
            gc[:, :-1] -= 2.0 * wl * dcf
            gc[:, 1:] += 2.0 * wl * dcf
        return e, grad

    def _sample(self, xy):
        """Map values and gradients at positions ``xy (K, 2)`` (one per map, before the window shift)."""
        if self.map_centres is not None:
            xy = xy - self.map_centres
        if self.interp is None:
            assert self.maps is not None  # the maps live on the host unless a device interpolator holds them
            return catmull_rom(self.maps, xy, self.origin)
        return self.interp(xy, self.origin)

    # ------------------------------------------------------------------ preconditioning
    def _curvature(self, x0) -> np.ndarray:
        """Median CC peak curvature per micrograph at the start (second differences at +-1 px)."""
        xy = self.tracks_padded(x0)[self.valid].reshape(-1, 2)
        v0 = self._sample(xy)[0]
        k = np.zeros(xy.shape[0])
        for axis in range(2):
            e = np.zeros(2)
            e[axis] = 1.0
            k += 2 * v0 - self._sample(xy + e)[0] - self._sample(xy - e)[0]
        per_point = np.zeros(self.valid.shape + (self.n_f,))
        per_point[self.valid] = (0.5 * k).reshape(-1, self.n_f)
        return np.array([max(float(np.median(per_point[i, :self.counts[i]])), 0.0) for i in range(self.n_m)])

    def _jacobi_scale(self, x0, lams, acc_w) -> np.ndarray:
        """``1/sqrt(diag H)`` of the objective's Hessian, approximated with one curvature per micrograph:
        start positions ``F kappa``; coefficient (f, d): ``2 + acceleration + kappa lam_d (F-1-f)`` (a step's
        velocity moves every later frame).  L-BFGS on the scaled variables needs far fewer steps; the
        minimum is the same."""
        n_m, p, f = self.n_m, self.pmax, self.n_f
        kappa = self._curvature(x0)
        h_pos = np.maximum(f * kappa, 1.0)[:, None, None] * np.ones((n_m, p, 2))
        later = (f - 1 - np.arange(f - 1)).astype(np.float64)  # frames moved by step f
        h_c = 2.0 + kappa[:, None, None] * later[None, :, None] * lams[:, None, :]  # (n_m, F-1, D)
        if acc_w is not None and np.any(acc_w > 0) and f > 2:
            mult = np.full(f - 1, 4.0)
            mult[0] = mult[-1] = 2.0
            h_c = h_c + mult[None, :, None] * acc_w[:, None, :]
        h = np.concatenate([h_pos.ravel(), np.repeat(h_c[..., None], 2, axis=-1).ravel()])
        return 1.0 / np.sqrt(h)

    # ------------------------------------------------------------------ fit
    def fit(self, sig_vel_px, sig_div_px, sig_acc_px, init_tracks: list[np.ndarray], max_iters: int = 10000,
            eps: float = 1e-5, ftol: float = 1e-9) -> list[np.ndarray]:
        """Tracks ``(n_p, n_f, 2)`` per micrograph.  Sigmas: scalars or one value per micrograph
        (``sig_acc <= 0``: no acceleration prior)."""
        def per_mic(v):
            return np.broadcast_to(np.asarray(v, np.float64), (self.n_m,))

        sv, sd, sa = per_mic(sig_vel_px), per_mic(sig_div_px), per_mic(sig_acc_px)
        self.basis, lams, per = self._bases(sv, sd)
        self.d = self.basis.shape[2]
        with np.errstate(divide="ignore"):
            w = np.where(sa[:, None] > 0, lams / np.where(sa > 0, sa, 1.0)[:, None] ** 2, 0.0)
        self.acc_w = w if np.any(w > 0) else None
        n_m, p, f, d = self.n_m, self.pmax, self.n_f, self.d
        x0 = np.zeros(n_m * p * 2 + n_m * (f - 1) * d * 2)
        pos0, c0 = self._split(x0)
        norms = []
        for i, (t, (b, lam)) in enumerate(zip(init_tracks, per)):
            t = np.asarray(t, np.float64)
            n_p = t.shape[0]
            xi = tracks_to_params(t, b, lam)
            pos0[i, :n_p] = xi[:2 * n_p].reshape(n_p, 2)
            c0[i, :, :b.shape[1]] = xi[2 * n_p:].reshape(f - 1, b.shape[1], 2)
            norms.append(float(np.linalg.norm(xi)))
        scale = self._jacobi_scale(x0, lams, w) if self.precondition else np.ones_like(x0)
        y0 = x0 / scale
        gtol = eps * max(1.0, float(np.median(norms)))

        def scaled(y):
            e, g = self.objective(y * scale)
            return e, g * scale

        with one_blas_thread():
            res = minimize(scaled, y0, jac=True, method="L-BFGS-B",
                           options={"maxcor": 6, "maxiter": int(max_iters), "gtol": gtol, "ftol": ftol,
                                    "maxls": 40})
        tracks = self.tracks_padded(res.x * scale)
        self.n_iter = int(res.nit)
        return [np.nan_to_num(tracks[i, :self.counts[i]], nan=0.0, posinf=0.0, neginf=0.0) for i in range(n_m)]
