"""explain's HTML report, opened in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_chromium_with_the_expected_totals(
    inert, tmp_path: Path, tiny_blob: Path
) -> None:
    work = (
        Path(__file__).parent / "golden" / "corpus.txt"
    ).read_bytes() + "<script>alert(1)</script> — é 😀\n".encode()
    (tmp_path / "w.txt").write_bytes(work)
    result = inert(
        "explain", "w.txt", "-b", tiny_blob, "--html", "report.html", "--json", "ledger.json"
    )
    assert result.returncode == 0, result.stderr.decode()
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    page = (tmp_path / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    browser = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            str(tmp_path / "report.html"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert browser.returncode == 0, browser.stderr[-2000:]
    dom = browser.stdout
    shown = re.search(r'<span id="shown">(\d+)</span>', dom)
    pieces = len(re.findall(r'<span class="t"', page))
    assert (
        shown and int(shown.group(1)) == pieces > 0.9 * ledger["totals"]["tokens"]
    )  # the script ran
    # tooltips are made in the browser from the page's numbers: the first piece has its own
    first = re.search(r'<span class="t" data-u="0" [^>]*title="([^"]*)"', dom)
    assert first, "the page's script did not make the first piece's tooltip"
    assert re.match(r"key \d+\.\d\d bits; blob \d+\.\d\d bits \(p = 0\.\d{4}\)", first.group(1))
    assert "blob's choices: " in first.group(1) and first.group(1).count("&quot;") >= 10
    shown_work = dom.split('<pre class="work">', 1)[1].split("</pre>", 1)[0]
    visible = re.sub(r'title="[^"]*"', "", shown_work)
    assert "\ufffd" not in visible and "😀" in visible  # tokens splitting a character shown whole
    held = f"{ledger['totals']['blob_held_bits']:,.0f} bits"
    assert held in dom and f"{ledger['totals']['key_bits']:,.0f} bits" in dom
    assert (
        "<script>alert(1)</script>" not in dom.split("<pre", 1)[1]
    )  # the work is escaped, not run
    console = [
        line for line in browser.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
    ]
    assert console == []
