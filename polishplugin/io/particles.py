"""RELION particle STAR files (optics + particles tables) as a :class:`ParticleTable`.

Reads RELION 3.1+ files (``data_optics`` + ``data_particles``, ``rlnOriginXAngst``) and RELION 3.0
files (one table, no optics): for those a synthetic optics group is made per distinct
(voltage, Cs, amplitude contrast, pixel size), the pixel size coming from ``rlnImagePixelSize`` or
``rlnDetectorPixelSize`` (µm) / ``rlnMagnification`` × 10⁴, and ``rlnOriginX/Y`` (pixels) become
``rlnOriginXAngst/YAngst``.  Writing always produces the RELION 3.1+ layout.

Paths inside RELION STAR files are relative to the RELION *project* folder;
:func:`resolve_relion_path` finds that folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.ctf import CtfParams
from . import labels as L
from .star import StarError, read_star, split_image_name, star_version, write_star

__all__ = [
    "ParticleTable", "read_particles", "write_particles", "resolve_relion_path", "project_dir_for",
    "REQUIRED_PARTICLE_COLUMNS", "REQUIRED_OPTICS_COLUMNS",
]

#: Columns every particle row must have.
REQUIRED_PARTICLE_COLUMNS = (L.IMAGE_NAME,)
#: Columns every optics row must have (RELION 3.1+).
REQUIRED_OPTICS_COLUMNS = (L.OPTICS_GROUP, L.IMAGE_PIXEL_SIZE, L.VOLTAGE, L.SPHERICAL_ABERRATION,
                           L.AMPLITUDE_CONTRAST)

# CTF defaults when a column is absent everywhere (RELION CTF::readByGroup).
_CTF_DEFAULTS = {L.VOLTAGE: 200.0, L.DEFOCUS_ANGLE: 0.0, L.SPHERICAL_ABERRATION: 2.0,
                 L.CTF_BFACTOR: 0.0, L.CTF_SCALEFACTOR: 1.0, L.AMPLITUDE_CONTRAST: 0.0,
                 L.PHASE_SHIFT: 0.0}
_DETECTOR_PIXEL_SIZE = "rlnDetectorPixelSize"
_MAGNIFICATION = "rlnMagnification"
# Per-particle columns a RELION 3.0 file carries that 3.1 keeps in the optics table.
_OPTICS_FROM_30 = (L.VOLTAGE, L.SPHERICAL_ABERRATION, L.AMPLITUDE_CONTRAST)


@dataclass
class ParticleTable:
    """A particle STAR file: the optics table and the particles table (one row per particle).

    ``path`` is the file it was read from (for messages and relative paths); ``project_dir`` the
    RELION project folder that image and micrograph names are relative to.
    """

    optics: pd.DataFrame
    particles: pd.DataFrame
    path: Path | None = None
    project_dir: Path | None = None
    source_version: int = 50001
    extra_blocks: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.particles)

    # ------------------------------------------------------------ optics lookup
    def _optics_rows(self) -> np.ndarray:
        """Row index into ``optics`` of every particle."""
        groups = self.optics[L.OPTICS_GROUP].to_numpy()
        lookup = {int(g): i for i, g in enumerate(groups)}
        return np.array([lookup[int(g)] for g in self.particles[L.OPTICS_GROUP]], dtype=np.int64)

    def optics_value(self, label: str, default: float | None = None) -> np.ndarray:
        """Per-particle value of ``label``: the particle column if present, else its optics row."""
        if label in self.particles.columns:
            return self.particles[label].to_numpy()
        if label in self.optics.columns:
            return self.optics[label].to_numpy()[self._optics_rows()]
        if default is None:
            raise StarError(f"particle STAR file {self.path}: column {label} is missing")
        return np.full(len(self.particles), default)

    def pixel_sizes_a(self) -> np.ndarray:
        """Pixel size (Å) of every particle image (``rlnImagePixelSize`` of its optics group)."""
        return self.optics_value(L.IMAGE_PIXEL_SIZE).astype(np.float64)

    def box_sizes_px(self) -> np.ndarray:
        """Box size (pixels) of every particle image (``rlnImageSize`` of its optics group)."""
        return self.optics_value(L.IMAGE_SIZE).astype(np.int64)

    def origins_px(self) -> np.ndarray:
        """``(n, 2)`` origin offsets in pixels, xy order (``rlnOriginX/YAngst`` / pixel size)."""
        angpix = self.pixel_sizes_a()
        out = np.zeros((len(self), 2))
        for j, label in enumerate((L.ORIGIN_X_ANGST, L.ORIGIN_Y_ANGST)):
            if label in self.particles.columns:
                out[:, j] = self.particles[label].to_numpy(dtype=np.float64) / angpix
        return out

    def angles_deg(self) -> np.ndarray:
        """``(n, 3)`` Euler angles rot, tilt, psi (degrees; 0 where a column is absent)."""
        cols = [self.particles[c].to_numpy(dtype=np.float64) if c in self.particles.columns
                else np.zeros(len(self)) for c in (L.ANGLE_ROT, L.ANGLE_TILT, L.ANGLE_PSI)]
        return np.stack(cols, axis=1)

    def ctf_params(self) -> list[CtfParams]:
        """A :class:`CtfParams` per particle (per-particle value, else optics, else RELION default)."""
        if L.DEFOCUS_U not in self.particles.columns:
            raise StarError(f"particle STAR file {self.path}: column {L.DEFOCUS_U} is missing")
        du = self.particles[L.DEFOCUS_U].to_numpy(dtype=np.float64)
        dv = self.particles[L.DEFOCUS_V].to_numpy(dtype=np.float64) if L.DEFOCUS_V in self.particles \
            else du
        values = {label: self.optics_value(label, default).astype(np.float64)
                  for label, default in _CTF_DEFAULTS.items()}
        return [CtfParams(defocus_u_a=float(du[i]), defocus_v_a=float(dv[i]),
                          defocus_angle_deg=float(values[L.DEFOCUS_ANGLE][i]),
                          voltage_kv=float(values[L.VOLTAGE][i]),
                          cs_mm=float(values[L.SPHERICAL_ABERRATION][i]),
                          amplitude_contrast=float(values[L.AMPLITUDE_CONTRAST][i]),
                          phase_shift_deg=float(values[L.PHASE_SHIFT][i]),
                          bfactor_a2=float(values[L.CTF_BFACTOR][i]),
                          scale=float(values[L.CTF_SCALEFACTOR][i]))
                for i in range(len(self))]

    def image_locations(self) -> list[tuple[int, str]]:
        """``(index_1based, stack path as written)`` of every particle."""
        return [split_image_name(n) for n in self.particles[L.IMAGE_NAME]]

    def group_by_micrograph(self) -> list[tuple[str, np.ndarray]]:
        """``[(micrograph name, particle row indices), ...]`` in order of first appearance."""
        if L.MICROGRAPH_NAME not in self.particles.columns:
            raise StarError(f"particle STAR file {self.path}: column {L.MICROGRAPH_NAME} is missing")
        names = self.particles[L.MICROGRAPH_NAME].astype(str).to_numpy()
        order: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            order.setdefault(name, []).append(i)
        return [(name, np.array(idx, dtype=np.int64)) for name, idx in order.items()]

    def half_sets(self) -> np.ndarray:
        """``rlnRandomSubset`` (1 or 2) per particle; a clear error when the column is absent."""
        if L.RANDOM_SUBSET not in self.particles.columns:
            raise StarError(f"particle STAR file {self.path}: column {L.RANDOM_SUBSET} is missing "
                            "(no gold-standard half sets)")
        return self.particles[L.RANDOM_SUBSET].to_numpy(dtype=np.int64)

    def resolve(self, relative: str) -> Path:
        """A path written in this file, resolved against the project folder."""
        return resolve_relion_path(relative, self.path, self.project_dir)

    def subset(self, rows: np.ndarray | list[int]) -> "ParticleTable":
        """A new table with the given particle rows (optics unchanged)."""
        return ParticleTable(self.optics.copy(), self.particles.iloc[list(rows)].reset_index(drop=True),
                             self.path, self.project_dir, self.source_version, dict(self.extra_blocks))


def project_dir_for(star_path: str | os.PathLike, relative: str) -> Path:
    """The RELION project folder for ``star_path``: the first of its folder and that folder's
    parents in which ``relative`` exists; the current directory when none does."""
    star_path = Path(star_path).resolve()
    for candidate in [star_path.parent, *star_path.parent.parents]:
        if (candidate / relative).exists():
            return candidate
    return Path.cwd()


def resolve_relion_path(relative: str, star_path: str | os.PathLike | None,
                        project_dir: str | os.PathLike | None = None) -> Path:
    """Resolve a path written in a RELION STAR file (absolute paths are returned unchanged)."""
    rel = Path(str(relative))
    if rel.is_absolute():
        return rel
    if project_dir is not None:
        return Path(project_dir) / rel
    if star_path is None:
        return rel
    return project_dir_for(star_path, str(rel)) / rel


# ------------------------------------------------------------------ reading
def _particles_block(blocks: dict, path: Path) -> pd.DataFrame:
    if "particles" in blocks:
        return blocks["particles"]
    for name, table in blocks.items():
        if name != "optics" and L.IMAGE_NAME in table.columns:
            return table
    raise StarError(f"particle STAR file {path} has no particles table (no data_particles block and "
                    f"no table with {L.IMAGE_NAME})")


def _require(table: pd.DataFrame, columns, path: Path, what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise StarError(f"{what} STAR file {path} lacks required column(s): {', '.join(missing)}")


def _pixel_size_30(particles: pd.DataFrame, path: Path) -> np.ndarray:
    if L.IMAGE_PIXEL_SIZE in particles.columns:
        return particles[L.IMAGE_PIXEL_SIZE].to_numpy(dtype=np.float64)
    if _DETECTOR_PIXEL_SIZE in particles.columns and _MAGNIFICATION in particles.columns:
        return (particles[_DETECTOR_PIXEL_SIZE].to_numpy(dtype=np.float64) * 1e4
                / particles[_MAGNIFICATION].to_numpy(dtype=np.float64))
    raise StarError(f"particle STAR file {path} (RELION 3.0, no optics table) gives no pixel size: "
                    f"it needs {L.IMAGE_PIXEL_SIZE}, or {_DETECTOR_PIXEL_SIZE} and {_MAGNIFICATION}")


def _optics_from_30(particles: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthesise RELION 3.1 optics groups from a 3.0 particle table (one per distinct setting)."""
    particles = particles.copy()
    angpix = _pixel_size_30(particles, path)
    keys = np.stack([angpix] + [particles[c].to_numpy(dtype=np.float64) if c in particles.columns
                                else np.full(len(particles), _CTF_DEFAULTS[c]) for c in _OPTICS_FROM_30],
                    axis=1)
    unique, group_of = np.unique(keys, axis=0, return_inverse=True)
    optics = pd.DataFrame({
        L.OPTICS_GROUP_NAME: [f"opticsGroup{g + 1}" for g in range(len(unique))],
        L.OPTICS_GROUP: np.arange(1, len(unique) + 1, dtype=np.int64),
        L.VOLTAGE: unique[:, 1], L.SPHERICAL_ABERRATION: unique[:, 2],
        L.AMPLITUDE_CONTRAST: unique[:, 3], L.IMAGE_PIXEL_SIZE: unique[:, 0],
        L.IMAGE_DIMENSIONALITY: np.full(len(unique), 2, dtype=np.int64),
    })
    particles[L.OPTICS_GROUP] = group_of.reshape(-1).astype(np.int64) + 1
    for old, new in ((L.ORIGIN_X, L.ORIGIN_X_ANGST), (L.ORIGIN_Y, L.ORIGIN_Y_ANGST)):
        if old in particles.columns:
            particles[new] = particles[old].to_numpy(dtype=np.float64) * angpix
            particles = particles.drop(columns=[old])
    drop = [c for c in (*_OPTICS_FROM_30, _DETECTOR_PIXEL_SIZE, _MAGNIFICATION, L.IMAGE_PIXEL_SIZE)
            if c in particles.columns]
    return optics, particles.drop(columns=drop)


