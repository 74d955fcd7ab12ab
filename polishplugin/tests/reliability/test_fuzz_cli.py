"""Property-based fuzzing (hypothesis) of every program's command line.

Random argument lists built from each program's own options (with good, missing, empty, corrupt and
tiny-but-valid input files and odd numbers: 0, negative, NaN, inf, text) go through the same path as the
console script, :func:`run_module`.  The only acceptable endings are a return code (0 or 1: an expected
error printed as one sentence), or ``SystemExit`` with code 0 (``--help``) or 2 (argparse).  Any other
exception is a crash the user would see as a traceback.

``simulate`` and ``demo`` need no input file, so a parsed command line would start a real simulation:
for those only the argument parsing is fuzzed.  Bounded: ``max_examples`` per program, no deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import io
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from polishplugin.io.mrc import write_mrc  # noqa: E402
from polishplugin.programs import COMMANDS  # noqa: E402
from polishplugin.programs._cli import build_parser, run_module  # noqa: E402

RUN_MAIN = ["postprocess", "mask_create", "local_resolution", "motion_refine", "motion_train", "refine3d"]
PARSE_ONLY = ["simulate", "demo"]
NUMBERS = ["0", "-1", "1", "2", "3.5", "-2.5", "15", "nan", "inf", "abc", "", "1e-9"]
PLAUSIBLE = ["1", "2", "3", "4", "10", "20"]  # most numbers parse, so the programs get past argparse

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much])


_COUNTER = itertools.count()


def _files(root: str) -> list[str]:
    """Candidate input files: missing, empty, text garbage, tiny maps (one with NaN), a STAR without columns."""
    os.makedirs(root, exist_ok=True)
    box = 8
    rng = np.random.default_rng(0)
    half = rng.normal(size=(box,) * 3).astype(np.float32)
    write_mrc(os.path.join(root, "run_half1_class001_unfil.mrc"), half, 2.0)
    write_mrc(os.path.join(root, "run_half2_class001_unfil.mrc"), half + 0.1 * rng.normal(size=half.shape), 2.0)
    write_mrc(os.path.join(root, "mask.mrc"), np.ones((box,) * 3, np.float32), 2.0)
    nan = half.copy()
    nan[1, 2, 3] = np.nan
    write_mrc(os.path.join(root, "nan_half1.mrc"), nan, 2.0)
    for name, text in (("empty.star", ""), ("garbage.mrc", "not an mrc file\n" * 20),
                       ("nocols.star", "data_particles\nloop_\n_rlnSomething\n1\n2\n"),
                       ("mtf.star", "data_\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n0 1\n0.5 0.4\n")):
        with open(os.path.join(root, name), "w") as fh:
            fh.write(text)
    names = ["run_half1_class001_unfil.mrc", "run_half2_class001_unfil.mrc", "mask.mrc", "nan_half1.mrc",
             "empty.star", "garbage.mrc", "nocols.star", "mtf.star", "missing.star", "missing_half1.mrc"]
    return [os.path.join(root, n) for n in names]


def _options(command: str):
    parser = build_parser(command)
    opts = []
    for act in parser._actions:
        if isinstance(act, argparse._HelpAction) or not act.option_strings:
            continue
        opts.append((act.option_strings[-1], act))
    return opts


@st.composite
def _argv(draw, command: str, files: list[str], out_dir: str):
    opts = _options(command)
    argv: list[str] = []
    chosen = draw(st.lists(st.sampled_from(opts), max_size=8))
    required = [o for o in opts if o[1].required]
    if draw(st.integers(0, 9)) > 0:  # mostly give the required options, sometimes not
        chosen = required + chosen
    for flag, act in chosen:
        if act.nargs == 0:
            argv.append(flag)
            continue
        if flag == "--o":  # a fresh folder per example (outputs of one example must not meet the next)
            fresh = os.path.join(out_dir, f"ex{next(_COUNTER)}")
            argv += [flag, os.path.join(fresh, draw(st.sampled_from(["job/run", "out", "a/b/"])))]
            continue
        if act.choices:
            argv += [flag, str(draw(st.sampled_from(list(act.choices) + ["bogus"])))]
            continue
        if act.type in (int, float):
            argv += [flag, draw(st.sampled_from(NUMBERS if draw(st.integers(0, 3)) == 0 else PLAUSIBLE))]
            continue
        if flag in ("--i", "--ref") and draw(st.booleans()):
            argv += [flag, files[0]]  # a valid half map
            continue
        argv += [flag, draw(st.sampled_from(files + NUMBERS[:3] + ["C1", "D2", "X9", ""]))]
    if draw(st.integers(0, 19)) == 0:
        argv.append(draw(st.sampled_from(["--bogus_option", "stray", "--i"])))
    return argv


def _run(command: str, argv: list[str], run_main: bool) -> None:
    module = importlib.import_module(COMMANDS[command])
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            if run_main:
                rc = run_module(module, argv, f"polishplugin {command}")
                assert rc in (0, 1), (argv, rc)
            else:
                build_parser(command).parse_args(argv)
        except SystemExit as exc:
            assert exc.code in (0, 2), (argv, exc.code)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _files(str(tmp_path_factory.mktemp("fuzz_inputs")))


@pytest.mark.parametrize("command", RUN_MAIN)
def test_program_command_line_fuzz(command, files, tmp_path):
    out_dir = str(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # relative outputs of a bad --o land in the test folder
    try:
        @FUZZ
        @given(_argv(command, files, out_dir))
        def check(argv):
            _run(command, argv, run_main=True)

        check()
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("command", PARSE_ONLY)
def test_parse_only_command_line_fuzz(command, files, tmp_path):
    @FUZZ
    @given(_argv(command, files, str(tmp_path)))
    def check(argv):
        _run(command, argv, run_main=False)

    check()


def test_every_command_is_fuzzed():
    assert sorted(RUN_MAIN + PARSE_ONLY) == sorted(COMMANDS)


def test_known_answer_missing_input_exit_1(files, tmp_path, capsys):
    """Known answer: a missing --i file ends with code 1 and one line naming the file."""
    module = importlib.import_module(COMMANDS["postprocess"])
    missing = os.path.join(os.path.dirname(files[0]), "missing_half1.mrc")
    rc = run_module(module, ["--i", missing, "--o", str(tmp_path / "pp")], "polishplugin postprocess")
    assert rc == 1
    err = capsys.readouterr().err
    assert "ERROR" in err and "missing_half1.mrc" in err
