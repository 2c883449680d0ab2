"""A ledger report -> one self-contained HTML page: the work coloured token by token by bits.

No network, no CDN: styles, the cumulative-bits chart (inline SVG) and a few lines of script
are in the page. Large works show their first MAX_TOKENS tokens; the JSON has them all.
"""

from __future__ import annotations

import html
import json

import jinja2
import numpy as np

from .ledger import TokenRecords

MAX_TOKENS = 20_000  # beyond this a page gets sluggish in a browser
CHART_POINTS = 600

TEMPLATE = jinja2.Environment(autoescape=True).from_string(  # the work's text is escaped
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>inert explain: {{ work }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table.totals td { padding: 0.15em 1em 0.15em 0; }
pre.work { white-space: pre-wrap; word-wrap: break-word; font: 13px/1.5 ui-monospace, monospace;
  border: 1px solid #ccc; padding: 1em; }
.t:hover { outline: 1px solid #333; }
.legend .swatch { display: inline-block; width: 2.2em; text-align: center; font-size: 12px; }
svg text { font-size: 11px; }
</style></head><body>
<h1>Where does this work live?</h1>
<table class="totals">
<tr><td>work</td><td>{{ work }} — {{ "{:,}".format(t.bytes) }} bytes, {{ "{:,}".format(t.tokens) }} tokens</td></tr>
<tr><td>blob</td><td><code>{{ blob }}</code></td></tr>
<tr><td>key</td><td id="key-bits">{{ "{:,.0f}".format(t.key_bits) }} bits ({{ "%.3f"|format(t.key_bits_per_byte) }} bits per byte)</td></tr>
<tr><td>reference</td><td>{{ "{:,.0f}".format(t.reference_bits) }} bits: {{ reference }}</td></tr>
<tr><td>held by the blob</td><td id="held">{{ "{:,.0f}".format(t.blob_held_bits) }} bits = {{ "%.1f"|format(100 * t.blob_held_bits / t.reference_bits if t.reference_bits else 0) }}% of the reference</td></tr>
{% if t.repeat_bits %}<tr><td>from the work's repeats</td><td id="repeats">{{ "{:,.0f}".format(t.repeat_bits) }} bits: what the work's earlier text supplied (codec 2)</td></tr>{% endif %}
<tr><td>not in the key</td><td id="not-in-key">{{ "{:,.0f}".format(t.held_bits) }} bits = {{ "%.1f"|format(100 * t.held_fraction) }}% of the reference</td></tr>
<tr><td>recalled spans</td><td>{{ spans|length }} (at least {{ rule.min_tokens }} tokens under {{ rule.max_mean_bits }} bits each)</td></tr>
{% if extraction.max_log2_probability is not none %}<tr><td>extraction</td><td>most likely {{ extraction.window }}-token window: p = 2<sup>{{ "%.1f"|format(extraction.max_log2_probability) }}</sup></td></tr>{% endif %}
</table>
<h2>Cumulative bits: key against reference</h2>
<svg width="720" height="240" viewBox="0 0 720 240" role="img" aria-label="cumulative bits">
<rect x="50" y="10" width="660" height="200" fill="none" stroke="#999"/>
<polyline fill="none" stroke="#c33" stroke-width="1.5" points="{{ ref_points }}"/>
<polyline fill="none" stroke="#36c" stroke-width="1.5" points="{{ key_points }}"/>
{% if blob_points %}<polyline fill="none" stroke="#393" stroke-width="1.5" stroke-dasharray="4 3" points="{{ blob_points }}"/>{% endif %}
<text x="55" y="25" fill="#c33">reference</text><text x="55" y="40" fill="#36c">key</text>
{% if blob_points %}<text x="55" y="55" fill="#393">the blob alone (above the key: the work's repeats)</text>{% endif %}
<text x="50" y="228">0</text><text x="710" y="228" text-anchor="end">{{ "{:,}".format(t.bytes) }} bytes</text>
<text x="2" y="18">{{ "{:,.0f}".format(y_max) }}</text>
</svg>
{% if spans %}<h2>Recalled spans</h2><ol>{% for s in spans %}
<li>bytes {{ s.start }}-{{ s.end }}, {{ s.tokens }} tokens, {{ "%.1f"|format(s.bits) }} bits: <q>{{ s.text[:200] }}</q></li>{% endfor %}</ol>{% endif %}
<h2>The work, token by token</h2>
<p class="legend">bits per token: {% for b, c in legend %}<span class="swatch" style="background:{{ c }}">{{ b }}</span>{% endfor %}
— hover a token for its probability, rank and the blob's alternatives.
Showing the first {{ "{:,}".format(shown_tokens) }} of {{ "{:,}".format(t.tokens) }} tokens{% if shown_tokens < t.tokens %} (the JSON output has all of them){% endif %}
in <span id="shown">{{ shown }}</span> coloured pieces.</p>
<pre class="work">{{ body|safe }}</pre>
<script id="tokens" type="application/json">{{ tokens_json|safe }}</script>
<script>
"use strict";
// Tooltips are built when a piece is first hovered, from the tokens' numbers above.
const d = JSON.parse(document.getElementById("tokens").textContent);
const p = (bits, digits) => Math.pow(2, -bits).toFixed(digits);
function tip(u) {
  const parts = [];
  for (let i = d.units[u]; i < d.units[u + 1]; i++) {
    const choices = [];
    for (let j = i * d.k; j < (i + 1) * d.k; j++) {
      choices.push(JSON.stringify(d.text[d.top[j]]) + " " + p(d.top_bits[j], 3));
    }
    parts.push("key " + d.key[i].toFixed(2) + " bits; blob " + d.bits[i].toFixed(2) +
      " bits (p = " + p(d.bits[i], 4) + "), rank " + d.rank[i] +
      "; blob's choices: " + choices.join(", "));
  }
  return parts.join(" | ");
}
const work = document.querySelector("pre.work");
work.addEventListener("mouseover", (event) => {
  const piece = event.target.closest(".t");
  if (piece && !piece.title) piece.title = tip(Number(piece.dataset.u));
});
const first = work.querySelector(".t");
if (first) first.title = tip(0);
document.getElementById("shown").textContent = document.querySelectorAll(".t").length;
</script>
</body></html>
"""
)


def colour(bits: float) -> str:
    """0 bits: pale green (the blob knew it); 12+ bits: deep red (the key had to bring it)."""
    x = min(max(bits / 12.0, 0.0), 1.0)
    hue = 120 * (1 - x)
    return f"hsl({hue:.0f}, 70%, {92 - 30 * x:.0f}%)"


def polyline(xs: list[float], ys: list[float], x_max: float, y_max: float) -> str:
    pts = [(50 + 660 * x / x_max, 210 - 200 * y / y_max) for x, y in zip(xs, ys, strict=True)]
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in [(50, 210), *pts])


def display_units(work: bytes, starts: list[int], ends: list[int]) -> list[tuple[str, int, int]]:
    """(text, first, stop) per group of tokens [first, stop) whose bytes are whole UTF-8
    characters (a token may split one)."""
    units, i, n = [], 0, len(starts)
    while i < n:
        j = i + 1
        while True:
            try:
                text = work[starts[i] : ends[j - 1]].decode("utf-8")
                break
            except UnicodeDecodeError:
                if j - i >= 4 or j == n:  # not text after all: show replacement marks
                    text = work[starts[i] : ends[j - 1]].decode("utf-8", errors="replace")
                    break
                j += 1
        units.append((text, i, j))
        i = j
    return units


def token_pieces(tokens: TokenRecords, work: bytes) -> tuple[list[str], str]:
    """One coloured <span> per display unit of the first MAX_TOKENS tokens, and the numbers
    their tooltips are made of in the browser (JSON, safe inside a <script> element)."""
    columns = tokens.blocks(stop=MAX_TOKENS, size=MAX_TOKENS)  # one block: units may span
    starts, ends, _, bits, key_bits, _, ranks, top_ids, top_bits = next(columns, ([],) * 9)
    units = display_units(work, starts, ends)
    pieces = [
        f'<span class="t" data-u="{u}" style="background:{colour(sum(key_bits[i:j]) / (j - i))}">'
        f"{html.escape(text)}</span>"
        for u, (text, i, j) in enumerate(units)
    ]
    shown = np.array(top_ids, dtype=np.int64).ravel()
    used = set(shown.tolist())
    numbers = {
        "units": [i for _, i, _ in units] + [len(starts)],
        "key": np.round(key_bits, 3).tolist(),
        "bits": np.round(bits, 3).tolist(),
        "rank": ranks,
        "k": len(top_ids[0]) if top_ids else 0,
        "top": shown.tolist(),
        "top_bits": np.round(np.ravel(top_bits), 3).tolist(),
        "text": {t: text for t, text in tokens.vocabulary_text().items() if t in used},
    }
    return pieces, json.dumps(numbers, ensure_ascii=False).replace("<", "\\u003c")


def render(result: dict, work: bytes) -> str:
    """The first MAX_TOKENS tokens are drawn; the chart is drawn from all of them."""
    tokens = result["tokens"]
    ends, key_bits, blob_bits, ref_bits = tokens.columns()  # (T,) each
    points = np.arange(0, len(ends), max(1, len(ends) // CHART_POINTS))
    points = np.append(points, len(ends) - 1) if len(ends) else points
    cumulative = [np.cumsum(bits) for bits in (key_bits, blob_bits, ref_bits)]
    xs = [0.0, *ends[points].astype(float)]
    key_y, blob_y, ref_y = ([0.0, *c[points]] for c in cumulative)
    k, b, r = (float(c[-1]) if len(c) else 0.0 for c in cumulative)
    pieces, tokens_json = token_pieces(tokens, work)
    x_max, y_max = max(xs[-1], 1.0), max(k, b, r, 1.0)
    return TEMPLATE.render(
        work=result["work"]["path"],
        blob=result["blob"]["id"],
        t=result["totals"],
        reference=result["reference"]["name"],
        spans=result["recall"]["spans"],
        rule=result["recall"]["rule"],
        extraction=result["extraction"],
        shown=len(pieces),
        shown_tokens=min(len(tokens), MAX_TOKENS),
        body="".join(pieces),
        tokens_json=tokens_json,
        key_points=polyline(xs, key_y, x_max, y_max),
        blob_points=polyline(xs, blob_y, x_max, y_max) if result["totals"]["repeat_bits"] else "",
        ref_points=polyline(xs, ref_y, x_max, y_max),
        y_max=y_max,
        legend=[(b, colour(b)) for b in (0, 1, 2, 4, 6, 8, 10, 12)],
    )
