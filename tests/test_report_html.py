"""``report.html``: one self-contained page (every figure embedded), checked as text and in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from enhanced_tx.tracking.report import build_report
from enhanced_tx.tracking.report_html import render_html
from tests.test_report import make_job

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
# a page beside the report that loads it in a frame and writes what the browser made of it into the DOM
CHECK_PAGE = """<!DOCTYPE html><html><body><iframe id="r" src="report.html" style="width:1200px;height:900px"></iframe>
<pre id="result">pending</pre><script>
const frame = document.getElementById("r");
frame.addEventListener("load", () => {
  const doc = frame.contentDocument, images = Array.from(doc.images);
  const shown = images.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0);
  document.getElementById("result").textContent = JSON.stringify(
    {images: images.length, shown: shown.length, tables: doc.querySelectorAll("table").length, title: doc.title});
});
</script></body></html>
"""


def seeded_sweep(root: Path) -> Path:
    for num, (norm, seed, final) in enumerate((("a", 0, 2.0), ("a", 1, 2.1), ("b", 0, 1.5), ("b", 1, 1.62))):
        make_job(root, num, {"norm": norm, "seed": seed}, [final + 1, final + 0.3, final])
    return root


def test_the_page_embeds_every_figure_and_links_nothing_outside(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG fake a")
    (tmp_path / "b.png").write_bytes(b"\x89PNG fake b")
    page = render_html("# Title\n\n| x | y |\n| --- | --- |\n| 1 | 2 |\n\n![a](a.png)\n![b](b.png)\n", tmp_path)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert [base64.b64decode(s.split(",", 1)[1]) for s in sources] == [b"\x89PNG fake a", b"\x89PNG fake b"]
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table>" in page and "<title>Title</title>" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_page_loads_in_a_real_browser_without_errors_and_shows_every_figure(tmp_path):
    report = build_report(seeded_sweep(tmp_path / "sweep"))
    folder = report.sweep.sweep_dir
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) >= 6
    for png in pngs:  # the page must not need the files beside it
        png.unlink()
    (folder / "check.html").write_text(CHECK_PAGE)
    result = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
        + ["--enable-logging=stderr", "--log-level=0", "--virtual-time-budget=10000"]
        + ["--dump-dom", (folder / "check.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(re.search(r'<pre id="result">([^<]*)</pre>', result.stdout).group(1))
    assert found == {"images": len(pngs), "shown": len(pngs), "tables": found["tables"], "title": found["title"]}
    assert found["tables"] >= 3 and found["title"] == f"Sweep report: {folder.name}"
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no script error, no failed resource
