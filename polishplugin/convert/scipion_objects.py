"""Scipion objects <-> RELION STAR files (needs pyworkflow and pwem).

Conventions (ALGORITHMS.md 0.2 and pwem's, as the RELION plugin uses them so that alignments
travel between plugins):

* A particle's 3D alignment is a pwem ``Transform`` of type ``ALIGN_PROJ`` whose 4x4 matrix is
  ``inv([[A, -s], [0, 1]]) = [[Aᵀ, Aᵀ s], [0, 1]]`` with ``A`` RELION's Euler matrix
  (``Euler_angles2matrix(rot, tilt, psi)``) and ``s`` the origin offset (``rlnOriginX/YAngst``) in
  *pixels*.  :func:`relion_to_matrix` / :func:`matrix_to_relion` do this conversion.
* The half set of each particle is the attribute ``_rlnRandomSubset`` (1 or 2).
* Particle columns without a Scipion field travel as ``_rln<Label>`` attributes, so
  STAR -> Scipion -> STAR keeps every column.
* A movie's ``MovieAlignment`` holds the RELION global shifts (``rlnMicrographShiftX/Y``, unbinned
  movie pixels, same sign) of frames first..last; the movie keeps the path of its per-movie STAR in
  ``_rlnMicrographMetadata``.
* What scipion-em-relion (5.0.2) reads is stored in its names and formats, so that its conversion code
  (e.g. its Bayesian polishing's input step) writes files our programs read back: a movie's local motion
  model as ``_rlnMotionModelCoeff`` (JSON list of the 36 coefficients), its hot pixels as ``_rlnHotPixels``
  (JSON list of ``[x, y]``), its optics group as ``_rlnOpticsGroup``; a set's optics table as a STAR
  ``data_optics`` text in ``Acquisition.opticsGroupInfo`` (pixel sizes, MTF, gain and defect file);
  ``micName`` is Scipion's (the file's base name) on movies and particle coordinates, the RELION name
  (``MotionCorr/job002/Movies/...``) travels as ``_polishMicrographName`` and is what our own writers use.
  Sets written by older versions (``_rlnMotionModelCoeffs`` CSV list, ``_polishOpticsTable`` JSON, full
  ``micName``) are still read.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyworkflow.object as pwobj
from pwem import constants as emcts
from pwem import objects as emobj

from ..constants import RANDOM_SUBSET_ATTR
from ..core.geometry import euler_to_matrix, matrix_to_euler
from ..io import labels as L
from ..io.movies import (MicrographTable, MovieMetadata, read_movie_metadata, write_corrected_micrographs,
                     write_movie_metadata)
from ..io.particles import ParticleTable
from ..io.star import StarError, join_image_name, read_star, split_image_name, write_star

__all__ = [
    "scipion_file_path", "mrc_path", "relion_to_matrix", "matrix_to_relion", "table_to_particles", "particles_to_table",
    "micrographs_to_movies", "movies_to_micrographs", "detector_settings", "DETECTOR_KEYS", "make_volume",
    "make_mask", "make_fsc",
]

# Columns mapped onto Scipion fields (everything else travels as an _rln<Label> attribute).
_MAPPED = {L.IMAGE_NAME, L.MICROGRAPH_NAME, L.COORDINATE_X, L.COORDINATE_Y, L.DEFOCUS_U, L.DEFOCUS_V,
           L.DEFOCUS_ANGLE, L.PHASE_SHIFT, L.ANGLE_ROT, L.ANGLE_TILT, L.ANGLE_PSI, L.ORIGIN_X_ANGST,
           L.ORIGIN_Y_ANGST, L.OPTICS_GROUP, L.RANDOM_SUBSET, L.CTF_MAX_RESOLUTION,
           L.CTF_FIGURE_OF_MERIT, L.CLASS_NUMBER}
_MOTION_COEFFS_ATTR = "_rlnMotionModelCoeff"  # scipion-em-relion's: JSON list
_OLD_MOTION_COEFFS_ATTR = "_rlnMotionModelCoeffs"  # before: CsvList (still read)
_HOT_PIXELS_ATTR = "_rlnHotPixels"  # scipion-em-relion's: JSON list of [x, y]
_MIC_NAME_ATTR = "_polishMicrographName"  # the RELION micrograph name (micName is its base name)
_METADATA_ATTR = "_rlnMicrographMetadata"
#: detector settings of a movie (its per-movie STAR's labels): gain, defects, binning, EER rendering
DETECTOR_KEYS = ("gain", "defect_file", "binning", "eer_upsampling", "eer_grouping")
_DETECTOR_ATTRS = {"gain": "_rlnMicrographGainName", "defect_file": "_rlnMicrographDefectFile",
                   "binning": "_rlnMicrographBinning", "eer_upsampling": "_rlnEERUpsampling",
                   "eer_grouping": "_rlnEERGrouping"}
_OPTICS_ATTR = "_polishOpticsTable"  # before: optics table as JSON (still read)
_GROUP_ATTR = "_rlnOpticsGroup"
_COORD_X_ATTR = "_rlnCoordinateX"
_COORD_Y_ATTR = "_rlnCoordinateY"


# ------------------------------------------------------------------ file names
_FORMAT_SUFFIXES = (":mrcs", ":mrc")


def scipion_file_path(obj_or_name) -> str:
    """A Scipion object's file name (or a name) without Scipion's ``:mrc``/``:mrcs`` format suffix."""
    name = obj_or_name if isinstance(obj_or_name, str) else obj_or_name.getFileName()
    for suffix in _FORMAT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def mrc_path(obj_or_name) -> str:
    """Absolute file name of a Scipion image/volume (or a Scipion file name) without its format suffix."""
    return os.path.abspath(scipion_file_path(obj_or_name))


# ------------------------------------------------------------------ geometry
def _inverse_rigid(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rotation + translation matrix ([[R, t]] -> [[Rᵀ, -Rᵀ t]]); general inverse
    when the 3x3 block is not a rotation (a scaled transform)."""
    rotation = matrix[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9):
        return np.linalg.inv(matrix)
    out = np.eye(4)
    out[:3, :3] = rotation.T
    out[:3, 3] = -rotation.T @ matrix[:3, 3]
    return out


