"""Refine options on planted numbers: RELION's "Use finer angular sampling faster?" rule in the
auto-sampling schedule (``--auto_ignore_angles``, ``--auto_resol_angles``) and solvent flattening with a
second mask (``--solvent_mask2``)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from polishplugin.core.refine.mstep import flatten_solvent
from polishplugin.core.refine.schedule import AutoSampling


def _schedule(order: int = 2, **flags) -> AutoSampling:
    return AutoSampling.initial(order, 5.0, 2.0, 4, **flags)


def _iteration(s: AutoSampling, resolution_a: float, angle_change: float) -> None:
    """One iteration's bookkeeping: resolution then hidden-variable changes (offsets always small)."""
    s.record_resolution(resolution_a)
    s.record_changes(angle_change, 0.01)


# ------------------------------------------------------------------------ --auto_ignore_angles
def test_ignore_angles_proceeds_despite_large_angle_changes():
    """No resolution gain but the angles still move by 4 deg (> 0.4 x the 7.5 deg step, and below the
    smallest change so far / 1.03): RELION waits; with --auto_ignore_angles the sampling goes finer at once."""
    for flag, expected in ((False, 2), (True, 3)):
        s = _schedule(auto_ignore_angles=flag)
        _iteration(s, 10.0, 5.0)  # first: a resolution gain (from nothing), large changes
        _iteration(s, 10.0, 4.0)  # no gain; still large changes
        assert s.nr_iter_wo_resol_gain == 1 and s.nr_iter_wo_large_changes == 0
        assert s.update(acc_rot_deg=1.0, acc_trans_px=0.5, offset_change_px=0.3) is flag
        assert s.healpix_order == expected


def test_ignore_angles_converges_despite_large_angle_changes():
    """checkConvergence: fine enough sampling and no resolution gain; the large changes block convergence
    only without --auto_ignore_angles."""
    for flag in (False, True):
        s = _schedule(auto_ignore_angles=flag)
        s.has_fine_enough_sampling, s.nr_iter_wo_resol_gain, s.nr_iter_wo_large_changes = True, 1, 0
        assert s.converged() is flag
        s.nr_iter_wo_resol_gain = 0  # a resolution gain always blocks convergence
        assert not s.converged()


def test_ignore_angles_still_needs_no_resolution_gain_or_resolution_step():
    s = _schedule(auto_ignore_angles=True)
    _iteration(s, 10.0, 0.0)  # a gain: no proceed (resolution-based step not asked)
    assert not s.update(1.0, 0.5, 0.3) and s.healpix_order == 2


# ------------------------------------------------------------------------- --auto_resol_angles
@pytest.mark.parametrize("order, resolution_a, diameter_a, proceeds", [
    (2, 10.0, 200.0, True),  # 360/ceil(62.8) = 5.71 deg < 7.5 deg; next order 3 is not the local one (4)
    (2, 20.0, 200.0, False),  # 360/ceil(31.4) = 11.25 deg > 7.5 deg
    (2, np.pi * 150.0 / 47.5, 150.0, False),  # 360/ceil(47.5) = 7.5 deg exactly: not finer
    (2, np.pi * 150.0 / 48.5, 150.0, True),  # 360/49 = 7.35 deg
    (3, 5.0, 200.0, False),  # 2.86 deg < 3.75 deg, but order 4 would start local searches
    (4, 3.0, 200.0, True),  # already local: 360/210 = 1.71 deg < 1.875 deg
])
def test_resolution_based_step(order, resolution_a, diameter_a, proceeds):
    """While the resolution still improves (nr_iter_wo_resol_gain = 0) and the angles have settled,
    --auto_resol_angles goes finer exactly when 360/ceil(pi D/res) is finer than the current (oversampled)
    step, except into the order of the local searches (RELION ``updateAngularSampling``); without the flag
    it never does while the resolution improves."""
    for flag in (False, True):
        s = _schedule(order, auto_resol_angles=flag)
        _iteration(s, 20.0, 0.0)
        s.nr_iter_wo_large_changes = 1
        assert s.nr_iter_wo_resol_gain == 0
        done = s.update(acc_rot_deg=0.5, acc_trans_px=0.5, offset_change_px=0.3, resolution_a=resolution_a,
                        particle_diameter_a=diameter_a)
        assert done is (flag and proceeds)
        assert s.healpix_order == order + int(flag and proceeds)


def test_resolution_based_step_still_waits_for_settled_angles():
    s = _schedule(auto_resol_angles=True)
    _iteration(s, 20.0, 0.0)
    s.nr_iter_wo_large_changes = 0
    assert not s.update(0.5, 0.5, 0.3, resolution_a=10.0, particle_diameter_a=200.0)
    s.auto_ignore_angles = True  # both flags: RELION's GUI "Use finer angular sampling faster?" = Yes
    assert s.update(0.5, 0.5, 0.3, resolution_a=10.0, particle_diameter_a=200.0) and s.healpix_order == 3


def test_flags_survive_the_saved_schedule():
    """--continue restores the schedule from ``asdict`` (optimiser .npz): the flags come back; a schedule
    saved before the flags existed reads with both off."""
    s = _schedule(auto_ignore_angles=True, auto_resol_angles=True)
    back = AutoSampling(**asdict(s))
    assert back.auto_ignore_angles and back.auto_resol_angles and back == s
    old = {k: v for k, v in asdict(_schedule()).items() if not k.startswith("auto_") or k == "auto_local_order"}
    assert not AutoSampling(**old).auto_ignore_angles


# ------------------------------------------------------------------------------ --solvent_mask2
def test_second_mask_flattens_its_region_to_its_own_mean():
    """Planted map: ramp density; mask 1 keeps a cube, mask 2 marks a slab inside it (soft edge of one
    voxel at 0.5).  Outside mask 2 the map is ref x mask1; inside (m2 = 1) it is the m2-weighted mean of
    ref x mask1; at m2 = 0.5 the average of both (RELION ``softMaskOutsideMap`` with the inverted mask)."""
    n = 12
    z, y, x = np.mgrid[:n, :n, :n].astype(np.float64)
    ref = 1.0 + x + 10 * y + 100 * z
    m1 = np.zeros((n,) * 3)
    m1[2:10, 2:10, 2:10] = 1.0
    m1[1, 2:10, 2:10] = 0.25
    m2 = np.zeros((n,) * 3)
    m2[4:6, 3:9, 3:9] = 1.0
    m2[6, 3:9, 3:9] = 0.5
    out = flatten_solvent(ref, m1, m2)
    masked = ref * m1
    avg = (m2 * masked).sum() / m2.sum()
    assert avg == pytest.approx(((masked[4:6, 3:9, 3:9]).sum() + 0.5 * masked[6, 3:9, 3:9].sum()) / 90.0)
    np.testing.assert_allclose(out[4:6, 3:9, 3:9], avg)  # flattened to its own mean
    np.testing.assert_allclose(out[6, 3:9, 3:9], 0.5 * masked[6, 3:9, 3:9] + 0.5 * avg)
    outside = m2 == 0
    np.testing.assert_array_equal(out[outside], masked[outside])  # the rest follows mask 1
    np.testing.assert_array_equal(flatten_solvent(ref, m1), masked)  # without mask 2: plain masking
