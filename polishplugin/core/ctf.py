"""Contrast transfer function with RELION's formula (``src/ctf.h CTF::getCTF``).

``gamma = K1 (Axx X^2 + 2 Axy X Y + Ayy Y^2) + K2 (X^2+Y^2)^2 - K5 - K3`` and
``CTF = -sin(gamma) exp(-B/4 (X^2+Y^2)) * scale``, with ``X, Y`` in 1/Å, defocus positive for
underfocus, astigmatism angle in degrees, Cs in mm, voltage in kV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fourier import frequency_grid

__all__ = ["CtfParams", "electron_wavelength_a", "gamma_and_envelope", "ctf_2d", "ctf_rfft_stack"]


@dataclass(frozen=True)
class CtfParams:
    """CTF parameters of one image (RELION labels in brackets)."""

    defocus_u_a: float  # rlnDefocusU
    defocus_v_a: float  # rlnDefocusV
    defocus_angle_deg: float = 0.0  # rlnDefocusAngle
    voltage_kv: float = 300.0  # rlnVoltage
    cs_mm: float = 2.7  # rlnSphericalAberration
    amplitude_contrast: float = 0.1  # rlnAmplitudeContrast
    phase_shift_deg: float = 0.0  # rlnPhaseShift
    bfactor_a2: float = 0.0  # rlnCtfBfactor
    scale: float = 1.0  # rlnCtfScalefactor


def electron_wavelength_a(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å (RELION's constants)."""
    volts = voltage_kv * 1e3
    return 12.2643247 / np.sqrt(volts * (1.0 + volts * 0.978466e-6))


def gamma_and_envelope(p: CtfParams, fx: np.ndarray, fy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phase ``gamma`` (radians) and B-factor envelope ``exp(-B/4 (X^2+Y^2))`` of the CTF at spatial
    frequencies ``fx, fy`` (1/Å, arrays of one shape): ``CTF = -sin(gamma) * envelope * scale``
    (the module formula; ``|gamma| < pi/2`` is the region before the CTF's first peak)."""
    lam = electron_wavelength_a(p.voltage_kv)
    k1 = np.pi * lam
    k2 = np.pi / 2.0 * p.cs_mm * 1e7 * lam ** 3
    q0 = p.amplitude_contrast
    k3 = np.arctan(q0 / np.sqrt(1.0 - q0 * q0))
    k4 = -p.bfactor_a2 / 4.0
    k5 = np.deg2rad(p.phase_shift_deg)
    az = np.deg2rad(p.defocus_angle_deg)
    c, s = np.cos(az), np.sin(az)
    q = np.array([[c, s], [-s, c]])
    a = q.T @ np.diag([-p.defocus_u_a, -p.defocus_v_a]) @ q
    u2 = fx * fx + fy * fy
    gamma = k1 * (a[0, 0] * fx * fx + 2 * a[0, 1] * fx * fy + a[1, 1] * fy * fy) + k2 * u2 * u2 - k5 - k3
    return gamma, np.exp(k4 * u2)


def ctf_2d(p: CtfParams, box_px: int, angpix: float) -> np.ndarray:
    """CTF on the rfft grid of a ``box_px`` square image, shape ``(box, box//2+1)`` float64."""
    ky, kx = frequency_grid((box_px, box_px))
    fx = kx / (box_px * angpix)
    fy = ky / (box_px * angpix)
    gamma, env = gamma_and_envelope(p, fx, fy)
    ctf = -np.sin(gamma) * env * p.scale
    small = np.abs(ctf) < 1e-8
    return np.where(small, np.where(ctf < 0, -1e-8, 1e-8), ctf)


def ctf_rfft_stack(params: list[CtfParams], box_px: int, angpix: float, phase_flipped: bool = False,
                   intact_first_peak: bool = False) -> np.ndarray:
    """CTFs of many images on the rfft grid, shape ``(n, box, box//2+1)`` float32 (:func:`ctf_2d` each).

    As RELION ``CTF::getCTF`` applies its options (3D auto-refine uses them): with ``intact_first_peak``
    the CTF is ``envelope * scale`` wherever ``|gamma| < pi/2``, i.e. 1 up to its first peak (times the
    envelope); with ``phase_flipped`` it is ``|CTF|``.
    """
    out = np.empty((len(params), box_px, box_px // 2 + 1), np.float32)
    for i, p in enumerate(params):
        out[i] = ctf_2d(p, box_px, angpix)
    if intact_first_peak:
        ky, kx = frequency_grid((box_px, box_px))
        for i, p in enumerate(params):
            gamma, env = gamma_and_envelope(p, kx / (box_px * angpix), ky / (box_px * angpix))
            out[i] = np.where(np.abs(gamma) < np.pi / 2, env * p.scale, out[i])
    return np.abs(out) if phase_flipped else out
