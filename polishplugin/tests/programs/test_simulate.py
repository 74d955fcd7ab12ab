"""Tests of ``polishplugin simulate``: files, determinism, conventions and ground-truth consistency."""

import hashlib

import mrcfile
import numpy as np
import pytest

from polishplugin.io.mrc import read_mrc, read_stack_images
from polishplugin.io.simulation import read_truth
from polishplugin.io.star import read_star, split_image_name
from polishplugin.core import fourier
from polishplugin.core.ctf import CtfParams, ctf_2d
from polishplugin.core.fsc import fsc
from polishplugin.core.geometry import euler_to_matrix
from polishplugin.core.simulate.maps import reconstruct_symmetric
from polishplugin.programs import simulate
from polishplugin.programs._cli import ProgramError, run_module
from polishplugin.tests.fixtures_simulate import tiny_project

SMALL = dict(n_movies=2, particles_per_movie=4, frames=4, movie_width=200, movie_height=180)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_project(tmp_path_factory)


def _digests(root):
    """File contents (MRC: data and pixel size; mrcfile's header label holds a creation time)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix in (".mrc", ".mrcs"):
            with mrcfile.open(p, permissive=True) as m:
                blob = m.data.tobytes() + str(m.voxel_size).encode()
        else:
            blob = p.read_bytes()
        out[p.relative_to(root).as_posix()] = hashlib.sha256(blob).hexdigest()
    return out


def test_same_seed_gives_identical_files(tmp_path):
    a = simulate.simulate_project(tmp_path / "a", "tiny", seed=4, **SMALL)
    b = simulate.simulate_project(tmp_path / "b", "tiny", seed=4, **SMALL)
    c = simulate.simulate_project(tmp_path / "c", "tiny", seed=5, **SMALL)
    da, db, dc = (_digests(r["project_dir"]) for r in (a, b, c))
    assert len(da) > 15 and da == db
    assert da["Movies/sim_00001_frameImage.mrcs"] != dc["Movies/sim_00001_frameImage.mrcs"]


def test_files_and_columns(tiny):
    p = tiny["params"]
    n_mov, n_part, nf, box = p["n_movies"], p["particles_per_movie"], p["frames"], p["box"]
    data = read_star(tiny["particles"])
    parts, optics = data["particles"], data["optics"]
    assert len(parts) == n_mov * n_part and len(optics) == 1
    for col in ("rlnImageName", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnAngleRot",
                "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst", "rlnDefocusU",
                "rlnDefocusV", "rlnDefocusAngle", "rlnRandomSubset", "rlnOpticsGroup", "rlnGroupNumber"):
        assert col in parts.columns, col
    assert set(parts["rlnRandomSubset"]) == {1, 2}
    assert abs(int((parts["rlnRandomSubset"] == 1).sum()) - len(parts) // 2) <= 1
    assert optics["rlnImageSize"][0] == box and optics["rlnImagePixelSize"][0] == pytest.approx(tiny["angpix"])
    mics = read_star(tiny["corrected_micrographs"])
    assert list(mics["micrographs"]["rlnMicrographName"]) == sorted(set(parts["rlnMicrographName"]))
    root = tiny["project_dir"]
    for meta in mics["micrographs"]["rlnMicrographMetadata"]:
        ms = read_star(root / meta)
        g = ms["general"].iloc[0]
        assert (g["rlnImageSizeZ"], g["rlnMicrographStartFrame"], g["rlnMotionModelVersion"]) == (nf, 1, 1)
        assert g["rlnMicrographDoseRate"] == pytest.approx(p["dose_per_frame"])
        with mrcfile.open(root / g["rlnMicrographMovieName"], permissive=True) as m:
            assert m.data.shape == (nf, g["rlnImageSizeY"], g["rlnImageSizeX"])
        sh = ms["global_shift"]
        assert list(sh["rlnMicrographFrameNumber"]) == list(range(1, nf + 1))
        assert sh["rlnMicrographShiftX"][0] == 0 and sh["rlnMicrographShiftY"][0] == 0
        assert len(ms["local_motion_model"]) == 36
    idx, stack = split_image_name(parts["rlnImageName"][n_part - 1])
    assert idx == n_part and read_stack_images(root / stack, [idx]).shape == (1, box, box)
    post = read_star(tiny["postprocess"])
    assert (root / post["general"]["rlnUnfilteredMapHalf1"][0]).exists()
    assert len(post["fsc"]) == box // 2 + 1 and "rlnFourierShellCorrelationCorrected" in post["fsc"].columns
    mask, _ = read_mrc(tiny["mask"])
    assert mask.shape == (box,) * 3 and 0 <= mask.min() and mask.max() <= 1
    mtf = read_star(tiny["mtf"])["mtf_simulated"]
    assert list(mtf.columns) == ["rlnResolutionInversePixel", "rlnMtfValue"]
    truth = read_star(tiny["truth_star"])
    assert np.allclose(truth["perframe_bfactors"]["rlnBfactorUsedForSharpening"], tiny["truth_data"]["bfactors"])
    tracks = read_star(tiny["true_tracks"][0])
    assert tracks["general"]["rlnParticleNumber"][0] == n_part and len(tracks["0"]) == nf


def test_truth_conventions(tiny):
    """Tracks are absolute (incl. global drift, Å); RELION's initial track = -shift; B_f planted."""
    t = tiny["truth_data"]
    angpix, root = tiny["angpix"], tiny["project_dir"]
    assert t["tracks_a"].shape == (len(t["coords_px"]), tiny["frames"], 2)
    assert np.allclose(t["sigmas"], [0.4, 1155.0, 2.7])
    assert t["bfactors"][0] == 0 and np.all(np.diff(t["bfactors"]) < 0)
    for mi, star in enumerate(tiny["movie_stars"]):
        sh = read_star(star)["global_shift"]
        initial = -np.stack([sh["rlnMicrographShiftX"], sh["rlnMicrographShiftY"]], 1) * angpix
        sel = t["micrograph_index"] == mi
        assert np.allclose(t["tracks_a"][sel] - t["local_tracks_a"][sel], initial[None], atol=1e-4)
        tr = read_star(tiny["true_tracks"][mi])
        first = np.stack([tr["0"]["rlnOriginXAngst"], tr["0"]["rlnOriginYAngst"]], 1)
        assert np.allclose(first, t["tracks_a"][np.nonzero(sel)[0][0]], atol=1e-4)
    # local motion is real (about a pixel) and centred on the coordinate
    assert 0.3 < np.sqrt(np.mean(t["local_tracks_a"] ** 2)) / angpix < 3
    assert np.allclose(t["local_tracks_a"].mean(axis=1), 0, atol=1e-6)
    assert (root / "ground_truth" / "true_map.mrc").exists()


