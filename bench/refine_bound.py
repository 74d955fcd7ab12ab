"""How precisely can a simulated project's particles be aligned?  The angular information in the data.

An E-step from the TRUE poses (``polishplugin simulate`` writes them: ``Refine3D/job021/run_data.star``
and ``ground_truth/``), local search with a fixed prior sigma around them at HEALPix orders 4, 5, ...,
against (a) ``other``: the true-pose reconstruction of the other half set, regularised as refine3d
does (what a converged refine would use) and (b) ``true``: the noise-free true map scaled per shell
to the data (absorbs contrast, MTF and blur; an ideal reference).  The median angular error of (a)
is what a refine can reach on these data; refine3d's result is compared with it in bench/README.md.

Images are Fourier-cropped to ``--B`` pixels (the same Fourier pixels as a current image size of B).
Offsets are sampled at ``--offset_step`` (fine: half): at high SNR a coarse offset grid limits the angles too.

    python bench/refine_bound.py --project /tmp/tut24 --B 160
    python bench/refine_bound.py --project demo_output_dir --B 64
"""

import argparse
import time

import numpy as np
from pathlib import Path
from polishplugin.io.particles import read_particles
from polishplugin.io.mrc import read_mrc, read_stack_images
from polishplugin.core.ctf import ctf_rfft_stack
from polishplugin.core.geometry import euler_to_matrix, symmetry_matrices
from polishplugin.core.refine.estep import EStepSettings, NoiseAccumulator, expectation, prepare_images, _phases
from polishplugin.core.projector import FourierProjector
from polishplugin.core.refine.fourier3d import (Backprojector, map_to_grid, pixel_list, halfgrid_fsc,
                                                 regularised_grid, project_pixels, grid_shells)
from polishplugin.core.refine.sampling import OrientationGrid, angular_step_deg
from polishplugin.core.refine.schedule import symmetry_aware_angle_deg, ssnr_from_fsc, expected_accuracies

ap = argparse.ArgumentParser()
ap.add_argument("--project", required=True)
ap.add_argument("--B", type=int, default=160)
ap.add_argument("--orders", default="4,5")
ap.add_argument("--n", type=int, default=60)
ap.add_argument("--sigma", type=float, default=3.0)
ap.add_argument("--refs", default="other,true")
ap.add_argument("--map", default="",
                help="also use this map (e.g. a refine's run_it###_half2_class001.mrc) as reference 'map'")
ap.add_argument("--ops", default="opencl")
ap.add_argument("--offset_step", type=float, default=0.5,
                help="coarse offset step (px; the fine step is half): the offsets are sampled, "
                     "so a coarse step limits the angles too")
a = ap.parse_args()
proj = Path(a.project)
B = a.B
t00 = time.time()
table = read_particles(proj / "Refine3D/job021/run_data.star")
a0, b0 = float(table.pixel_sizes_a()[0]), int(table.box_sizes_px()[0])
angpix = a0 * b0 / B
z = np.load(proj / "ground_truth/truth.npz", allow_pickle=True)
true_off = -z["local_tracks_a"].mean(1) / angpix
halves = table.half_sets()
ops = symmetry_matrices("D2")
locs = table.image_locations()

def crop2(imgs):
    if B == b0:
        return np.asarray(imgs, np.float32)
    f = np.fft.rfft2(imgs)
    h = B // 2
    g = np.concatenate([f[:, :h, :h + 1], f[:, -h:, :h + 1]], axis=1)
    return (np.fft.irfft2(g, s=(B, B)) * (B * B) / (b0 * b0)).astype(np.float32)

images = np.empty((len(table), B, B), np.float32)
by = {}
for r in range(len(table)):
    by.setdefault(locs[r][1], []).append(r)
for st, rows in by.items():
    images[rows] = crop2(read_stack_images(table.resolve(st), [locs[r][0] for r in rows]))
print("loaded", len(table), "images cropped to", B, "at %.3f A/px in %.0f s" % (angpix, time.time() - t00), flush=True)
ctf = ctf_rfft_stack(table.ctf_params(), B, angpix).astype(np.float32)
ang = table.angles_deg()
mats = euler_to_matrix(*ang.T)
iy, ix, k = pixel_list(B, B / 2)
shells = np.rint(np.sqrt((k ** 2).sum(1))).astype(int)
mask_r = 0.45 * B
def prep(rows):
    x, rnd = prepare_images(images[rows], true_off[rows], mask_r)
    return x[:, iy, ix], ctf[rows][:, iy, ix], rnd

def reconstruct(rows, s2pix):
    bp = Backprojector(B, 2)
    for s in range(0, len(rows), 64):
        r = rows[s:s + 64]
        x, c, rnd = prep(r)
        frac = true_off[r] - rnd
        xs = x * _phases(frac[:, None, :], k, B)[:, 0]
        bp.insert(xs * c / s2pix, c ** 2 / s2pix, mats[r], k)
    return bp.finalised(ops)

