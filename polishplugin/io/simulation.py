"""Files of ``polishplugin simulate`` that RELION does not have: the atomic model it may start from and
the ground truth it leaves in ``ground_truth/``.

* :func:`read_model_atoms`: atoms (Å, centred on their centre of mass) and atomic numbers of a
  PDB/mmCIF file (gemmi);
* ``truth.npz`` (:func:`write_truth`, :func:`read_truth`): the planted arrays (tracks in Å in
  run_data.star order, drift, B-factors, sigmas, ...) and the parameters as JSON;
* ``truth.star`` (:func:`write_truth_star`, :func:`read_truth_star`): ``data_general`` (planted
  sigmas, dose, pixel size, box, MTF applied, phantom, preset, seed) and ``data_perframe_bfactors``
  (the layout of polishing's ``bfactors.star``, :func:`polishplugin.io.polish.read_bfactors` reads it).

The simulated project's RELION files are written by the readers' own modules (particles, movies, MRC,
MTF, postprocess.star, tracks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as L
from .polish import FrameBfactors, read_bfactors
from .star import StarError, read_star, write_star

__all__ = ["ModelError", "read_model_atoms", "truth_paths", "write_truth", "read_truth", "write_truth_star",
           "read_truth_star"]

_PERFRAME_BLOCK = "perframe_bfactors"


class ModelError(ValueError):
    """An atomic model file that is missing or cannot be read (one sentence naming the file)."""


def read_model_atoms(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Atom positions (Å, centred on their centre of mass, weighted by atomic number) and atomic
    numbers from a PDB/mmCIF file: first model, no hydrogens, ligands or waters."""
    path = Path(path)
    try:
        import gemmi
    except ImportError as exc:  # pragma: no cover - gemmi is a dependency
        raise ModelError(f"--model {path} needs the gemmi package ({exc})") from None
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError/ValueError on bad files
        raise ModelError(f"model file {path} cannot be read: {exc}") from None
    st.setup_entities()
    st.remove_hydrogens()
    try:
        st.remove_ligands_and_waters()
    except RuntimeError:  # files without entity information: keep every atom
        pass
    positions, z = [], []
    for chain in st[0]:
        for res in chain:
            for atom in res:
                positions.append(atom.pos.tolist())
                z.append(atom.element.atomic_number)
    if not positions:
        raise ModelError(f"model file {path} contains no atoms")
    xyz = np.array(positions, np.float64)
    w = np.array(z, np.float64)
    return xyz - (xyz * w[:, None]).sum(0) / w.sum(), w


def truth_paths(project_dir: str | os.PathLike) -> dict[str, Path]:
    """``ground_truth/`` of a simulated project: its folder, ``true_map.mrc``, ``truth.npz``, ``truth.star``."""
    gt = Path(project_dir) / "ground_truth"
    return {"ground_truth_dir": gt, "true_map": gt / "true_map.mrc", "truth": gt / "truth.npz",
            "truth_star": gt / "truth.star"}


def _params_json(params: dict) -> str:
    return json.dumps({k: v for k, v in params.items()}, sort_keys=True, default=str)


def write_truth(path: str | os.PathLike, arrays: dict[str, np.ndarray], params: dict) -> None:
    """``truth.npz``: ``arrays`` plus ``params_json`` (the parameters), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays, params_json=_params_json(params))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def read_truth(project_dir: str | os.PathLike) -> dict:
    """The ground truth of a simulated project: ``truth.npz``'s arrays (``tracks_a`` (n, frames, 2) Å in
    run_data.star order, ``bfactors``, ``scales``, ``sigmas`` (s_vel, s_div, s_acc), ...) plus ``params``."""
    path = truth_paths(project_dir)["truth"]
    if not path.is_file():
        raise StarError(f"ground-truth file {path} does not exist")
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["params"] = json.loads(str(d.pop("params_json")))
    return d


def write_truth_star(path: str | os.PathLike, params: dict, phantom_source: str, bfactors: FrameBfactors) -> None:
    """``truth.star``: the planted sigmas and set-up (``data_general``) and per-frame B-factors."""
    mtf = "" if params["apply_mtf"] else "NOT "
    write_star(path, {
        "general": {L.MOTION_PARAM_SIGMA_VELOCITY: params["s_vel"], L.MOTION_PARAM_SIGMA_DIVERGENCE: params["s_div"],
                    L.MOTION_PARAM_SIGMA_ACCELERATION: params["s_acc"],
                    L.MICROGRAPH_DOSE_RATE: params["dose_per_frame"], L.IMAGE_PIXEL_SIZE: params["angpix"],
                    L.IMAGE_SIZE: params["box"], L.MTF_APPLIED: int(bool(params["apply_mtf"])),
                    L.SIMULATION_PHANTOM: phantom_source.replace(" ", "_"),
                    L.SIMULATION_PRESET: params["preset"], L.RANDOM_SEED: params["seed"]},
        _PERFRAME_BLOCK: pd.DataFrame({L.MOVIE_FRAME_NUMBER: np.asarray(bfactors.frames),
                                       L.BFACTOR_USED_FOR_SHARPENING: np.asarray(bfactors.bfactor_a2),
                                       L.FITTED_INTERCEPT_GUINIER_PLOT: np.asarray(bfactors.log_scale)})},
        comments=["ground truth of polishplugin simulate: planted per-frame B-factors (0-based frames, "
                  "third column ln(scale)), planted motion sigmas (s_vel A/dose, s_div A, s_acc A/dose)",
                  f"the MTF in mtf_simulated.star was {mtf}applied to the movie frames",
                  "parameters: " + _params_json(params)])


def read_truth_star(path: str | os.PathLike) -> tuple[dict, FrameBfactors]:
    """``(general, per-frame B-factors)`` of a ``truth.star``."""
    blocks = read_star(path)
    if "general" not in blocks:
        raise StarError(f"ground-truth STAR file {path} has no data_general block")
    general = {k: (v.item() if hasattr(v, "item") else v) for k, v in blocks["general"].iloc[0].items()}
    return general, read_bfactors(path)