def relion_to_matrix(rot_deg: float, tilt_deg: float, psi_deg: float,
                     shift_x_px: float, shift_y_px: float, shift_z_px: float = 0.0) -> np.ndarray:
    """The 4x4 pwem projection-alignment matrix of a RELION pose (angles in degrees, origin in px)."""
    a = np.asarray(euler_to_matrix(rot_deg, tilt_deg, psi_deg), dtype=np.float64)
    forward = np.eye(4)
    forward[:3, :3] = a
    forward[:3, 3] = -np.array([shift_x_px, shift_y_px, shift_z_px], dtype=np.float64)
    return _inverse_rigid(forward)


def matrix_to_relion(matrix: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Inverse of :func:`relion_to_matrix`: ``(rot, tilt, psi, shift_x_px, shift_y_px, shift_z_px)``."""
    forward = _inverse_rigid(np.asarray(matrix, dtype=np.float64))
    rot, tilt, psi = matrix_to_euler(forward[:3, :3])
    shifts = -forward[:3, 3]
    return (float(rot), float(tilt), float(psi), float(shifts[0]), float(shifts[1]), float(shifts[2]))


# ------------------------------------------------------------------ attributes
def _to_attr(value):
    if isinstance(value, (bool, np.bool_)):
        return pwobj.Integer(int(value))
    if isinstance(value, (int, np.integer)):
        return pwobj.Integer(int(value))
    if isinstance(value, (float, np.floating)):
        return pwobj.Float(float(value))
    return pwobj.String(str(value))


def _extra_attrs(obj) -> dict:
    """``{rlnLabel: value}`` of the ``_rln*`` attributes of a Scipion object."""
    out = {}
    for name, attr in obj.getAttributes():
        if name.startswith("_rln") and name not in (RANDOM_SUBSET_ATTR, _MOTION_COEFFS_ATTR, _METADATA_ATTR,
                                                    _COORD_X_ATTR, _COORD_Y_ATTR, _GROUP_ATTR,
                                                    _OLD_MOTION_COEFFS_ATTR, _HOT_PIXELS_ATTR):
            out[name[1:]] = attr.get()
    return out


# ------------------------------------------------------------------ particles
def _precise(particle, attr_name: str, integer_value, scale: float = 1.0) -> float:
    """RELION's float coordinate (micrograph pixels) kept beside Scipion's integer one (particle pixels:
    RELION's times ``scale``), unless Scipion moved it; else Scipion's divided by ``scale``."""
    attr = getattr(particle, attr_name, None)
    value = attr.get() if attr is not None else None
    if value is not None and abs(value * scale - float(integer_value)) <= 0.5 + 1e-6:
        return float(value)
    return float(integer_value) / scale


def _coordinate_scale(optics_row, angpix: float) -> float:
    """Scipion's particle coordinates are in particle pixels (its extraction scales them, and
    scipion-em-relion's polishing takes them so: binning = particle / movie pixel size); RELION's are in
    micrograph pixels, taken as the movies' (``rlnMicrographOriginalPixelSize``, unbinned micrographs).
    Returns particle coordinate / RELION coordinate; 1 where the optics row gives no movie pixel size."""
    mic_px = optics_row.get(L.MICROGRAPH_ORIGINAL_PIXEL_SIZE, None)
    try:
        mic_px = float(mic_px)
    except (TypeError, ValueError):
        return 1.0
    return mic_px / float(angpix) if mic_px > 0 and angpix > 0 else 1.0


def _acquisition(optics_row: pd.Series) -> emobj.Acquisition:
    acq = emobj.Acquisition()
    acq.setVoltage(float(optics_row[L.VOLTAGE]))
    acq.setSphericalAberration(float(optics_row[L.SPHERICAL_ABERRATION]))
    acq.setAmplitudeContrast(float(optics_row[L.AMPLITUDE_CONTRAST]))
    acq.setMagnification(10000.0)
    return acq


def _optics_with_absolute_mtf(table) -> "pd.DataFrame":
    """The optics table with ``rlnMtfFileName`` resolved against the RELION project folder.

    The set outlives the folder it was imported from as the working directory: programs later run in
    a protocol's folder, where a RELION-relative MTF name would not resolve.
    """
    optics = table.optics.copy()
    if L.MTF_FILE_NAME in optics.columns:
        resolved = [table.resolve(str(v)) if str(v).strip() else None for v in optics[L.MTF_FILE_NAME]]
        optics[L.MTF_FILE_NAME] = [str(r) if r is not None and r.exists() else v  # unfound: kept as written
                                   for r, v in zip(resolved, optics[L.MTF_FILE_NAME])]
    return optics


def optics_to_star_text(optics: pd.DataFrame) -> str:
    """An optics table as the STAR ``data_optics`` text scipion-em-relion keeps in
    ``Acquisition.opticsGroupInfo`` (its ``OpticsGroups.fromString`` reads it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optics.star"
        write_star(path, {"optics": optics.reset_index(drop=True)})
        return path.read_text()


def optics_from_star_text(text: str) -> pd.DataFrame | None:
    """The optics table of an ``opticsGroupInfo`` text; ``None`` when empty or unusable."""
    if not text or "data_optics" not in text:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optics.star"
        path.write_text(text)
        try:
            blocks = read_star(path)
        except StarError:
            return None
    optics = blocks.get("optics")
    return optics if optics is not None and len(optics) and L.OPTICS_GROUP in optics.columns else None


def _store_optics(image_set, optics: pd.DataFrame) -> None:
    """Keep ``optics`` in the set's acquisition (``opticsGroupInfo``), scipion-em-relion's place."""
    image_set.getAcquisition().opticsGroupInfo.set(optics_to_star_text(optics))


def _stored_optics(image_set) -> pd.DataFrame | None:
    """The optics table kept with a set: ``opticsGroupInfo``, else the older ``_polishOpticsTable``."""
    acq = image_set.getAcquisition()
    info = getattr(acq, "opticsGroupInfo", None) if acq is not None else None
    optics = optics_from_star_text(info.get() if info is not None else None)
    if optics is not None:
        return optics
    kept = getattr(image_set, _OPTICS_ATTR, None)
    text = kept.get() if kept is not None else None
    if not text and image_set.getFileName() and os.path.exists(image_set.getFileName()):
        text = image_set.getProperty(_OPTICS_ATTR, None)  # a set re-opened from its sqlite file
    return pd.read_json(io.StringIO(text), orient="split") if text else None


def _relion_mic_name(obj) -> str | None:
    """The RELION micrograph name of a movie or coordinate (``_polishMicrographName``, else ``micName``)."""
    full = getattr(obj, _MIC_NAME_ATTR, None)
    return full.get() if full is not None and full.get() else obj.getMicName()


def _set_mic_name(obj, relion_name: str) -> None:
    """Scipion's micName (base name) and the RELION name beside it."""
    obj.setMicName(os.path.basename(str(relion_name)))
    setattr(obj, _MIC_NAME_ATTR, pwobj.String(str(relion_name)))


def table_to_particles(table: ParticleTable, part_set, image_root: str | os.PathLike | None = None) -> None:
    """Fill an empty ``SetOfParticles`` from a particle table (one optics group: the first).

    Image file names are resolved against ``image_root`` (default: the table's project folder).
    """
    sizes = np.unique(table.optics[L.IMAGE_PIXEL_SIZE].to_numpy(dtype=np.float64))
    if len(sizes) > 1:
        raise ValueError(f"particle STAR file {table.path}: optics groups have different pixel sizes "
                         f"{list(sizes)}; a Scipion set has one sampling rate")
    optics = table.optics.iloc[0]
    angpix = float(sizes[0])
    part_set.setSamplingRate(angpix)
    part_set.setAcquisition(_acquisition(optics))
    # the optics table travels with the set (MTF names, groups, aberrations) where scipion-em-relion reads it
    _store_optics(part_set, _optics_with_absolute_mtf(table))
    groups = [int(g) for g in table.optics[L.OPTICS_GROUP]]
    acquisitions = {g: _acquisition(table.optics.iloc[r]) for r, g in enumerate(groups)}
    scales = {g: _coordinate_scale(table.optics.iloc[r], angpix) for r, g in enumerate(groups)}
    cols = table.particles.columns
    has_ctf = L.DEFOCUS_U in cols
    has_pose = L.ANGLE_ROT in cols and L.ANGLE_TILT in cols
    part_set.setHasCTF(has_ctf)
    part_set.setAlignmentProj() if has_pose else part_set.setAlignment(emcts.ALIGN_NONE)
    origins = table.origins_px()
    angles = table.angles_deg()
    records = table.particles.to_dict("records")
    for i, row in enumerate(records):
        particle = emobj.Particle()
        index, stack = split_image_name(row[L.IMAGE_NAME])
        path = Path(stack) if Path(stack).is_absolute() else (
            Path(image_root) / stack if image_root is not None else table.resolve(stack))
        particle.setLocation(index, str(path))
        particle.setSamplingRate(angpix)
        group = int(row.get(L.OPTICS_GROUP, optics[L.OPTICS_GROUP]))
        particle.setAcquisition(acquisitions[group].clone())
        setattr(particle, _GROUP_ATTR, pwobj.Integer(group))  # every item: the set's columns
        if has_ctf:
            ctf = emobj.CTFModel()
            du = float(row[L.DEFOCUS_U])
            ctf.setStandardDefocus(du, float(row.get(L.DEFOCUS_V, du)), float(row.get(L.DEFOCUS_ANGLE, 0.0)))
            if L.PHASE_SHIFT in row:
                ctf.setPhaseShift(float(row[L.PHASE_SHIFT]))
            if L.CTF_MAX_RESOLUTION in row:
                ctf.setResolution(float(row[L.CTF_MAX_RESOLUTION]))
            if L.CTF_FIGURE_OF_MERIT in row:
                ctf.setFitQuality(float(row[L.CTF_FIGURE_OF_MERIT]))
            particle.setCTF(ctf)
        if has_pose:
            transform = emobj.Transform()
            transform.setMatrix(relion_to_matrix(*angles[i], *origins[i]))
            particle.setTransform(transform)
        if L.COORDINATE_X in row:
            coord = emobj.Coordinate()  # Scipion coordinates are integers: keep RELION's floats too
            scale = scales[group]  # in particle pixels, as Scipion's extraction leaves them
            coord.setPosition(int(round(row[L.COORDINATE_X] * scale)), int(round(row[L.COORDINATE_Y] * scale)))
            setattr(particle, _COORD_X_ATTR, pwobj.Float(float(row[L.COORDINATE_X])))
            setattr(particle, _COORD_Y_ATTR, pwobj.Float(float(row[L.COORDINATE_Y])))
            if L.MICROGRAPH_NAME in row:
                _set_mic_name(coord, row[L.MICROGRAPH_NAME])
            particle.setCoordinate(coord)
        if L.CLASS_NUMBER in row:
            particle.setClassId(int(row[L.CLASS_NUMBER]))
        if L.RANDOM_SUBSET in row:
            setattr(particle, RANDOM_SUBSET_ATTR, pwobj.Integer(int(row[L.RANDOM_SUBSET])))
        for label in cols:
            if label not in _MAPPED:
                setattr(particle, "_" + label, _to_attr(row[label]))
        part_set.append(particle)


def _optics_table(part_set, angpix: float, acq, image_size_px: int) -> pd.DataFrame:
    """The optics table kept with the set (pixel and box size updated), else one from the acquisition."""
    optics = _stored_optics(part_set)
    if optics is not None:
        optics[L.IMAGE_PIXEL_SIZE] = angpix
        if image_size_px:
            optics[L.IMAGE_SIZE] = image_size_px
        return optics
    return pd.DataFrame({
        L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1],
        L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [angpix],
        L.VOLTAGE: [float(acq.getVoltage())], L.SPHERICAL_ABERRATION: [float(acq.getSphericalAberration())],
        L.AMPLITUDE_CONTRAST: [float(acq.getAmplitudeContrast())], L.IMAGE_PIXEL_SIZE: [angpix],
        L.IMAGE_SIZE: [int(image_size_px)], L.IMAGE_DIMENSIONALITY: [2]})


def particles_to_table(part_set, image_size_px: int | None = None, movie_set=None) -> ParticleTable:
    """A RELION 3.1+ particle table from a ``SetOfParticles``.

    ``rlnMicrographName`` is a coordinate's RELION name (``_polishMicrographName``), else its micName; with
    ``movie_set``, a micName that is a movie's Scipion name (base name) becomes that movie's RELION name, the
    one :func:`movies_to_micrographs` writes (particles registered by another plugin, movies by ours).

    The optics table is the one the set was imported with (``table_to_particles`` keeps it), else
    one group made from the set's acquisition.

    Image names are written ``index@filename`` with Scipion's file names as stored (relative to the
    Scipion project folder, which is where protocols run).
    """
    angpix = float(part_set.getSamplingRate())
    acq = part_set.getAcquisition()
    if image_size_px is None:
        dim = part_set.getDim()
        image_size_px = int(dim[0]) if dim and dim[0] else 0
    optics = _optics_table(part_set, angpix, acq, int(image_size_px))
    relion_names = {} if movie_set is None else {m.getMicName(): _relion_mic_name(m) for m in movie_set}
    scales = {int(g): _coordinate_scale(optics.iloc[r], angpix) for r, g in enumerate(optics[L.OPTICS_GROUP])}
    rows = []
    for particle in part_set.iterItems(orderBy="id"):
        row: dict = {}
        group = getattr(particle, _GROUP_ATTR, None)
        group = int(group.get()) if group is not None and group.get() else 1
        if particle.hasCoordinate():
            coord = particle.getCoordinate()
            scale = scales.get(group, 1.0)
            row[L.COORDINATE_X] = _precise(particle, _COORD_X_ATTR, coord.getX(), scale)
            row[L.COORDINATE_Y] = _precise(particle, _COORD_Y_ATTR, coord.getY(), scale)
        if particle.hasClassId():
            row[L.CLASS_NUMBER] = int(particle.getClassId())
        row[L.IMAGE_NAME] = join_image_name(int(particle.getIndex() or 1), scipion_file_path(particle), padding=6)
        if particle.hasCoordinate() and _relion_mic_name(particle.getCoordinate()):
            name = _relion_mic_name(particle.getCoordinate())
            row[L.MICROGRAPH_NAME] = relion_names.get(name, name)
        row[L.OPTICS_GROUP] = group
        if particle.hasCTF():
            ctf = particle.getCTF()
            row[L.DEFOCUS_U] = float(ctf.getDefocusU())
            row[L.DEFOCUS_V] = float(ctf.getDefocusV())
            row[L.DEFOCUS_ANGLE] = float(ctf.getDefocusAngle())
            if ctf.hasPhaseShift():
                row[L.PHASE_SHIFT] = float(ctf.getPhaseShift())
            if ctf.hasResolution():
                row[L.CTF_MAX_RESOLUTION] = float(ctf.getResolution())
            if ctf.getFitQuality() is not None:
                row[L.CTF_FIGURE_OF_MERIT] = float(ctf.getFitQuality())
        if particle.hasTransform():
            rot, tilt, psi, sx, sy, _ = matrix_to_relion(particle.getTransform().getMatrix())
            row.update({L.ANGLE_ROT: rot, L.ANGLE_TILT: tilt, L.ANGLE_PSI: psi,
                        L.ORIGIN_X_ANGST: sx * angpix, L.ORIGIN_Y_ANGST: sy * angpix})
        subset = getattr(particle, RANDOM_SUBSET_ATTR, None)
        if subset is not None and subset.get() is not None:
            row[L.RANDOM_SUBSET] = int(subset.get())
        row.update(_extra_attrs(particle))
        rows.append(row)
    return ParticleTable(optics, pd.DataFrame(rows))


# ------------------------------------------------------------------ movies
def detector_settings(meta: MovieMetadata | None, overrides: dict | None = None) -> dict:
    """A movie's detector settings (``DETECTOR_KEYS``: gain and defect file as absolute paths or None, binning,
    EER upsampling and grouping or None) from its per-movie STAR, with the non-empty ``overrides`` (a protocol's
    form: empty strings and values <= 0 mean "keep the STAR's") applied."""
    out: dict = dict.fromkeys(DETECTOR_KEYS)
    out["binning"] = 1.0
    if meta is not None:
        gain, defect = meta.gain_path(), meta.defect_path()
        out.update(gain=str(gain.resolve()) if gain else None, defect_file=str(defect.resolve()) if defect else None,
                   binning=float(meta.binning))
        out["eer_upsampling"], out["eer_grouping"] = meta.eer_settings()
    for key, value in (overrides or {}).items():
        if key not in out:
            raise KeyError(f"unknown detector setting {key!r} (expected one of {', '.join(DETECTOR_KEYS)})")
        if value not in (None, "") and not (isinstance(value, (int, float)) and value <= 0):
            out[key] = os.path.abspath(str(value)) if key in ("gain", "defect_file") else value
    return out


def _set_detector_attrs(movie, settings: dict) -> None:
    for key, attr in _DETECTOR_ATTRS.items():
        value = settings.get(key)
        if key in ("gain", "defect_file"):
            setattr(movie, attr, pwobj.String(value or ""))
        elif key == "binning":
            setattr(movie, attr, pwobj.Float(float(value or 1.0)))
        else:
            setattr(movie, attr, pwobj.Integer(int(value) if value else 0))


def _detector_attrs(movie, movie_set) -> dict:
    """The settings stored on a movie (empty/0 values are absent); the set's gain when the movie has none."""
    out = {}
    for key, attr in _DETECTOR_ATTRS.items():
        obj = getattr(movie, attr, None)
        value = obj.get() if obj is not None else None
        if value not in (None, "", 0, 0.0):
            out[key] = value
    if "gain" not in out and movie_set.getGain():
        out["gain"] = movie_set.getGain()
    return out


def _apply_detector(meta: MovieMetadata, settings: dict) -> None:
    """Write ``settings`` into a per-movie record (gain, defect file, binning, EER labels)."""
    meta.gain_name = settings.get("gain") or None
    meta.defect_file = settings.get("defect_file") or None
    meta.binning = float(settings.get("binning") or 1.0)
    for key, label in (("eer_upsampling", L.MICROGRAPH_EER_UPSAMPLING), ("eer_grouping", L.MICROGRAPH_EER_GROUPING)):
        if settings.get(key):
            meta.extra_general[label] = int(settings[key])


def micrographs_to_movies(table: MicrographTable, movie_set, acquisition: emobj.Acquisition | None = None,
                          movie_root: str | os.PathLike | None = None,
                          detector: dict | None = None) -> list[MovieMetadata]:
    """Fill an empty ``SetOfMovies`` from ``corrected_micrographs.star`` and its per-movie STARs.

    Each movie gets its file (``rlnMicrographMovieName``, resolved against the project folder or
    ``movie_root``), micName (``rlnMicrographName``), frames range, ``MovieAlignment`` (global
    shifts) and the attributes ``_rlnMicrographMetadata``, ``_rlnMotionModelCoeffs`` and its detector settings
    (``_rlnMicrographGainName``, ``_rlnMicrographDefectFile``, ``_rlnMicrographBinning``, ``_rlnEERUpsampling``,
    ``_rlnEERGrouping``: :func:`detector_settings` with ``detector`` overrides); the set's gain is the movies'
    when they share one.  Returns the metadata read, in table order.
    """
    metas = [read_movie_metadata(table.metadata_path(i)) for i in range(len(table))]
    first = metas[0]
    if first.original_pixel_size_a is not None:
        movie_angpix = float(first.original_pixel_size_a)
    elif L.MICROGRAPH_ORIGINAL_PIXEL_SIZE in table.optics:
        movie_angpix = float(table.optics[L.MICROGRAPH_ORIGINAL_PIXEL_SIZE].iloc[0])
    else:
        raise StarError(f"movie STAR file {table.metadata_path(0)} gives no rlnMicrographOriginalPixelSize and "
                        "the micrographs' optics table has none either: the movies' pixel size is unknown")
    movie_set.setSamplingRate(movie_angpix)
    if acquisition is None:
        acquisition = emobj.Acquisition()
        optics = table.optics.iloc[0]
        acquisition.setVoltage(float(optics.get(L.VOLTAGE, first.voltage_kv)))
        acquisition.setSphericalAberration(float(optics.get(L.SPHERICAL_ABERRATION, 2.7)))
        acquisition.setAmplitudeContrast(float(optics.get(L.AMPLITUDE_CONTRAST, 0.1)))
        acquisition.setMagnification(10000.0)
    acquisition.setDosePerFrame(float(first.dose_per_frame_e_per_a2))
    acquisition.setDoseInitial(float(first.pre_exposure_e_per_a2))
    movie_set.setAcquisition(acquisition)
    movie_set.setFramesRange([1, first.n_frames, 1])
    settings = [detector_settings(meta, detector) for meta in metas]
    gains = {st["gain"] for st in settings}
    if len(gains) == 1 and None not in gains:
        movie_set.setGain(gains.pop())
    _store_optics(movie_set, _movie_optics(table, settings, movie_angpix))
    groups = table.micrographs[L.OPTICS_GROUP].to_numpy() if L.OPTICS_GROUP in table.micrographs \
        else np.full(len(table), int(table.optics[L.OPTICS_GROUP].iloc[0]))
    for i, meta in enumerate(metas):
        movie = emobj.Movie()
        path = Path(meta.movie_name)
        if not path.is_absolute():
            path = Path(movie_root) / path if movie_root is not None else _movie_path(table, meta)
        movie.setFileName(str(path))
        _set_mic_name(movie, table.names()[i])
        movie.setSamplingRate(movie_angpix)
        movie.setAcquisition(acquisition.clone())
        movie.setFramesRange([1, meta.n_frames, 1])
        alignment = emobj.MovieAlignment(first=1, last=meta.n_frames,
                                         xshifts=[float(x) for x in meta.global_shifts_px[:, 0]],
                                         yshifts=[float(y) for y in meta.global_shifts_px[:, 1]])
        movie.setAlignment(alignment)
        setattr(movie, _METADATA_ATTR, pwobj.String(str(meta.path)))
        # on every movie (empty list: no local model / no hot pixels): the set's columns
        coeffs = [] if meta.local_coeffs is None else [float(c) for c in meta.local_coeffs]
        setattr(movie, _MOTION_COEFFS_ATTR, pwobj.String(json.dumps(coeffs)))
        hot = [] if meta.hot_pixels_px is None else [[float(x), float(y)] for x, y in meta.hot_pixels_px]
        setattr(movie, _HOT_PIXELS_ATTR, pwobj.String(json.dumps(hot)))
        setattr(movie, _GROUP_ATTR, pwobj.Integer(int(groups[i])))
        _set_detector_attrs(movie, settings[i])
        movie_set.append(movie)
    return metas


def _movie_optics(table: MicrographTable, settings: list[dict], movie_angpix: float) -> pd.DataFrame:
    """The micrographs' optics table for ``opticsGroupInfo``: the movies' pixel size as original pixel size
    and, where every movie shares one, the gain reference and defect file (scipion-em-relion takes a
    movie's gain and defects from its optics group)."""
    optics = table.optics.copy()
    if L.MICROGRAPH_ORIGINAL_PIXEL_SIZE not in optics:
        optics[L.MICROGRAPH_ORIGINAL_PIXEL_SIZE] = movie_angpix
    for key, label in (("gain", L.MICROGRAPH_GAIN_NAME), ("defect_file", L.MICROGRAPH_DEFECT_FILE)):
        values = {st[key] for st in settings}
        if len(values) == 1 and None not in values:
            optics[label] = values.pop()
    return optics


def _movie_coeffs(movie) -> np.ndarray | None:
    """A movie's local motion coefficients (``_rlnMotionModelCoeff`` JSON, else the older CSV list)."""
    attr = getattr(movie, _MOTION_COEFFS_ATTR, None)
    if attr is not None and attr.get():
        values = json.loads(attr.get())
    else:
        old = getattr(movie, _OLD_MOTION_COEFFS_ATTR, None)
        values = [float(c) for c in old] if old is not None else []
    return np.array(values, dtype=np.float64) if len(values) else None


def _movie_hot_pixels(movie) -> np.ndarray | None:
    """A movie's hot pixels (``_rlnHotPixels`` JSON), ``None`` when it has none stored."""
    attr = getattr(movie, _HOT_PIXELS_ATTR, None)
    values = json.loads(attr.get()) if attr is not None and attr.get() else []
    return np.array(values, dtype=np.float64).reshape(-1, 2) if len(values) else None


def _movie_path(table: MicrographTable, meta: MovieMetadata) -> Path:
    from ..io.particles import resolve_relion_path
    return resolve_relion_path(meta.movie_name, table.path, table.project_dir)


def movies_to_micrographs(movie_set, out_dir: str | os.PathLike, star_name: str = "corrected_micrographs.star",
                          detector: dict | None = None) -> MicrographTable:
    """Write ``corrected_micrographs.star`` and one per-movie STAR per movie into ``out_dir``.

    The per-movie STAR starts from the movie's original one (``_rlnMicrographMetadata``) when it
    exists, so hot pixels and EER fields are kept; shifts always come from the ``MovieAlignment``.
    Detector settings: the original STAR's, then the movie's attributes (or the set's gain), then
    ``detector`` (a protocol's form values; see :func:`detector_settings`).  Paths are written absolute.
    """
    from ..io.movies import is_eer

    out_dir = Path(out_dir).resolve()
    acq = movie_set.getAcquisition()
    angpix = float(movie_set.getSamplingRate())
    rows: list = []
    binnings: list = []
    for movie in movie_set.iterItems(orderBy="id"):
        base = None
        meta_attr = getattr(movie, _METADATA_ATTR, None)
        if meta_attr is not None and meta_attr.get() and os.path.exists(meta_attr.get()):
            base = read_movie_metadata(meta_attr.get())
        xs, ys = movie.getAlignment().getShifts() if movie.hasAlignment() else ([], [])
        first, last = movie.getAlignment().getRange() if movie.hasAlignment() else (1, 0)
        # an EER movie's size is its rendering's (the per-movie STAR's), not the detector's
        dim = None if base is not None and is_eer(scipion_file_path(movie)) else movie.getDim()
        if dim is None and base is not None:
            dim = (base.width_px, base.height_px, base.n_frames)
        if dim is None:
            raise ValueError(f"movie {movie.getFileName()} has no dimensions (file missing?) and no "
                             "per-movie STAR to take them from")
        n_frames = int(dim[2])
        shifts = np.zeros((n_frames, 2))
        if len(xs):
            start = max(1, int(first))
            shifts[start - 1:start - 1 + len(xs), 0] = [float(x) for x in xs]
            shifts[start - 1:start - 1 + len(ys), 1] = [float(y) for y in ys]
        coeffs = _movie_coeffs(movie)
        if coeffs is None and base is not None:
            coeffs = base.local_coeffs
        hot = base.hot_pixels_px if base is not None and base.hot_pixels_px is not None else _movie_hot_pixels(movie)
        meta = MovieMetadata(
            width_px=int(dim[0]), height_px=int(dim[1]), n_frames=n_frames,
            movie_name=os.path.abspath(scipion_file_path(movie)), global_shifts_px=shifts,
            gain_name=base.gain_name if base else None, defect_file=base.defect_file if base else None,
            binning=base.binning if base else 1.0, original_pixel_size_a=angpix,
            dose_per_frame_e_per_a2=float(acq.getDosePerFrame() or 1.0),
            pre_exposure_e_per_a2=float(acq.getDoseInitial() or 0.0), voltage_kv=float(acq.getVoltage()),
            start_frame=base.start_frame if base else 1, motion_model_version=1 if coeffs is not None else 0,
            local_coeffs=coeffs, hot_pixels_px=hot,
            extra_general=dict(base.extra_general) if base else {})
        settings = detector_settings(base)
        settings.update(_detector_attrs(movie, movie_set))
        settings = detector_settings(None, {**settings, **{k: v for k, v in (detector or {}).items() if v}})
        _apply_detector(meta, settings)
        binnings.append(meta.binning)
        mic_name = _relion_mic_name(movie) or movie.getFileName()
        star_path = out_dir / (Path(mic_name).stem + ".star")
        write_movie_metadata(star_path, meta)
        rows.append({L.MICROGRAPH_NAME: mic_name,
                     L.MICROGRAPH_METADATA: str(star_path), L.OPTICS_GROUP: 1})
    optics = pd.DataFrame({
        L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1],
        L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [angpix], L.VOLTAGE: [float(acq.getVoltage())],
        L.SPHERICAL_ABERRATION: [float(acq.getSphericalAberration())],
        L.AMPLITUDE_CONTRAST: [float(acq.getAmplitudeContrast())],
        L.MICROGRAPH_PIXEL_SIZE: [angpix * (binnings[0] if binnings else 1.0)]})
    table = MicrographTable(optics, pd.DataFrame(rows), out_dir / star_name, out_dir)
    write_corrected_micrographs(table.path, table)
    return table


# ------------------------------------------------------------------ maps and FSC
def make_volume(path: str, angpix: float, half1: str | None = None, half2: str | None = None):
    """A ``Volume`` for ``path`` with its sampling rate and, when given, its two half maps."""
    volume = emobj.Volume()
    volume.setFileName(str(path))
    volume.setSamplingRate(float(angpix))
    if half1 and half2:
        volume.setHalfMaps([str(half1), str(half2)])
    return volume


def make_mask(path: str, angpix: float):
    """A ``VolumeMask`` for ``path``."""
    mask = emobj.VolumeMask()
    mask.setFileName(str(path))
    mask.setSamplingRate(float(angpix))
    return mask


def make_fsc(resolution_per_a, fsc_values, label: str = "FSC"):
    """An ``FSC`` object: x = resolution (1/Å) per shell, y = FSC."""
    fsc = emobj.FSC(objLabel=label)
    fsc.setData([float(v) for v in resolution_per_a], [float(v) for v in fsc_values])
    return fsc
