"""A ledger report -> a PNG: cumulative bits of the key against the reference, and bits per token.

Needs matplotlib (the optional `plot` extra); nothing else in inert does.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from .errors import InertError

POINTS = 2_000  # per curve: two per pixel of the 1,000-pixel-wide figure (more only slow it)


def pyplot():
    """matplotlib.pyplot on the file-only backend (slow to import: callers may start early)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise InertError("--plot needs matplotlib", hint="pip install 'inert[plot]'") from None
    return plt


def plot(result: dict, out: BinaryIO) -> None:
    draw(curves(result), out)


def curves(result: dict) -> dict:
    """What the plot shows, at most POINTS per curve: small enough to send to another process."""
    ends, key_bits, blob_bits, ref_bits = result["tokens"].columns()  # (T,) each
    every = max(1, len(ends) // POINTS)  # a large work is drawn from every k-th token
    last = np.arange(every - 1, len(ends), every)  # the last token of each bucket
    if len(ends) and (not len(last) or last[-1] != len(ends) - 1):
        last = np.append(last, len(ends) - 1)
    key, blob, ref = (np.cumsum(bits)[last] for bits in (key_bits, blob_bits, ref_bits))
    sizes = np.diff(np.r_[-1, last])  # tokens per bucket
    return {
        "ends": ends[last],
        "key": key,
        "blob": blob,
        "reference": ref,
        "per_token": np.diff(np.r_[0.0, key]) / np.maximum(sizes, 1),  # mean key bits per bucket
        "every": every,
        "spans": [(span["start"], span["end"]) for span in result["recall"]["spans"]],
        "reference_name": result["reference"]["name"],
        "repeats": bool(result["totals"]["repeat_bits"]),
        "title": f"{result['work']['path']} against blob {result['blob']['id']}",
    }


def draw(c: dict, out: BinaryIO) -> None:
    """The PNG of curves(result)."""
    plt = pyplot()
    ends = c["ends"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[2, 1])
    top.plot(ends, c["reference"], color="#c33", label=f"reference: {c['reference_name']}")
    top.plot(ends, c["key"], color="#36c", label="key")
    top.fill_between(
        ends, c["blob"], c["reference"], color="#9c9", alpha=0.3, label="held by the blob"
    )
    if c["repeats"]:  # codec 2: what the work's own earlier text supplied
        top.plot(ends, c["blob"], color="#393", linestyle="--", label="the blob alone")
        top.fill_between(
            ends, c["key"], c["blob"], color="#fc9", alpha=0.4, label="from the work's repeats"
        )
    top.set_ylabel("cumulative bits")
    top.legend(loc="upper left")
    top.set_title(c["title"])
    bottom.plot(ends, c["per_token"], linewidth=0.6, color="#36c")
    for start, end in c["spans"]:
        bottom.axvspan(start, end, color="#9c9", alpha=0.5)
    every = c["every"]
    bottom.set_ylabel("bits per token" if every == 1 else f"mean bits per {every} tokens")
    bottom.set_xlabel("byte offset in the work")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
