"""Open the Scipion project window of the polishing stage and save screenshots (needs an X display).

``python -m polishplugin.tests.gui.gui_screenshot --out DIR [--project PATH]``:

* without ``--project``: makes a fresh project holding the stage template's protocols (filled for
  the simulated ``tiny`` dataset, not run) under a temporary SCIPION_HOME;
* opens pyworkflow's ProjectWindow (the protocols graph), saves ``DIR/project_window.png``;
* opens the form of the Bayesian-polishing protocol (tutorial step 26: B-factor fit range 20 / -1,
  sigmas from the training run) and saves ``DIR/protocol_form.png``;
* then the form of the training protocol (step 25: 0.5, 5000) -> ``DIR/train_form.png``.

Screens are grabbed from the X server with Pillow (``ImageGrab.grab(xdisplay=$DISPLAY)``), so no
xwd/ImageMagick is needed.  ``scripts/gui_screenshot.sh`` starts Xvfb and runs this module.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tkinter
from tkinter import ttk
import traceback
from pathlib import Path

#: (protocol class, PNG, form tab to show): the tabs holding the seed's values
FORMS = [("ProtPolishParticles", "protocol_form.png", "Polish"), ("ProtPolishTrain", "train_form.png", "Train")]


def _make_project(home: Path) -> str:
    from polishplugin.stage.workflow import create_project, stage_protocols

    project, _ = create_project(home / "projects_here" / "polishing_stage",
                                stage_protocols({"preset": 0}, make_mask=False))
    return project.getPath()


def _grab(path: Path) -> None:
    from PIL import ImageGrab

    ImageGrab.grab(xdisplay=os.environ.get("DISPLAY")).save(path)
    print(f"gui_screenshot: wrote {path}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the PNG files")
    ap.add_argument("--project", default="", help="an existing project folder (default: a new one)")
    ap.add_argument("--delay_ms", type=int, default=6000, help="wait this long for each window to draw")
    args = ap.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        print("gui_screenshot: no DISPLAY (run scripts/gui_screenshot.sh, which starts Xvfb)", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    from polishplugin.stage.scipion_env import setup_scipion_env

    home = Path(tempfile.mkdtemp(prefix="polish_gui_"))
    setup_scipion_env(home)
    os.environ.pop("SCIPION_NOGUI", None)
    project_path = os.path.abspath(args.project) if args.project else _make_project(home)
    os.chdir(project_path)

    from pyworkflow.gui.project import ProjectWindow

    window = ProjectWindow(project_path)
    root = window.root
    root.geometry("1500x950+0+0")
    prots = {p.getClassName(): p for p in window.project.getRuns()}
    queue = [("project_window.png", None, None)] + [(png, name, tab) for name, png, tab in FORMS if name in prots]

    def step():
        try:
            png, name, tab = queue.pop(0)
            for child in list(root.winfo_children()):
                if isinstance(child, tkinter.Toplevel):
                    child.destroy()  # the previous form
            root.after(args.delay_ms, lambda: arrange(png, tab))
            if name is not None:
                print(f"gui_screenshot: opening the form of {name}", flush=True)
                window.getViewWidget()._openProtocolForm(prots[name])  # may enter a nested main loop
        except Exception:  # noqa: BLE001 - report and leave
            _exit(1)

    def arrange(png, tab):
        # move the form into view and show the tab with the seed's fields, then grab
        try:
            for child in root.winfo_children():
                if isinstance(child, tkinter.Toplevel):
                    child.geometry("+240+60")
                    _select_tab(child, tab)
            root.update()
            root.after(1500, lambda: shoot(png))
        except Exception:  # noqa: BLE001
            _exit(1)

    def shoot(png):
        try:
            root.update()
            _grab(out / png)
            if queue:
                step()
            else:
                _exit(0)
        except Exception:  # noqa: BLE001
            _exit(1)

    root.after(args.delay_ms, step)
    window.show(center=False)  # maps the window and enters Tk's main loop (forms nest their own)
    return 1


def _select_tab(widget, text) -> None:
    """Select the notebook tab labelled ``text`` anywhere below ``widget``."""
    if text is None:
        return
    if isinstance(widget, ttk.Notebook):
        for tab_id in widget.tabs():
            if str(widget.tab(tab_id, "text")).strip() == text:
                widget.select(tab_id)
    for child in widget.winfo_children():
        _select_tab(child, text)


def _exit(rc: int) -> None:
    # os._exit: the forms run nested main loops and the project window's TCP server thread would
    # keep the process alive
    if rc:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
