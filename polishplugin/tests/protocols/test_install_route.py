"""README.rst's route into an existing Scipion, as written: ``git clone ... scipion-em-polishplugin``
then ``scipion installp -p scipion-em-polishplugin --devel``, run from the folder above the clone.

The "existing Scipion" is a fresh virtual environment in a temporary folder that sees this
environment's packages (Scipion, numpy, pip...) through a ``.pth`` file but not its polishplugin, so
installp really installs the clone (editable) into the new environment; this environment's
site-packages must be left unchanged.  The clone is made from this checkout (no network).  pip runs
offline: without build isolation when ``wheel`` is importable (``scripts/install.sh`` installs it),
else from the wheels in ``$POLISHPLUGIN_WHEELHOUSE`` (setuptools and wheel); without either the test
skips with that reason.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from polishplugin.tests.protocols import base  # noqa: F401 - skips without Scipion

from polishplugin.stage.scipion_env import HOSTS_CONF  # noqa: E402
from polishplugin.tests.protocols.base import PolishTestCase, readme_command  # noqa: E402

ALL_PROTOCOLS = ["ProtPolishImport", "ProtPolishMaskCreate", "ProtPolishTrain", "ProtPolishParticles",
                 "ProtPolishRefine3D", "ProtPolishPostprocess", "ProtPolishLocalRes"]
CHECKOUT = Path(__file__).resolve().parents[3]


def _listing(folder: str) -> list:
    return sorted((entry.name, entry.stat().st_mtime_ns) for entry in os.scandir(folder))


class TestInstallRoute(PolishTestCase):
    def _pip_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_FIND_LINKS")}
        env["PIP_NO_INDEX"] = "1"
        if importlib.util.find_spec("wheel") is not None:
            env["PIP_NO_BUILD_ISOLATION"] = "0"  # pip's spelling of --no-build-isolation
        elif os.environ.get("POLISHPLUGIN_WHEELHOUSE"):
            env["PIP_FIND_LINKS"] = os.environ["POLISHPLUGIN_WHEELHOUSE"]
        else:
            self.skipTest("an offline editable install needs the 'wheel' package (scripts/install.sh installs "
                          "it) or $POLISHPLUGIN_WHEELHOUSE with setuptools and wheel wheels")
        return env

    def _clone(self, tokens: list) -> Path:
        """README's `git clone URL FOLDER`, from this checkout instead of the URL (no network)."""
        self.assertEqual(tokens[:2], ["git", "clone"])
        folder = self.tmp / tokens[-1]
        if (CHECKOUT / ".git").exists() and shutil.which("git"):
            subprocess.run(["git", "clone", "-q", str(CHECKOUT), str(folder)], check=True, timeout=300)
        else:  # an unpacked source tree
            shutil.copytree(CHECKOUT, folder, ignore=shutil.ignore_patterns(".venv", "scipion_home", "demo_output",
                                                                            "*.egg-info", "__pycache__"))
        return folder

    def _scipion_env(self) -> Path:
        """A fresh venv seeing this environment's packages (a .pth file), with its own SCIPION_HOME."""
        venv = self.tmp / "scipion_venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
        python = venv / "bin" / "python"
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        Path(purelib, "_this_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        home = self.tmp / "scipion_home"
        (home / "config").mkdir(parents=True)
        (home / "config" / "hosts.conf").write_text(HOSTS_CONF)
        (home / "config" / "scipion.conf").write_text("[PYWORKFLOW]\n\n[PLUGINS]\n")
        return python

    def test_readme_clone_and_installp_devel(self):
        env = self._pip_env()
        clone_tokens = readme_command(self, "git clone")
        installp = readme_command(self, "scipion installp")
        folder = clone_tokens[-1]
        self.assertEqual(folder, "scipion-em-polishplugin")  # the distribution's name (setup.py)
        self.assertEqual(installp, ["scipion", "installp", "-p", folder, "--devel"])
        python = self._scipion_env()
        self.assertNotEqual(subprocess.run([str(python), "-c", "import polishplugin"], env=env, cwd=self.tmp,
                                           capture_output=True).returncode, 0)  # not installed yet
        clone = self._clone(clone_tokens)
        shared = sysconfig.get_paths()["purelib"]
        before = _listing(shared)
        env.update(SCIPION_HOME=str(self.tmp / "scipion_home"),
                   SCIPION_USER_DATA=str(self.tmp / "scipion_home" / "user_data"),
                   PATH=str(python.parent) + os.pathsep + env["PATH"])
        # `scipion ...` of the new environment, run from the folder above the clone as the README does
        result = subprocess.run([str(python), "-m", "scipion"] + installp[1:], env=env, cwd=self.tmp,
                                capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        out = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, out[-3000:])
        self.assertNotIn("not found after running", out, out[-3000:])
        self.assertEqual(_listing(shared), before, "installp changed this environment's site-packages")
        check = ("import polishplugin; print(polishplugin.__file__)\n"
                 "from pwem import Domain\n"
                 "print(sorted(k for k in Domain.getProtocols() if k.startswith('ProtPolish')))\n")
        result = subprocess.run([str(python), "-c", check], env=env, cwd=self.tmp, capture_output=True,
                                text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        lines = result.stdout.strip().splitlines()
        self.assertEqual(Path(lines[0]).resolve(), (clone / "polishplugin" / "__init__.py").resolve())
        for name in ALL_PROTOCOLS:
            self.assertIn(name, lines[-1])
