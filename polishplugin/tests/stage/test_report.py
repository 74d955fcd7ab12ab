"""The demo's report page (``report.html``) opened in a real headless browser (Chromium)."""

import re

import numpy as np

from polishplugin.stage.report import write_report
from polishplugin.testing.browser import dump_dom, screenshot


def _png(path, slope):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from polishplugin.plots.postprocess import save_figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    x = np.arange(16)
    ax.plot(x + 1, slope * x, "o-")
    ax.set_xlabel("movie frame (1 = first frame used)")
    ax.set_ylabel("B-factor (Å²)")
    ax.set_title(f"planted slope {slope}")
    save_figure(fig, path)


def test_report_page_shows_summary_and_every_image_in_a_browser(tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    for k, slope in enumerate((-5, -10, -20)):
        _png(plots / f"plot_{k}.png", slope)
    (plots / "28_post-process_logfile.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    text = "resolution: fair before/after\n  before polishing (A)   5.82\n  after polishing (A)    4.57\n"
    page = write_report(tmp_path, text, plots)
    dom = dump_dom(page, tmp_path / "profile")
    assert "images loaded: 3 of 3" in dom, re.findall(r'id="status">[^<]*', dom)
    assert "5.82" in dom and "4.57" in dom
    assert dom.count("data:image/png;base64,") == 3  # self-contained: no file or network reference
    assert 'href="plots/28_post-process_logfile.pdf"' in dom
    shot = screenshot(page, tmp_path / "report.png", tmp_path / "profile")
    from PIL import Image

    grey = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert grey.std() > 10, "the screenshot looks blank"