def test_movies_are_negated_and_particles_white(tiny):
    """Raw movies: dark particles (counts drop); extracted particles: white protein, centred (origin 0)."""
    root, box, angpix = tiny["project_dir"], tiny["box"], tiny["angpix"]
    parts = read_star(tiny["particles"])["particles"]
    true_map, _ = read_mrc(tiny["true_map"])
    from polishplugin.core.projector import FourierProjector
    rots = euler_to_matrix(parts["rlnAngleRot"].values, parts["rlnAngleTilt"].values, parts["rlnAnglePsi"].values)
    proj = FourierProjector(true_map).project(rots)
    cc = 0.0
    for i, row in parts.iterrows():
        idx, stack = split_image_name(row["rlnImageName"])
        img = read_stack_images(root / stack, [idx])[0]
        ctf = ctf_2d(CtfParams(row["rlnDefocusU"], row["rlnDefocusV"], row["rlnDefocusAngle"], 200.0, 1.4, 0.1),
                     box, angpix)
        cc = cc + fourier.irfft(fourier.rfft(img) * np.conj(proj[i] * ctf), (box, box))
    cc = np.fft.fftshift(cc)
    peak = np.unravel_index(np.argmax(cc), cc.shape)
    assert peak == (box // 2, box // 2)  # positive correlation peak at zero offset: white, centred
    assert cc.max() > 8 * np.abs(cc).mean()
    # in the raw movie the sum of frames is darker at particle centres than on average
    with mrcfile.open(tiny["movies"][0], permissive=True) as m:
        frame_sum = m.data.astype(np.float64).sum(axis=0)
    sel = parts["rlnMicrographName"].str.contains("sim_00001")
    xy = parts.loc[sel, ["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(int)
    centres = np.array([frame_sum[y - 3:y + 4, x - 3:x + 4].mean() for x, y in xy])
    assert centres.mean() < frame_sum.mean()


def test_true_tracks_beat_global_only(tmp_path):
    """Ground truth consistent: frames re-extracted with the TRUE tracks and summed reconstruct (true
    poses) closer to the true map than frames aligned with the global drift only."""
    from polishplugin.core.simulate.frames import extract_tracked, normalize_background

    res = simulate.simulate_project(tmp_path / "p", "tiny", seed=3, contrast=0.3, particles_per_movie=16)
    t = read_truth(tmp_path / "p")
    parts = read_star(res["particles"])["particles"]
    box, angpix = res["box"], res["angpix"]
    true_map, _ = read_mrc(res["true_map"])
    rots = euler_to_matrix(parts["rlnAngleRot"].values, parts["rlnAngleTilt"].values, parts["rlnAnglePsi"].values)
    ctfs = np.array([ctf_2d(CtfParams(u, v, a, 200.0, 1.4, 0.1), box, angpix) for u, v, a in
                     zip(parts["rlnDefocusU"], parts["rlnDefocusV"], parts["rlnDefocusAngle"])])
    curves = {}
    for mode in ("true", "global"):
        imgs = []
        for mi, movie in enumerate(res["movies"]):
            sel = np.nonzero(t["micrograph_index"] == mi)[0]
            with mrcfile.open(movie, permissive=True) as m:
                frames_ = -m.data.astype(np.float64)  # RELION negates movies on load
            acc = 0.0
            for f in range(len(frames_)):
                glob = np.repeat(t["global_drift_a"][mi, f][None], len(sel), 0)
                d = t["tracks_a"][sel, f] if mode == "true" else glob
                acc = acc + extract_tracked(frames_[f], t["coords_px"][sel] + d / angpix, box)
            imgs.append(normalize_background(acc, 0.75 * box / 2))
        rec = reconstruct_symmetric(np.concatenate(imgs), rots, ctfs, "D2")
        curves[mode] = fsc(rec, true_map)
    hi = slice(box // 4, box // 2 + 1)
    assert curves["true"][hi].mean() > curves["global"][hi].mean() + 0.05
    # expected resolution: FSC(true tracks) >= 0.5 to at least 8 Å
    shell_8a = int(np.ceil(box * angpix / 8.0))
    assert np.all(curves["true"][:shell_8a + 1] > 0.5)


def test_cli_and_bad_input(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = run_module(simulate, ["--preset", "tiny", "--o", str(out), "--n_movies", "1", "--particles_per_movie", "3",
                               "--frames", "3", "--float16", "--apply_mtf", "--movie_width", "180",
                               "--noise", "gaussian"], "polishplugin simulate")
    assert rc == 0
    with mrcfile.open(out / "Movies" / "sim_00001_frameImage.mrcs", permissive=True) as m:
        assert m.header.mode == 12 and m.data.shape == (3, 400, 180)
    assert read_star(out / "ground_truth" / "truth.star")["general"]["rlnMtfApplied"][0] == 1
    assert read_star(out / "Refine3D/job021/run_data.star")["optics"]["rlnMtfFileName"][0] == "mtf_simulated.star"
    with pytest.raises(ProgramError, match="unknown preset"):
        simulate.simulate_project(tmp_path / "x", "huge")
    with pytest.raises(ProgramError, match="unknown simulation parameter"):
        simulate.simulate_project(tmp_path / "x", "tiny", n_frames=3)
    with pytest.raises(ProgramError, match="box"):
        simulate.simulate_project(tmp_path / "x", "tiny", box=47)
    rc = run_module(simulate, ["--o", str(tmp_path / "y"), "--model", str(tmp_path / "missing.cif")],
                    "polishplugin simulate")
    assert rc == 1 and "does not exist" in capsys.readouterr().err


def test_model_atoms(tmp_path):
    cif = tmp_path / "m.pdb"
    lines = []
    rng = np.random.default_rng(0)
    for i, (x, y, z) in enumerate(rng.uniform(-12, 12, size=(60, 3))):
        lines.append(f"ATOM  {i + 1:5d}  CA  ALA A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00           C")
    cif.write_text("\n".join(lines) + "\nEND\n")
    res = simulate.simulate_project(tmp_path / "m", "tiny", model=str(cif), **SMALL)
    m, _ = read_mrc(res["true_map"])
    assert m.sum() == pytest.approx(60 * 6, rel=1e-3)  # carbon Z=6 per atom


def test_tutorial_code_path_small(tmp_path):
    """The tutorial preset's path (projector projections, noisy-truth half maps) on a shrunken size."""
    res = simulate.simulate_project(tmp_path / "t", "tutorial", n_movies=1, particles_per_movie=3, frames=3,
                                    box=48, angpix=2.5, movie_width=220, movie_height=200)
    assert res["params"]["half_maps"] == "noisy_truth" and res["params"]["projection"] == "projector"
    parts = read_star(res["particles"])["particles"]
    assert len(parts) == 3
    h1, _ = read_mrc(res["half1"])
    h2, _ = read_mrc(res["half2"])
    assert h1.shape == (48,) * 3 and fsc(h1, h2)[3] > 0.9
