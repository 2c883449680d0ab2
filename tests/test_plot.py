"""explain --plot: a PNG of the cumulative bits, also for works with more tokens than it draws."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from inert import plot as plot_module
from inert.codec import CodecSettings
from inert.ledger import build_ledger, pad_reference, report

TEXT = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()


@pytest.mark.parametrize("points", [20_000, 7])  # 7: every k-th token, bucket means
def test_plot_writes_a_png(tiny, monkeypatch: pytest.MonkeyPatch, points: int) -> None:
    monkeypatch.setattr(plot_module, "POINTS", points)
    ledger = build_ledger(TEXT * 2, tiny, CodecSettings(segment_tokens=32))
    result = report(ledger, "pad", pad_reference(ledger))
    result["work"], result["blob"] = {"path": "w.txt", "bytes": len(TEXT) * 2}, {"id": "x"}
    out = io.BytesIO()
    plot_module.plot(result, out)
    assert out.getvalue().startswith(b"\x89PNG\r\n\x1a\n") and len(out.getvalue()) > 10_000
