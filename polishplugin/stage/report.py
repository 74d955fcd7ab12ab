"""The demo's report page: one self-contained HTML file with the summary and every plot.

``<o>/report.html`` holds the summary table (each estimate beside the simulated truth, as printed by
``polishplugin demo``), every PNG of ``<o>/plots`` embedded as a data URI (the page needs no network and
no other file) and links to the logfile PDFs beside it.  A line at the top says, once the page has
loaded, how many of its images the browser could decode ("images loaded: N of N").
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

__all__ = ["write_report", "REPORT_NAME"]

REPORT_NAME = "report.html"

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
pre { background: #f4f4f4; padding: 1em; font-size: 12px; line-height: 1.35; overflow-x: auto; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 560px; border: 1px solid #ccc; }
figcaption { font-size: 12px; color: #555; }
#status { font-size: 13px; color: #555; }
"""

#: counts the images the browser decoded, once the page has loaded (read by the headless-browser test)
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.getElementById("status").textContent = "images loaded: " + ok + " of " + imgs.length;
});
"""


def _figure(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    name = html.escape(png.name)
    return (f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>{name}</figcaption></figure>")


def write_report(out_dir: str | os.PathLike, summary_text: str, plots_dir: str | os.PathLike | None = None,
                 title: str = "polishplugin demo: the polishing stage on the simulated dataset") -> Path:
    """Write ``<out_dir>/report.html`` (atomically) from the summary text and the plots; returns its path."""
    out = Path(out_dir)
    plots = Path(plots_dir) if plots_dir is not None else out / "plots"
    pngs = sorted(plots.glob("*.png")) if plots.is_dir() else []
    pdfs = sorted(plots.glob("*.pdf")) if plots.is_dir() else []
    links = "".join(f'<li><a href="{html.escape(os.path.relpath(p, out))}">{html.escape(p.name)}</a></li>'
                    for p in pdfs)
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", f"<script>{_SCRIPT}</script>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>",
        f'<p id="status">images loaded: (waiting for the page to load; {len(pngs)} images)</p>',
        "<h2>Summary: estimates beside the simulated truth</h2>",
        f"<pre>{html.escape(summary_text.strip())}</pre>",
        f"<h2>Plots ({len(pngs)})</h2>", "".join(_figure(p) for p in pngs),
        f"<h2>Logfiles</h2><ul>{links}</ul>" if links else "",
        "</body></html>", ""])
    path = out / REPORT_NAME
    tmp = out / f".{REPORT_NAME}.tmp{os.getpid()}"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