r1, r2 = np.nonzero(halves == 1)[0], np.nonzero(halves == 2)[0]
s2pix = np.ones(len(k))
d1, w1 = reconstruct(r1, s2pix)
d2, w2 = reconstruct(r2, s2pix)
fsc = halfgrid_fsc(d1, w1, d2, w2, 2, B)
ssnr = ssnr_from_fsc(fsc)
ref1 = regularised_grid(d1, w1, ssnr, 2, B).astype(np.complex64)
del d1, w1
ref2 = regularised_grid(d2, w2, ssnr, 2, B).astype(np.complex64)
del d2, w2
print("FSC(true poses):", " ".join("%.2f" % f for f in fsc[:B // 2 + 1]), flush=True)
print("0.143 shell", int(np.argmax(fsc[1:] < 0.143)) + 1, "0.5 shell", int(np.argmax(fsc[1:] < 0.5)) + 1,
      "(%.0f s)" % (time.time() - t00), flush=True)
# noise spectrum: residuals of 400 half-1 particles against the other half's reference
nz = NoiseAccumulator(B // 2 + 1)
sub = r1[:400]
x, c, rnd = prep(sub)
frac = true_off[sub] - rnd
xs = x * _phases(frac[:, None, :], k, B)[:, 0]
p = project_pixels(ref2, mats[sub], k, 2)
for i in range(len(sub)):
    nz.add(np.abs(xs[i] - c[i] * p[i]) ** 2, shells)
s2 = nz.sigma2(np.ones(B // 2 + 1))
s2pix = s2[np.minimum(shells, len(s2) - 1)]
tm, _ = read_mrc(proj / "ground_truth/true_map.mrc")
f3 = np.fft.rfftn(np.fft.ifftshift(tm.astype(np.float64)))
h = B // 2
f3 = np.concatenate([f3[:h], f3[-h:]], 0)
f3 = np.concatenate([f3[:, :h], f3[:, -h:]], 1)[:, :, :h + 1]
tmc = np.fft.fftshift(np.fft.irfftn(f3, s=(B, B, B))) * B ** 3 / b0 ** 3
tgrid = map_to_grid(tmc, 2).fourier
pt = project_pixels(tgrid, mats[sub], k, 2) * c
num = np.bincount(shells, (xs * np.conj(pt)).real.sum(0), B // 2 + 1)[:B // 2 + 1]
den = np.bincount(shells, (np.abs(pt) ** 2).sum(0), B // 2 + 1)[:B // 2 + 1]
scale = np.maximum(num / np.maximum(den, 1e-30), 0)
gs = grid_shells(tgrid.shape[0], 2)
tgrid = np.where(gs < B // 2 + 1, tgrid * np.append(scale, 0)[np.minimum(gs, B // 2 + 1)], 0).astype(np.complex64)
del pt, p, xs
n = a.n
rows = r1[:n]
x, c, rnd = prep(rows)
acc_r, acc_t = expected_accuracies(ref2, mats[rows[:20]], c[:20], s2pix, k, B, 2)
print("expected accuracy (diff>1): rot %.2f deg trans %.2f px" % (acc_r, acc_t), flush=True)
if a.ops == "opencl":
    from polishplugin.core.opencl.estep_cl import OpenCLOps
    eops = OpenCLOps()
else:
    from polishplugin.core.refine.estep import NumpyOps
    eops = NumpyOps()
grids = {"other": FourierProjector.from_transform(ref2, B, 2), "true": FourierProjector.from_transform(tgrid, B, 2)}
if a.map:
    mm, _ = read_mrc(a.map)
    grids["map"] = map_to_grid(mm.astype(np.float64), 2) if B == b0 else None
    assert grids["map"] is not None, "--map needs --B equal to the particle box"
for refname in a.refs.split(",") + (["map"] if a.map else []):
    grid = grids[refname]
    for order in [int(o) for o in a.orders.split(",")]:
        fine = angular_step_deg(order, 1)
        st = EStepSettings(box=B, angpix=angpix, pad=2, coarse_radius=B / 2, current_radius=B / 2,
                           offset_range_px=max(1.0, 2 * a.offset_step), offset_step_px=a.offset_step,
                           sigma_offset_a=2.0, local_sigma_deg=a.sigma,
                           max_significant=0, ops=eops)
        t0 = time.time()
        res = expectation(grid, OrientationGrid(order), x, c, s2pix, k, shells, true_off[rows], rnd, mats[rows], st,
                          None, None)
        m = euler_to_matrix(*np.array([r.angles for r in res]).T)
        err = symmetry_aware_angle_deg(m, mats[rows], ops)
        oe = np.sqrt(((np.array([r.origin_px for r in res]) - true_off[rows]) ** 2).sum(1))
        print(f"ref {refname:5s} order {order} fine {fine:.3f} sigma {a.sigma:.2f}: "
              f"angle err median {np.median(err):.2f} mean {err.mean():.2f}; "
              f"offset err median {np.median(oe):.3f} px; {time.time() - t0:.0f} s", flush=True)
