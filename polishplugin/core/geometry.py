"""Euler angles (RELION ZYZ, degrees) and point-group symmetry operators.

``euler_to_matrix(rot, tilt, psi)`` is RELION's ``Euler_angles2matrix``: ``A`` rotates the
reference into the particle frame, and a projection's Fourier pixel ``(x, y)`` samples the 3D
transform at ``A^T (x, y, 0)``.

Symmetry groups follow RELION's ``SymList`` axis conventions: ``Cn`` about z; ``Dn`` = ``Cn`` plus a
2-fold about x; ``T`` with 3-fold along (1,1,1) and 2-folds along x, y, z; ``O`` with 4-folds along
x, y, z; ``I`` in RELION's default ``I2`` orientation (2-folds along x, y, z, 5-fold in the yz plane).
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "euler_to_matrix", "matrix_to_euler", "symmetry_matrices", "symmetry_order", "rotation_about",
    "SymmetryError", "random_rotation_matrices",
]


class SymmetryError(ValueError):
    """An unknown or malformed symmetry name."""


def euler_to_matrix(rot_deg: float | np.ndarray, tilt_deg: float | np.ndarray,
                    psi_deg: float | np.ndarray) -> np.ndarray:
    """RELION ``Euler_angles2matrix``; vectorised: inputs broadcast, output ``(..., 3, 3)``."""
    a, b, g = (np.deg2rad(np.asarray(v, np.float64)) for v in (rot_deg, tilt_deg, psi_deg))
    a, b, g = np.broadcast_arrays(a, b, g)
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    m = np.empty(a.shape + (3, 3))
    m[..., 0, 0] = cg * cb * ca - sg * sa
    m[..., 0, 1] = cg * cb * sa + sg * ca
    m[..., 0, 2] = -cg * sb
    m[..., 1, 0] = -sg * cb * ca - cg * sa
    m[..., 1, 1] = -sg * cb * sa + cg * ca
    m[..., 1, 2] = sg * sb
    m[..., 2, 0] = sb * ca
    m[..., 2, 1] = sb * sa
    m[..., 2, 2] = cb
    return m


def matrix_to_euler(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`euler_to_matrix` (RELION ``Euler_matrix2angles``), degrees.

    For ``tilt`` near 0 or 180 the split between rot and psi is arbitrary; rot is set to 0.
    """
    m = np.asarray(m, np.float64)
    sb = np.hypot(m[..., 2, 0], m[..., 2, 1])
    tilt = np.arctan2(sb, m[..., 2, 2])
    regular = sb > 16 * np.finfo(np.float64).eps
    rot = np.where(regular, np.arctan2(m[..., 2, 1], m[..., 2, 0]), 0.0)
    psi = np.where(regular, np.arctan2(m[..., 1, 2], -m[..., 0, 2]),
                   np.arctan2(-m[..., 1, 0], m[..., 0, 0]) * np.sign(m[..., 2, 2] + 1e-300))
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def rotation_about(axis: np.ndarray | tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """Right-handed rotation matrix by ``angle_deg`` about ``axis`` (Rodrigues)."""
    u = np.asarray(axis, np.float64)
    u = u / np.linalg.norm(u)
    t = np.deg2rad(angle_deg)
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def random_rotation_matrices(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniformly distributed rotation matrices ``(n, 3, 3)`` (from normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], axis=1)


def _close_group(generators: list[np.ndarray], max_order: int = 120) -> np.ndarray:
    """All products of the generators (a finite group), identity first."""
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for g, h in itertools.product(frontier, generators):
            p = h @ g
            if not any(np.allclose(p, q, atol=1e-8) for q in group):
                group.append(p)
                new.append(p)
        frontier = new
        if len(group) > max_order:
            raise SymmetryError("symmetry generators do not close into a finite group")
    return np.array(group)


def _parse(name: str) -> tuple[str, int]:
    s = name.strip().upper()
    if not s:
        raise SymmetryError("empty symmetry name")
    if s in ("T", "O"):
        return s, 0
    if s in ("I", "I1", "I2", "I3", "I4"):
        return "I" + (s[1:] or "2"), 0
    if s[0] in "CD" and s[1:].isdigit() and int(s[1:]) >= 1:
        return s[0], int(s[1:])
    raise SymmetryError(f"symmetry '{name}' is not one of Cn, Dn, T, O, I (I1-I4)")


def symmetry_matrices(name: str) -> np.ndarray:
    """Rotation matrices ``(n_ops, 3, 3)`` of a point group, identity first.

    Supported: ``C1``, ``Cn``, ``Dn``, ``T``, ``O``, ``I`` (= ``I2``), ``I1``, ``I3``, ``I4``.
    """
    kind, n = _parse(name)
    if kind == "C":
        return np.array([rotation_about((0, 0, 1), 360.0 * i / n) for i in range(n)])
    if kind == "D":
        cn = [rotation_about((0, 0, 1), 360.0 / n)] if n > 1 else []
        return _close_group(cn + [rotation_about((1, 0, 0), 180.0)])
    if kind == "T":
        return _close_group([rotation_about((1, 1, 1), 120.0), rotation_about((0, 0, 1), 180.0)])
    if kind == "O":
        return _close_group([rotation_about((0, 0, 1), 90.0), rotation_about((1, 1, 1), 120.0)])
    return _close_group(_icosahedral_generators(kind))


def _icosahedral_generators(kind: str) -> list[np.ndarray]:
    phi = (1 + np.sqrt(5)) / 2
    # I2: 2-folds on x, y, z; a 5-fold along (0, 1, phi) (in the yz plane), as RELION's default I.
    base = [rotation_about((0, 0, 1), 180.0), rotation_about((0, 1, phi), 72.0),
            rotation_about((1, 0, 0), 180.0)]
    if kind == "I2":
        return base
    if kind == "I1":  # I2 rotated 90 degrees about z (5-fold in the xz plane)
        rz = rotation_about((0, 0, 1), 90.0)
        return [rz @ g @ rz.T for g in base]
    # I3 / I4: a 5-fold on z; I4 is I3 rotated by 180 degrees about the y axis' 2-fold mate.
    tilt = np.rad2deg(np.arctan2(1.0, phi))
    r = rotation_about((1, 0, 0), tilt if kind == "I3" else -tilt)
    return [r @ g @ r.T for g in base]


def symmetry_order(name: str) -> int:
    """Number of operators of a point group (e.g. D2 -> 4, I -> 60)."""
    return len(symmetry_matrices(name))
