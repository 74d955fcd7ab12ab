"""``polishplugin mask_create`` on a small map: output values, pixel size, RELION defaults."""

import mrcfile
import numpy as np
import pytest

from polishplugin.io.mrc import write_mrc
from polishplugin.core.filters import centred_radius
from polishplugin.programs import mask_create as prog
from polishplugin.programs._cli import build_parser, run_module


def _run(argv):
    return prog.main(build_parser("mask_create").parse_args(argv))


def test_tutorial_options(tmp_path):
    volume = (centred_radius((32, 32, 32)) < 8).astype(np.float32) * 0.02
    src, out = str(tmp_path / "run_class001.mrc"), str(tmp_path / "MaskCreate" / "mask.mrc")
    write_mrc(src, volume, 1.244)
    assert _run(["--i", src, "--o", out, "--lowpass", "15", "--ini_threshold", "0.005",
                 "--extend_inimask", "0", "--width_soft_edge", "6", "--j", "2"]) == 0
    with mrcfile.open(out) as m:
        mask = np.asarray(m.data)
        assert m.voxel_size.x == pytest.approx(1.244, abs=1e-3)
    assert mask.dtype == np.float32 and mask.min() >= 0 and mask.max() == 1
    r = centred_radius(mask.shape)
    assert np.all(mask[r < 6] == 1) and np.all(mask[r > 16] == 0)
    edge = mask[(mask > 0) & (mask < 1)]
    assert edge.size > 0                                  # soft edge present


def test_defaults_threshold_only(tmp_path, rng):
    volume = rng.standard_normal((10, 10, 10)).astype(np.float32) * 0.02
    src, out = str(tmp_path / "in.mrc"), str(tmp_path / "m.mrc")
    write_mrc(src, volume, 2.0)
    assert _run(["--i", src, "--o", out, "--invert"]) == 0
    with mrcfile.open(out) as m:
        np.testing.assert_array_equal(m.data, (volume < 0.01).astype(np.float32))


def test_missing_input_is_an_error(tmp_path, capsys):
    rc = run_module(prog, ["--i", str(tmp_path / "absent.mrc"), "--o", str(tmp_path / "m.mrc")],
                    "polishplugin mask_create")
    assert rc == 1 and "absent.mrc" in capsys.readouterr().err
