"""Every figure of plots/ says what it shows: titles, units on the axes, labelled reference lines,
the auto-B fit range shaded, before/after titles, the asymmetric unit of the angular distribution."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polishplugin.io import labels as L
from polishplugin.io.mrc import write_mrc
from polishplugin.io.particles import ParticleTable, write_particles
from polishplugin.io.refine import RefineModel, RefineSampling, write_model, write_sampling
from polishplugin.plots import local_resolution as plots_locres
from polishplugin.plots import polish as plots_polish
from polishplugin.plots import postprocess as plots_pp
from polishplugin.plots import refine3d as plots_refine


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def _x_extent(patch) -> tuple[float, float]:
    xs = np.asarray(patch.get_xy())[:, 0] if hasattr(patch, "get_xy") else [patch.get_x()]
    return float(np.min(xs)), float(np.max(xs))


def _has_units(label: str) -> bool:
    return any(u in label for u in ("Å", "°", "no unit", "arbitrary", "px", "pixels", "unit in legend"))


def test_fsc_before_after_titles_and_0143_in_the_legend():
    x = np.linspace(0, 0.25, 33)
    curves = {"corrected": np.exp(-((x / 0.1) ** 2))}
    before = plots_pp.fsc_figure(x, curves, 12.0, title="before polishing").axes[0]
    after = plots_pp.fsc_figure(x, curves, 8.0, title="after polishing").axes[0]
    assert before.get_title() != after.get_title()
    assert before.get_title().startswith("before polishing") and "12.00 Å" in before.get_title()
    assert after.get_title().startswith("after polishing") and "8.00 Å" in after.get_title()
    assert "FSC = 0.143" in _legend_texts(before)
    assert "1/Å" in before.get_xlabel()


def test_guinier_shades_the_fit_range_and_draws_the_line_only_there():
    x = np.arange(33) / (64 * 2.0)
    res_sq = x ** 2
    y = -8.0 - 25.0 * res_sq
    curves = {"original": y, "FSC-weighted": np.where(np.arange(33) > 20, -99.0, y)}
    ax = plots_pp.guinier_figure(res_sq, curves, -100.0, fit=(-25.0, -8.0), fit_range_a=(10.0, 0.0),
                                 title="after polishing", fit_shells=8).axes[0]
    spans = [p for p in ax.patches]
    assert len(spans) == 1
    x0, x1 = _x_extent(spans[0])
    # from 10 Å to the last shell that has an amplitude (shell 20: 6.4 Å), not to Nyquist
    assert x0 == pytest.approx(0.01) and x1 == pytest.approx(res_sq[20])
    line = next(line for line in ax.get_lines() if line.get_label() == "fitted line")
    assert line.get_xdata().min() >= x0 - 1e-12 and line.get_xdata().max() <= x1 + 1e-12
    assert any("8 shells (too few)" in t for t in _legend_texts(ax))
    assert ax.get_title().startswith("after polishing") and "Å²" in ax.get_title()
    assert "1/Å²" in ax.get_xlabel() and _has_units(ax.get_ylabel())
    enough = plots_pp.guinier_figure(res_sq, curves, fit=(-25.0, -8.0), fit_shells=12).axes[0]
    assert any(t.endswith("12 shells") for t in _legend_texts(enough))


def test_guinier_from_result_uses_the_recorded_fit_range():
    from polishplugin.io.postprocess import PostprocessResult, guinier_table

    res_sq = (np.arange(33) / 128.0) ** 2
    y = -8.0 - 25.0 * res_sq
    general = {L.FINAL_RESOLUTION: 7.5, L.BFACTOR_USED_FOR_SHARPENING: -100.0,
               L.FITTED_SLOPE_GUINIER_PLOT: -25.0, L.FITTED_INTERCEPT_GUINIER_PLOT: -8.0,
               L.POLISH_AUTOB_FIT_SHELLS: 5, L.POLISH_AUTOB_FIT_LOWRES: 9.85, L.POLISH_AUTOB_FIT_HIGHRES: 7.53}
    post = PostprocessResult(general, pd.DataFrame(), guinier_table(res_sq, {"original": y}, -8.0))
    assert plots_pp.autob_fit_extent(post) == ((9.85, 7.53), 5)
    ax = plots_pp.guinier_figure_from_result(post, title="before polishing").axes[0]
    assert _x_extent(ax.patches[0]) == pytest.approx((1 / 9.85 ** 2, 1 / 7.53 ** 2))


def test_bfactor_and_scale_plots_state_units_frames_and_the_truth():
    b = np.array([0.0, -10.0, -25.0, -40.0])
    ax = plots_polish.plot_bfactors(b, planted=b * 1.1).axes[0]
    assert ax.get_ylabel() == "B-factor (Å²)" and "1 = first" in ax.get_xlabel()
    assert ax.get_lines()[0].get_xdata()[0] == 1  # frames numbered from 1, as the axis says
    assert "planted (simulation)" in _legend_texts(ax) and ax.get_title()
    ax = plots_polish.plot_scales(np.zeros(4)).axes[0]
    assert "1 = first" in ax.get_xlabel() and _has_units(ax.get_ylabel()) and ax.get_title()


def test_angular_distribution_names_the_asymmetric_unit():
    assert plots_refine.angular_distribution_title("D2") == "angular distribution (D2 asymmetric unit)"
    assert "whole sphere" in plots_refine.angular_distribution_title("c1")


def _refine_run(root: Path, symmetry: str = "D2") -> None:
    box, angpix = 16, 4.0
    for it in (1, 2):
        fsc = np.clip(1.2 - np.arange(box // 2 + 1) / (3.0 + it), -0.05, 1.0)
        write_model(f"{root}_it{it:03d}_model.star",
                    RefineModel(box, angpix, 16.0 - it, box, fsc, ssnr=np.ones_like(fsc), sigma2=np.ones_like(fsc),
                                healpix_order=1 + it))
    write_sampling(f"{root}_sampling.star", RefineSampling(2, 15.0, 3, 1, 0.0, 0.5, symmetry, False, 0.0,
                                                           np.array([[0.0, 45.0], [30.0, 60.0]])))
    rng = np.random.default_rng(3)
    optics = pd.DataFrame({L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1],
                           L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [angpix], L.VOLTAGE: [200.0],
                           L.SPHERICAL_ABERRATION: [1.4], L.AMPLITUDE_CONTRAST: [0.1], L.IMAGE_PIXEL_SIZE: [angpix],
                           L.IMAGE_SIZE: [box], L.IMAGE_DIMENSIONALITY: [2]})
    parts = pd.DataFrame({L.ANGLE_ROT: rng.uniform(0, 90, 50), L.ANGLE_TILT: rng.uniform(0, 90, 50),
                          L.ANGLE_PSI: rng.uniform(-180, 180, 50), L.OPTICS_GROUP: 1,
                          L.IMAGE_NAME: [f"{i + 1:06d}@stack.mrcs" for i in range(50)]})
    write_particles(f"{root}_data.star", ParticleTable(optics, parts))
    write_mrc(f"{root}_class001.mrc", rng.standard_normal((box,) * 3).astype(np.float32), angpix)


def test_refine_plots_have_titles_units_and_the_symmetry(tmp_path):
    root = tmp_path / "run"
    _refine_run(root)
    assert plots_refine.run_symmetry(str(root)) == "D2"
    fsc = plots_refine.fsc_per_iteration_figure(str(root), title="refine of the polished particles").axes[0]
    assert fsc.get_title().startswith("refine of the polished particles") and "1/Å" in fsc.get_xlabel()
    assert {"FSC = 0.143", "FSC = 0.5"} <= set(_legend_texts(fsc))
    progress = plots_refine.progress_figure(str(root)).axes
    assert progress[0].get_title() and "Å" in progress[0].get_ylabel() and "°" in progress[1].get_ylabel()
    angdist = plots_refine.angular_distribution_figure(f"{root}_data.star", symmetry="D2").axes[0]
    assert angdist.get_title() == "angular distribution (D2 asymmetric unit)"
    assert "°" in angdist.get_xlabel() and "°" in angdist.get_ylabel()
    assert plots_refine.map_slices_figure(f"{root}_class001.mrc")._suptitle.get_text()
    pngs = plots_refine.save_all_plots(str(root), str(tmp_path / "png"), title="refine")
    assert len(pngs) == 4 and all(Path(p).stat().st_size > 1000 for p in pngs)


def test_local_resolution_plots_have_titles_and_units(rng):
    locres = rng.uniform(6, 12, (16, 16, 16))
    hist = plots_locres.histogram_figure(plots_locres.histogram_values(locres)).axes[0]
    assert hist.get_title() and "Å" in hist.get_xlabel()
    slices = plots_locres.slices_figure(rng.standard_normal((16,) * 3), locres)
    assert slices._suptitle.get_text() and "Å" in slices.axes[-1].get_ylabel()  # the colour bar
