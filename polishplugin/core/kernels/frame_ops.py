"""Per-particle, per-frame multiply-accumulates used by polishing (frame recombination and FCC).

Both functions work on the Fourier coefficients of ``P`` particles, ``F`` frames and ``K``
coefficients (any trailing shape, flattened internally):

* :func:`frame_cross_sum`  ``out[p, k] = sum_f w[f, k] * a[p, f, k] * conj(b[p, k])``
  (e.g. ``a`` = per-frame observations, ``b`` = the prediction, ``w`` = dose weights: the FCC numerator)
* :func:`weighted_frame_sum` ``out[p, k] = sum_f W[f, k] * X[p, f, k]``
  (frame recombination with per-frame B-factor weights).

``backend``: ``"numpy"`` (float64/complex128 result), ``"opencl"`` (float32 on the device,
complex64 result; relative agreement ~1e-6) or ``"auto"`` (OpenCL when the default device is a GPU
and the problem is large enough to pay for the transfers, else numpy: on PoCL/CPU numpy is as fast
or faster, see bench/README.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["frame_cross_sum", "weighted_frame_sum", "AUTO_MIN_ELEMENTS"]

#: ``backend="auto"`` uses OpenCL from this many P*F*K elements on (see bench/README.md)
AUTO_MIN_ELEMENTS = 1 << 22


def _flatten(a: np.ndarray, lead: int) -> tuple[np.ndarray, tuple[int, ...]]:
    a = np.asarray(a)
    tail = a.shape[lead:]
    return a.reshape(a.shape[:lead] + (int(np.prod(tail, dtype=np.int64)),)), tail


def _choose(backend: str, n_elements: int) -> str:
    if backend == "auto":
        # memory-bound: on a CPU device (PoCL) the copies make OpenCL slower than numpy (bench/README.md)
        from polishplugin.core.opencl import runtime
        if n_elements < AUTO_MIN_ELEMENTS or not runtime.opencl_available():
            return "numpy"
        return "opencl" if runtime.get_context()[2].kind == "GPU" else "numpy"
    if backend not in ("numpy", "opencl"):
        raise ValueError(f"unknown backend {backend!r}")
    return backend


def frame_cross_sum(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None,
                    backend: str = "numpy", device=None) -> np.ndarray:
    """``out[p, k] = sum_f w[f, k] a[p, f, k] conj(b[p, k])``; ``a`` ``(P, F, *K)``, ``b`` ``(P, *K)``,
    ``w`` ``(F, *K)`` real (default 1).  Returns ``(P, *K)`` complex."""
    a2, tail = _flatten(a, 2)
    b2, tail_b = _flatten(b, 1)
    p, f, k = a2.shape
    if b2.shape != (p, k):
        raise ValueError(f"b has shape {np.shape(b)}, expected {(p,) + tail}")
    w2 = np.ones((f, k)) if w is None else np.broadcast_to(np.asarray(w, dtype=np.float64),
                                                           (f,) + tail).reshape(f, k)
    if _choose(backend, p * f * k) == "opencl":
        from polishplugin.core.opencl import frame_ops_cl
        return frame_ops_cl.frame_cross_sum(a2, b2, w2, device=device).reshape((p,) + tail)
    out = np.einsum("fk,pfk->pk", w2, a2) * np.conj(b2)
    return out.reshape((p,) + tail)


def weighted_frame_sum(x: np.ndarray, weights: np.ndarray, backend: str = "numpy", device=None) -> np.ndarray:
    """``out[p, k] = sum_f W[f, k] X[p, f, k]``; ``X`` ``(P, F, *K)`` real or complex, ``W`` ``(F, *K)`` real.

    Returns ``(P, *K)`` with X's kind (real -> float, complex -> complex)."""
    x2, tail = _flatten(x, 2)
    p, f, k = x2.shape
    w2 = np.broadcast_to(np.asarray(weights, dtype=np.float64), (f,) + tail).reshape(f, k)
    if _choose(backend, p * f * k) == "opencl":
        from polishplugin.core.opencl import frame_ops_cl
        out = frame_ops_cl.weighted_frame_sum(x2, w2, device=device)
        return out.reshape((p,) + tail)
    return np.einsum("fk,pfk->pk", w2, x2).reshape((p,) + tail)
