"""The benchmark harness registers, selects and times cases (no timing assertions)."""

import pytest

bench_cases = pytest.importorskip("bench.cases")


def test_register_and_run_a_case(tmp_path, monkeypatch, capsys):
    import bench.__main__ as harness
    calls = []

    @bench_cases.register("zz_test.case", sizes=(3,), backends=("numpy",), repeats=2)
    def _case(size, backend):
        data = list(range(size))

        def run():
            calls.append(size)
            return {"total": float(sum(data))}
        return run

    try:
        with pytest.raises(ValueError, match="twice"):
            bench_cases.register("zz_test.case")(lambda s, b: None)
        monkeypatch.setattr(harness, "RESULTS_JSON", str(tmp_path / "r.json"))
        monkeypatch.setattr(harness, "RESULTS_MD", str(tmp_path / "r.md"))
        assert harness.main(["--quick", "--only", "zz_test"]) == 0
        assert calls == [3, 3]  # warm-up + one timed run with --quick
        table = (tmp_path / "r.md").read_text()
        assert "| zz_test.case | numpy | 3 |" in table and "total=3" in table
        assert "python -m bench --quick --only zz_test" in table
        assert harness.main(["--only", "no_such_case"]) == 2
    finally:
        bench_cases.CASES.pop("zz_test.case", None)
