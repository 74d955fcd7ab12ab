"""Make a soft solvent mask from a map: low-pass, threshold, extend, soft edge (relion_mask_create).

Example (RELION tutorial, step 22):
  polishplugin mask_create --i Refine3D/job019/run_class001.mrc --o MaskCreate/job020/mask.mrc \\
      --lowpass 15 --ini_threshold 0.005 --extend_inimask 0 --width_soft_edge 6

The output is a float32 MRC in [0, 1] with the input's pixel size.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from ..io.mrc import read_mrc, write_mrc
from ..core.mask import auto_mask
from ._cli import ProgramError

__all__ = ["add_args", "main"]

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    """RELION ``relion_mask_create`` options (names and defaults)."""
    parser.add_argument("--i", required=True, help="Input map to make the mask from")
    parser.add_argument("--o", default="mask.mrc", help="Output mask")
    parser.add_argument("--angpix", type=float, default=-1.0, help="Pixel size in Å (-1: from the header)")
    parser.add_argument("--lowpass", type=float, default=-1.0, help="Low-pass the map at this resolution (Å; <=0: no)")
    parser.add_argument("--ini_threshold", type=float, default=0.01, help="Initial binarisation threshold")
    parser.add_argument("--extend_inimask", type=float, default=0.0,
                        help="Extend the initial binary mask by this many pixels (negative: shrink)")
    parser.add_argument("--width_soft_edge", type=float, default=0.0, help="Width (px) of the raised-cosine soft edge")
    parser.add_argument("--invert", action="store_true", help="Invert the final mask")
    parser.add_argument("--j", type=int, default=1, help="Number of threads (accepted for RELION compatibility)")


def main(args: argparse.Namespace) -> int:
    """Read the map, build the mask with :func:`polishplugin.core.mask.auto_mask`, write it."""
    volume, header_angpix = read_mrc(args.i)
    if volume.ndim != 3:
        raise ProgramError(f"map {args.i} is not a 3D map (shape {volume.shape})")
    angpix = args.angpix if args.angpix > 0 else header_angpix
    if args.lowpass > 0 and not angpix > 0:
        raise ProgramError(f"map {args.i} has no pixel size in its header; give --angpix for --lowpass")
    if args.width_soft_edge < 0:
        raise ProgramError("--width_soft_edge must be >= 0")
    vmax = float(volume.max())
    if args.ini_threshold > vmax and args.extend_inimask <= 0:
        log.warning("WARNING: --ini_threshold %g is above the map maximum %g: the mask will be empty",
                    args.ini_threshold, vmax)
    mask = auto_mask(volume, angpix, args.ini_threshold, args.lowpass, args.extend_inimask,
                     args.width_soft_edge, args.invert)
    write_mrc(args.o, mask, angpix)
    log.info("Wrote %s: %.1f %% of the box above 0.5 (%d voxels)", args.o, 100 * float(np.mean(mask > 0.5)),
             int(np.count_nonzero(mask > 0.5)))
    return 0