def _check_stacks(table: ParticleTable) -> None:
    from .mrc import MrcError, read_mrc_header

    highest: dict[str, int] = {}
    for index, stack in table.image_locations():
        highest[stack] = max(index, highest.get(stack, 0))
    for stack, top in highest.items():
        resolved = table.resolve(stack)
        if not resolved.exists():
            raise StarError(f"particle STAR file {table.path}: image stack {stack} does not exist "
                            f"(looked for {resolved})")
        try:
            shape, _ = read_mrc_header(resolved)
        except MrcError as exc:
            raise StarError(f"particle STAR file {table.path}: {exc}") from None
        n_images = shape[0] if len(shape) == 3 else 1
        if top > n_images:
            raise StarError(f"particle STAR file {table.path}: image {top}@{stack} is beyond the "
                            f"{n_images} images of that stack")


def read_particles(path: str | os.PathLike, check_stacks: bool = False,
                   project_dir: str | os.PathLike | None = None) -> ParticleTable:
    """Read a RELION 3.0 or 3.1+ particle STAR file.

    Raises :class:`StarError` naming the file for: a truncated/corrupt file, missing required
    columns (named), particles whose ``rlnOpticsGroup`` is not in the optics table, and, with
    ``check_stacks``, image stacks that do not exist or hold too few images.
    """
    path = Path(path)
    blocks = read_star(path)
    particles = _particles_block(blocks, path)
    _require(particles, REQUIRED_PARTICLE_COLUMNS, path, "particle")
    if len(particles) == 0:
        raise StarError(f"particle STAR file {path} has no particles")
    if "optics" in blocks:
        optics = blocks["optics"]
        _require(optics, REQUIRED_OPTICS_COLUMNS, path, "particle (optics table of)")
        if L.OPTICS_GROUP not in particles.columns:
            if len(optics) != 1:
                raise StarError(f"particle STAR file {path} lacks required column(s): {L.OPTICS_GROUP}")
            particles = particles.assign(**{L.OPTICS_GROUP: int(optics[L.OPTICS_GROUP].iloc[0])})
        known = {int(g) for g in optics[L.OPTICS_GROUP]}
        unknown = sorted({int(g) for g in particles[L.OPTICS_GROUP]} - known)
        if unknown:
            raise StarError(f"particle STAR file {path}: optics group(s) {unknown} used by particles "
                            f"are not in the optics table (groups {sorted(known)})")
    else:
        optics, particles = _optics_from_30(particles, path)
    extra = {k: v for k, v in blocks.items() if k not in ("optics", "particles")
             and v is not particles}
    table = ParticleTable(optics.reset_index(drop=True), particles.reset_index(drop=True), path,
                          Path(project_dir) if project_dir is not None else None,
                          star_version(path), extra)
    if check_stacks:
        _check_stacks(table)
    return table


def write_particles(path: str | os.PathLike, table: ParticleTable,
                    comments: tuple[str, ...] = ()) -> None:
    """Write ``table`` as a RELION 3.1+ particle STAR file (optics + particles), atomically."""
    _require(table.optics, REQUIRED_OPTICS_COLUMNS, Path(path), "particle (optics table to write in)")
    write_star(path, {"optics": table.optics, "particles": table.particles}, comments=comments)
