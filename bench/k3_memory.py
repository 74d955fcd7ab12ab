"""Peak memory and time of polishing one K3-sized super-resolution movie (issue 20; 3dem/relion#1365).

Writes a one-movie project: a 4-bit (MRC mode 101) super-resolution movie of --width x --height pixels
(K3: 11520 x 8184) and --frames frames at half the particles' pixel size (rlnMicrographBinning 2), a gain
reference of the movie's size, hot pixels and a defect file, --particles particles of box --box after
binning, and box-sized reference half maps with a postprocess.star; then runs
``polishplugin motion_refine --combine_frames`` on it in a child process and reports the child's peak
resident memory (``getrusage`` max RSS) and wall time.  The movie's counts are random (4-bit uniform): memory
and time do not depend on the content.

    .venv/bin/python -m bench.k3_memory --o /tmp/k3                      # K3, 40 frames, 300 particles
    .venv/bin/python -m bench.k3_memory --o /tmp/k3s --frames 8 --low_memory_bytes 0   # 8 frames, big-movie path

Prints one JSON line (peak_rss_gib, wall_s, the sizes, frames_gib = particles x frames x box x (box/2+1) x 8
bytes, the particle frames polishing must hold) and, with --results, appends it to that file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from polishplugin.io import labels as L
from polishplugin.io.detector import write_defect_file, write_gain
from polishplugin.io.movies import (MicrographTable, MovieMetadata, MovieWriter, write_corrected_micrographs,
                                    write_movie_metadata)
from polishplugin.io.mrc import write_mrc
from polishplugin.io.particles import ParticleTable, write_particles
from polishplugin.io.postprocess import PostprocessResult, fsc_table, write_postprocess


def make_project(out: Path, width: int, height: int, frames: int, particles: int, box: int, angpix: float,
                 seed: int = 0) -> dict:
    """The one-movie project (paths relative to ``out``)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    movie_px = angpix / 2
    with MovieWriter(out / "Movies" / "k3.mrc", "mrc4", frames, (height, width), movie_px) as w:
        for f in range(frames):
            w[f] = rng.integers(0, 16, (height, width), dtype=np.uint8)
    write_gain(out / "Movies" / "gain.mrc", rng.uniform(0.9, 1.1, (height, width)).astype(np.float32))
    write_defect_file(out / "Movies" / "defects.txt", [[width // 3, 0, 2, height], [100, 200, 10, 10]])
    hot = np.stack([rng.integers(0, width, 500), rng.integers(0, height, 500)], 1).astype(float)
    drift = np.cumsum(rng.normal(0, 1.0, (frames, 2)), axis=0)
    write_movie_metadata(out / "MotionCorr" / "k3.star", MovieMetadata(
        width_px=width, height_px=height, n_frames=frames, movie_name="Movies/k3.mrc", global_shifts_px=drift,
        gain_name="Movies/gain.mrc", defect_file="Movies/defects.txt", binning=2.0, original_pixel_size_a=movie_px,
        dose_per_frame_e_per_a2=1.0, voltage_kv=300.0, hot_pixels_px=hot))
    optics = {L.OPTICS_GROUP_NAME: ["opticsGroup1"], L.OPTICS_GROUP: [1], L.MICROGRAPH_ORIGINAL_PIXEL_SIZE: [movie_px],
              L.VOLTAGE: [300.0], L.SPHERICAL_ABERRATION: [2.7], L.AMPLITUDE_CONTRAST: [0.1]}
    write_corrected_micrographs(out / "MotionCorr" / "corrected_micrographs.star", MicrographTable(
        pd.DataFrame({**optics, L.MICROGRAPH_PIXEL_SIZE: [angpix]}),
        pd.DataFrame({L.MICROGRAPH_NAME: ["MotionCorr/k3.mrc"], L.MICROGRAPH_METADATA: ["MotionCorr/k3.star"],
                      L.OPTICS_GROUP: [1]})))
    margin = box
    xy = np.stack([rng.uniform(margin, width / 2 - margin, particles),
                   rng.uniform(margin, height / 2 - margin, particles)], 1)  # binned (coordinate) pixels
    du = rng.uniform(8000, 20000, particles)
    parts = pd.DataFrame({
        L.MICROGRAPH_NAME: "MotionCorr/k3.mrc", L.COORDINATE_X: xy[:, 0], L.COORDINATE_Y: xy[:, 1],
        L.ANGLE_ROT: rng.uniform(-180, 180, particles), L.ANGLE_TILT: rng.uniform(0, 180, particles),
        L.ANGLE_PSI: rng.uniform(-180, 180, particles), L.ORIGIN_X_ANGST: 0.0, L.ORIGIN_Y_ANGST: 0.0,
        L.DEFOCUS_U: du, L.DEFOCUS_V: du - 200.0, L.DEFOCUS_ANGLE: 30.0, L.OPTICS_GROUP: 1,
        L.RANDOM_SUBSET: 1 + np.arange(particles) % 2,
        L.IMAGE_NAME: [f"{i + 1}@Extract/k3.mrcs" for i in range(particles)]})  # not read by polishing
    write_particles(out / "particles.star", ParticleTable(pd.DataFrame({
        **optics, L.IMAGE_PIXEL_SIZE: [angpix], L.IMAGE_SIZE: [box], L.IMAGE_DIMENSIONALITY: [2]}), parts))
    r = np.sqrt(sum(a ** 2 for a in np.meshgrid(*[np.arange(box) - box // 2] * 3, indexing="ij")))
    mask = (r < 0.35 * box).astype(np.float32)
    for half in (1, 2):
        write_mrc(out / f"half{half}.mrc", rng.normal(size=(box,) * 3).astype(np.float32) * mask, angpix)
    write_mrc(out / "mask.mrc", mask, angpix)
    shells = np.arange(box // 2 + 1)
    fsc = np.clip(1.0 - shells / (0.6 * box / 2), 0.0, 1.0)
    write_postprocess(out / "postprocess.star", PostprocessResult(
        {L.UNFILTERED_MAP_HALF1: "half1.mrc", L.UNFILTERED_MAP_HALF2: "half2.mrc", L.MASK_NAME: "mask.mrc",
         L.FINAL_RESOLUTION: 2 * angpix / 0.6},
        fsc_table(box, angpix, {"corrected": fsc, "unmasked": fsc, "masked": fsc, "random_masked": fsc})))
    return {"particles": "particles.star", "postprocess": "postprocess.star",
            "corr_mic": "MotionCorr/corrected_micrographs.star"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--o", required=True, help="project folder (about frames x 47 MB for a K3 movie)")
    ap.add_argument("--width", type=int, default=11520)
    ap.add_argument("--height", type=int, default=8184)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--particles", type=int, default=300)
    ap.add_argument("--box", type=int, default=256, help="particle box after binning")
    ap.add_argument("--angpix", type=float, default=1.0, help="particle pixel size (movie: half of it)")
    ap.add_argument("--results", default="", help="append the JSON line to this file")
    ap.add_argument("--low_memory_bytes", type=int, default=-1,
                    help="POLISHPLUGIN_LOW_MEMORY_BYTES for the run (0: the big-movie path, one projector at a time "
                         "and none during the frames, even for short test movies; -1: the program's default)")
    args = ap.parse_args(argv)
    out = Path(args.o)
    t0 = time.time()
    files = make_project(out, args.width, args.height, args.frames, args.particles, args.box, args.angpix)
    t_make = time.time() - t0
    cmd = [sys.executable, "-m", "polishplugin", "motion_refine", "--i", files["particles"], "--f",
           files["postprocess"], "--corr_mic", files["corr_mic"], "--o", "Polish/", "--combine_frames",
           "--s_vel", "0.4", "--s_div", "1155", "--s_acc", "2.7"]
    t1 = time.time()
    env = dict(os.environ)
    if args.low_memory_bytes >= 0:
        env["POLISHPLUGIN_LOW_MEMORY_BYTES"] = str(args.low_memory_bytes)
    res = subprocess.run(cmd, cwd=out, capture_output=True, text=True, env=env)
    wall = time.time() - t1
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
        return res.returncode
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    row = {"case": "k3_memory", "width": args.width, "height": args.height, "frames": args.frames,
           "particles": args.particles, "box": args.box, "peak_rss_gib": round(peak_kib / 2 ** 20, 3),
           "wall_s": round(wall, 1), "setup_s": round(t_make, 1), "low_memory_bytes": args.low_memory_bytes,
           "frames_gib": round(args.particles * args.frames * args.box * (args.box // 2 + 1) * 8 / 2 ** 30, 3),
           "machine": f"{platform.node()} {os.cpu_count()} cpu", "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                        time.gmtime()),
           "command": "python -m bench.k3_memory " + " ".join(argv if argv is not None else sys.argv[1:])}
    line = json.dumps(row)
    print(line)
    if args.results:
        with open(args.results, "a") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
