"""Round trips of the local-resolution outputs: the per-point FSC STAR file, the ChimeraX script, links."""

import os

import numpy as np
import pytest

from polishplugin.core.local_resolution import PointResult
from polishplugin.io.local_resolution import (link_output, locres_paths, point_table_name, read_locres_fscs,
                                              relion_integer_string, write_chimerax_script, write_locres_fscs)
from polishplugin.io.star import StarError, read_star


def test_relion_names():
    assert relion_integer_string(-20) == "-0020" and relion_integer_string(8) == "00008"
    assert point_table_name((-20, 4, 0)) == "fsc_-0020_00004_00000"
    paths = locres_paths("LocalRes/job031/relion")
    assert paths["fscs"] == "LocalRes/job031/relion_locres_fscs.star"
    assert paths["locres_link"] == "LocalRes/job031/locres.mrc"


def test_locres_fscs_round_trip(tmp_path):
    n = 9
    points = [PointResult((kk, -4, 8), 4.0 + kk, np.linspace(1, 0, n), np.linspace(1, 0.1, n),
                          np.linspace(1, 0.2, n)) for kk in (-8, 0, 8)]
    unmasked = np.linspace(1, 0.05, n)
    path = tmp_path / "r_locres_fscs.star"
    write_locres_fscs(path, points, unmasked, 16, 1.5, comments=("test",))
    blocks = read_star(path)
    assert list(blocks)[0] == "locres_points" and list(blocks)[1] == point_table_name((-8, -4, 8))
    again, unmasked_again = read_locres_fscs(path)
    np.testing.assert_allclose(unmasked_again, unmasked, atol=1e-6)
    assert [p.point for p in again] == [p.point for p in points]
    for a, b in zip(again, points):
        assert a.resolution_a == pytest.approx(b.resolution_a)
        for name in ("fsc_true", "fsc_masked", "fsc_random_masked"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-6)
    path.write_text("data_other\nloop_\n_rlnSpectralIndex\n0\n")
    with pytest.raises(StarError, match="locres_points"):
        read_locres_fscs(path)


def test_chimerax_script_and_links(tmp_path):
    target = tmp_path / "relion_locres.mrc"
    target.write_bytes(b"x")
    write_chimerax_script(str(tmp_path / "relion_chimerax.cxc"), str(tmp_path / "relion_locres_filtered.mrc"),
                          str(target), (3.0, 6.0))
    script = (tmp_path / "relion_chimerax.cxc").read_text()
    assert script.startswith("open relion_locres_filtered.mrc\nopen relion_locres.mrc\n")
    assert "palette 3.00,red:4.50,white:6.00,blue" in script
    write_chimerax_script(str(tmp_path / "sub" / "c.cxc"), "/abs/post.mrc", str(target), (3.0, 6.0))
    assert (tmp_path / "sub" / "c.cxc").read_text().startswith("open /abs/post.mrc\nopen " + str(target))
    link = tmp_path / "locres.mrc"
    link_output(str(target), str(link))
    link_output(str(target), str(link))          # again: replaced, not an error
    assert os.path.realpath(link) == os.path.realpath(target)
