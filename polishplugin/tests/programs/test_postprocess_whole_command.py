"""The whole ``polishplugin postprocess`` command at 160^3 (child process, half maps + mask + MTF + auto-B)
against a slow reference computed here in double precision with the per-coefficient functions.

The command takes the fast paths (float32 FFTs, every Guinier curve from one amplitude sum per
``|k|^2``, the phase randomisation on the selected coefficients only, the figures drawn once and the log
PDF made of their images); the reference takes numpy's double FFT, :func:`divide_by_mtf`,
:func:`fsc_weight_rfft`, :func:`apply_bfactor_rfft` and :func:`guinier_curve` on every coefficient.
Every number the command writes (FSC curves, resolution, Guinier curves, fit, B-factor, the sharpened
map) must agree with the reference to the precision of float32 maps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from polishplugin.core.filters import apply_bfactor_rfft, fsc_weight_rfft, raised_cosine_sphere
from polishplugin.core.fourier import irfft, rfft
from polishplugin.core.fsc import (ShellGrid, fsc_grid, fsc_true, phase_randomization_shell, randomize_phases_rfft,
                                   resolution_shell)
from polishplugin.core.mtf import divide_by_mtf
from polishplugin.core.postprocess import GUINIER_MISSING, fit_straight_line, guinier_curve
from polishplugin.io import labels as L
from polishplugin.io.mrc import read_mrc, write_mrc
from polishplugin.io.postprocess import read_postprocess
from polishplugin.testing.planted_maps import sphere_half_maps

BOX = 160
ANGPIX = 1.0
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pp160")
    rng = np.random.default_rng(11)
    _, h1, h2 = sphere_half_maps(rng, BOX, ANGPIX, 80.0, 0.38 * BOX, 0.3 * BOX, 0.06 * BOX)
    h1, h2 = h1.astype(np.float32), h2.astype(np.float32)
    mask = raised_cosine_sphere(h1.shape, 0.38 * BOX, 0.05 * BOX).astype(np.float32)
    files = {name: str(folder / f) for name, f in (("half1", "run_half1_class001_unfil.mrc"),
                                                   ("half2", "run_half2_class001_unfil.mrc"), ("mask", "mask.mrc"))}
    write_mrc(files["half1"], h1, ANGPIX)
    write_mrc(files["half2"], h2, ANGPIX)
    write_mrc(files["mask"], mask, ANGPIX)
    invpix = np.linspace(0, 0.5, 201)
    mtf_values = 1.0 - 0.6 * invpix
    (folder / "mtf.star").write_text("data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n" + "".join(
        f"{x:.5f} {y:.6f}\n" for x, y in zip(invpix, mtf_values)))
    out = str(folder / "out" / "postprocess")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, "-m", "polishplugin", "postprocess", "--i", files["half1"], "--o", out,
                          "--mask", files["mask"], "--mtf", str(folder / "mtf.star"), "--mtf_angpix", "1.0",
                          "--auto_bfac", "--autob_lowres", "10"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return {"out": out, "h1": h1, "h2": h2, "mask": mask, "mtf": (np.round(invpix, 5), np.round(mtf_values, 6))}


def _reference(h1, h2, mask, mtf):
    """Every number of the post-processing in double precision, per coefficient (RELION's order of steps)."""
    shape = h1.shape
    grid = ShellGrid(shape)
    f1, f2 = rfft(h1.astype(np.float64)), rfft(h2.astype(np.float64))
    m = mask.astype(np.float64)
    unmasked = fsc_grid(f1, f2, grid)
    masked = fsc_grid(rfft(h1 * m), rfft(h2 * m), grid)
    shell = phase_randomization_shell(unmasked, 0.8)
    p1, p2 = randomize_phases_rfft([f1, f2], grid, shell, 0)
    rand = fsc_grid(rfft(irfft(p1, shape) * m), rfft(irfft(p2, shape) * m), grid)
    corrected = fsc_true(masked, rand, shell)
    if resolution_shell(unmasked) > resolution_shell(corrected):     # the command's choice, see choose_resolution
        corrected = unmasked.copy()
    f = (f1 + f2) / 2
    curves = {"original": guinier_curve(np.abs(f), grid, ANGPIX)}
    f = divide_by_mtf(f, shape, ANGPIX, mtf[0], mtf[1], 1.0)
    curves["mtf"] = guinier_curve(np.abs(f), grid, ANGPIX)
    f = fsc_weight_rfft(f, shape, corrected)
    curves["weighted"] = guinier_curve(np.abs(f), grid, ANGPIX)
    fit = fit_straight_line(curves["weighted"].x, curves["weighted"].y, curves["weighted"].w)
    f = apply_bfactor_rfft(f, shape, ANGPIX, 4.0 * fit[0])
    curves["sharpened"] = guinier_curve(np.abs(f), grid, ANGPIX)
    return {"unmasked": unmasked, "masked": masked, "random_masked": rand, "corrected": corrected,
            "resolution": BOX * ANGPIX / resolution_shell(corrected), "fit": fit, "bfactor": 4.0 * fit[0],
            "guinier": curves, "map": irfft(f, shape)}


def test_whole_command_matches_the_double_precision_reference(run):
    ref = _reference(run["h1"], run["h2"], run["mask"], run["mtf"])
    post = read_postprocess(run["out"] + ".star")
    assert post.final_resolution_a == pytest.approx(ref["resolution"], abs=1e-6)
    assert 2.0 < ref["resolution"] < 3.0                              # the planted crossing, 160 / (0.38 * 160)
    fsc = post.fsc
    for label, key in ((L.FOURIER_SHELL_CORRELATION_UNMASKED_MAPS, "unmasked"),
                       (L.FOURIER_SHELL_CORRELATION_MASKED_MAPS, "masked"),
                       (L.CORRECTED_FOURIER_SHELL_CORRELATION_PHASE_RANDOMIZED_MASKED_MAPS, "random_masked"),
                       (L.FOURIER_SHELL_CORRELATION_CORRECTED, "corrected")):
        expected = ref[key].copy()
        expected[0] = expected[0] if expected[0] > 0 else 1.0
        np.testing.assert_allclose(fsc[label].to_numpy()[1:], expected[1:], atol=2e-5, err_msg=key)
    assert post.bfactor_a2 == pytest.approx(ref["bfactor"], abs=0.02)
    assert post.guinier_fit == pytest.approx(ref["fit"][:2], rel=1e-4)
    gui = post.guinier
    for label, key in ((L.LOG_AMPLITUDES_ORIGINAL, "original"), (L.LOG_AMPLITUDES_M_T_F_CORRECTED, "mtf"),
                       (L.LOG_AMPLITUDES_WEIGHTED, "weighted"), (L.LOG_AMPLITUDES_SHARPENED, "sharpened")):
        y_ref = ref["guinier"][key].y
        keep = y_ref > GUINIER_MISSING
        got = gui[label].to_numpy()
        assert np.array_equal(got > GUINIER_MISSING, keep), key
        np.testing.assert_allclose(got[keep], y_ref[keep], atol=1e-4, err_msg=key)
    sharpened, _ = read_mrc(run["out"] + ".mrc")
    masked, _ = read_mrc(run["out"] + "_masked.mrc")
    scale = np.sqrt(np.mean(ref["map"] ** 2))
    assert np.sqrt(np.mean((sharpened - ref["map"]) ** 2)) < 1e-4 * scale
    assert np.sqrt(np.mean((masked - ref["map"] * run["mask"]) ** 2)) < 1e-4 * scale


def _pdf_images(path: str) -> list[np.ndarray]:
    """The page images of a PDF written by :func:`write_raster_pdf`, checking its cross-reference table."""
    data = Path(path).read_bytes()
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
    start = int(data.rsplit(b"startxref", 1)[1].split()[0])
    lines = data[start:].split(b"\n")
    assert lines[0] == b"xref"
    count = int(lines[1].split()[1])
    for number, line in enumerate(lines[3:2 + count], 1):             # every object where the table says
        assert data[int(line.split()[0]):].startswith(b"%d 0 obj" % number)
    images = []
    for chunk in data.split(b"/Subtype /Image ")[1:]:
        head, rest = chunk.split(b">>\nstream\n", 1)
        words = head.split()
        width, height = (int(words[words.index(k) + 1]) for k in (b"/Width", b"/Height"))
        length = int(words[words.index(b"/Length") + 1])
        images.append(np.frombuffer(zlib.decompress(rest[:length]), np.uint8).reshape(height, width, 3))
    return images


def test_figures_are_written_and_the_log_pdf_pages_are_the_pngs(run):
    from PIL import Image

    folder = Path(run["out"]).parent
    pages = _pdf_images(str(folder / "logfile.pdf"))
    assert len(pages) == 2
    for page, name in zip(pages, ("postprocess_fsc.png", "postprocess_guinier.png")):
        png = np.asarray(Image.open(folder / name).convert("RGB"))
        assert png.shape == (450, 700, 3)                            # 7 x 4.5 in at 100 dpi
        assert np.array_equal(page, png), name
        assert png.std() > 10                                        # drawn, not blank


def test_prefetch_imports_in_the_background_and_restores_the_switch_interval():
    from polishplugin.programs.postprocess import prefetch_plots

    before = sys.getswitchinterval()
    sys.modules.pop("colorsys", None)
    thread = prefetch_plots(("colorsys", "polishplugin.no_such_module"))   # a failing name ends it quietly
    thread.join()
    assert "colorsys" in sys.modules
    assert not thread.daemon and not thread.is_alive()
    assert sys.getswitchinterval() == before
