"""Determinism: the same seed gives the same outputs.

Numpy backend: bit-identical data files (MRC/MRCS/STAR/text) for ``simulate --preset tiny``,
``postprocess``, ``local_resolution`` and ``motion_refine`` polishing run twice (the second run in the
same output folder after the first is moved aside, as the STAR files name their own outputs).  For
MRC files the voxel values, shape and pixel size are compared bit for bit, not the header labels
(mrcfile stamps a creation time there).  Plots (PNG/PDF/EPS) are excluded: matplotlib stamps dates.  OpenCL
(polishing ``--device 0:0`` vs ``--device cpu``): tracks within 0.01 px, shiny particles within 1e-3 (images
have unit variance), B-factors within 0.5 Å^2 -- float32 kernels against float64 numpy.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from polishplugin.io import labels as L
from polishplugin.io.mrc import read_mrc
from polishplugin.io.star import read_star
from polishplugin.tests.fixtures_simulate import tiny_project
from polishplugin.tests.reliability._helpers import cli, final_names, snapshot

PLOTS = (".png", ".pdf", ".eps")
SIGMAS = ["--s_vel", "0.4", "--s_div", "1155", "--s_acc", "2.7"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_project(tmp_path_factory)


def _mrc_digest(path: Path) -> str:
    import mrcfile

    with mrcfile.open(str(path), permissive=True) as m:
        data = np.ascontiguousarray(m.data)
        key = f"{data.dtype}{data.shape}{float(m.voxel_size.x)!r}".encode()
    return hashlib.md5(key + data.tobytes()).hexdigest()


def _data_files(folder) -> dict[str, str]:
    folder = Path(folder)
    out = {}
    for rel, digest in final_names(snapshot(folder)).items():
        if rel.endswith(PLOTS):
            continue
        out[rel] = _mrc_digest(folder / rel) if rel.endswith((".mrc", ".mrcs")) else digest
    return out


def _twice(argv_for, cwd, tmp_path) -> tuple[dict, dict]:
    """Run twice into the same folder ``tmp_path/run`` (the first result moved aside)."""
    out = tmp_path / "run"
    snaps = []
    for k in range(2):
        res = cli(argv_for(out), cwd)
        assert res.returncode == 0, res.stderr
        snaps.append(_data_files(out))
        if k == 0:
            shutil.move(str(out), str(tmp_path / "first"))
    assert snaps[0], "nothing written"
    return snaps[0], snaps[1]


def test_simulate_same_seed_bit_identical(tmp_path):
    a, b = _twice(lambda out: ["simulate", "--preset", "tiny", "--seed", "3", "--o", out], tmp_path, tmp_path)
    assert a == b
    assert any(k.endswith(".mrcs") for k in a)
    res = cli(["simulate", "--preset", "tiny", "--seed", "4", "--o", tmp_path / "run"], tmp_path)
    assert res.returncode == 0, res.stderr
    c = _data_files(tmp_path / "run")
    assert c["Movies/sim_00001_frameImage.mrcs"] != a["Movies/sim_00001_frameImage.mrcs"]  # the seed matters


def test_postprocess_bit_identical(tiny, tmp_path):
    a, b = _twice(lambda out: ["postprocess", "--i", tiny["half1"], "--mask", tiny["mask"], "--o", out / "pp",
                               "--random_seed", "5", "--auto_bfac"], tiny["project_dir"], tmp_path)
    assert a == b and "pp.mrc" in a


def test_local_resolution_bit_identical(tiny, tmp_path):
    a, b = _twice(lambda out: ["local_resolution", "--i", tiny["half1"], "--mask", tiny["mask"],
                               "--o", out / "relion", "--backend", "numpy"], tiny["project_dir"], tmp_path)
    assert a == b and "relion_locres.mrc" in a


def test_local_resolution_opencl_backend_matches_numpy(tiny, tmp_path):
    maps = {}
    for backend in ("numpy", "opencl"):
        out = tmp_path / backend
        res = cli(["local_resolution", "--i", tiny["half1"], "--mask", tiny["mask"], "--o", out / "relion",
                   "--backend", backend], tiny["project_dir"])
        assert res.returncode == 0, res.stderr
        maps[backend] = read_mrc(out / "relion_locres.mrc")[0]
    np.testing.assert_allclose(maps["opencl"], maps["numpy"], atol=0.01, rtol=0)  # Å


def _polish(tiny, out, device: str):
    res = cli(["motion_refine", "--i", tiny["particles"], "--f", tiny["postprocess"], "--corr_mic",
               tiny["corrected_micrographs"], "--o", out, "--combine_frames", *SIGMAS, "--device", device],
              tiny["project_dir"])
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def polish_cpu(tiny, tmp_path_factory):
    return _polish(tiny, tmp_path_factory.mktemp("polish_cpu") / "Polish", "cpu")


def test_polish_numpy_bit_identical(tiny, polish_cpu, tmp_path):
    first = _data_files(polish_cpu)
    moved = tmp_path / "first"
    shutil.move(str(polish_cpu), str(moved))  # rerun in the same folder, then put the first run back
    try:
        again = _data_files(_polish(tiny, polish_cpu, "cpu"))
    finally:
        shutil.rmtree(polish_cpu)
        shutil.move(str(moved), str(polish_cpu))
    a, b = first, again
    assert a == b
    assert any(k.endswith("_shiny.mrcs") for k in a)


def _tracks_a(folder: Path) -> np.ndarray:
    """Every track position (Å) of every particle, micrograph by micrograph."""
    out = []
    for f in sorted((folder / "Movies").glob("*_tracks.star")):
        for name, table in read_star(f).items():
            if name != "general":
                out.append(table[[L.ORIGIN_X_ANGST, L.ORIGIN_Y_ANGST]].to_numpy(np.float64))
    return np.concatenate(out)


@pytest.mark.opencl
def test_polish_opencl_within_tolerance(tiny, polish_cpu, tmp_path):
    from polishplugin.core.opencl import runtime

    try:
        runtime.list_devices()
    except runtime.OpenCLUnavailable as exc:
        pytest.skip(str(exc))  # the message starts with 'no OpenCL'
    cl_out = _polish(tiny, tmp_path / "Polish", "0:0")
    dt = float(np.abs(_tracks_a(cl_out) - _tracks_a(polish_cpu)).max()) / tiny["angpix"]
    # shiny images: largest difference relative to the image standard deviation (the tracks differ by
    # ~1e-3 px: float32 map interpolation in the fit; a 1e-3 px shift moves a pixel by ~1e-3 of the contrast)
    ds = max(float(np.abs(read_mrc(s)[0] - read_mrc(polish_cpu / "Movies" / s.name)[0]).max()
                   / read_mrc(polish_cpu / "Movies" / s.name)[0].std())
             for s in sorted((cl_out / "Movies").glob("*_shiny.mrcs")))
    b = [read_star(f / "bfactors.star")["perframe_bfactors"][L.BFACTOR_USED_FOR_SHARPENING].to_numpy()
         for f in (cl_out, polish_cpu)]
    db = float(np.abs(b[0] - b[1]).max())
    print(f"OpenCL vs numpy polishing: tracks {dt:.2e} px, shiny images {ds:.2e} std, B-factors {db:.2e} A^2")
    assert dt < 0.01 and ds < 0.03 and db < 0.5  # max over ~1e5 pixels: a few times the typical 3e-3
