"""One micrograph's particle frames as motion estimation and training read them (no file I/O).

:class:`MotionData` holds what the fits use; ``polishplugin.programs._polish_project.MicrographData`` adds
the movie it was read from, ``polishplugin.testing.motion_synthetic.SyntheticMicrograph`` the planted tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MotionData"]


@dataclass
class MotionData:
    """Particle frames of one micrograph (Fourier conventions: ``polishplugin.core.motion.prepare``)."""

    name: str
    positions_px: np.ndarray             # (n_p, 2) rlnCoordinateX/Y
    frames_rfft: np.ndarray              # (n_p, n_f, N, N//2+1) complex64 observed particle frames
    pred_own_rfft: np.ndarray            # (n_p, N, N//2+1) complex64 reference prediction (own half map)
    pred_opposite_rfft: np.ndarray       # (n_p, N, N//2+1) complex64 prediction from the other half map
    initial_tracks_px: np.ndarray        # (n_p, n_f, 2) starting tracks
    dose_per_frame: float                # e/Å^2
    angpix: float                        # particle pixel size (Å)
    coords_angpix: float                 # pixel size of the coordinates (Å)
    box: int                             # particle box N (px)
    particle_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows of the particle table
