"""A ledger report -> a PNG: cumulative bits of the key against the reference, and bits per token.

Needs matplotlib (the optional `plot` extra); nothing else in inert does.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from .errors import InertError

POINTS = 20_000  # at most this many points per curve


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
    plt = pyplot()
    ends, key_bits, blob_bits, ref_bits = result["tokens"].columns()  # (T,) each
    every = max(1, len(ends) // POINTS)  # a large work is drawn from every k-th token
    last = np.arange(every - 1, len(ends), every)  # the last token of each bucket
    if len(ends) and (not len(last) or last[-1] != len(ends) - 1):
        last = np.append(last, len(ends) - 1)
    key, blob, ref = (np.cumsum(bits)[last] for bits in (key_bits, blob_bits, ref_bits))
    ends = ends[last]
    sizes = np.diff(np.r_[-1, last])  # tokens per bucket
    per_token = np.diff(np.r_[0.0, key]) / np.maximum(sizes, 1)  # mean key bits per bucket
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[2, 1])
    top.plot(ends, ref, color="#c33", label=f"reference: {result['reference']['name']}")
    top.plot(ends, key, color="#36c", label="key")
    top.fill_between(ends, blob, ref, color="#9c9", alpha=0.3, label="held by the blob")
    if result["totals"]["repeat_bits"]:  # codec 2: what the work's own earlier text supplied
        top.plot(ends, blob, color="#393", linestyle="--", label="the blob alone")
        top.fill_between(ends, key, blob, color="#fc9", alpha=0.4, label="from the work's repeats")
    top.set_ylabel("cumulative bits")
    top.legend(loc="upper left")
    top.set_title(f"{result['work']['path']} against blob {result['blob']['id']}")
    bottom.plot(ends, per_token, linewidth=0.6, color="#36c")
    for span in result["recall"]["spans"]:
        bottom.axvspan(span["start"], span["end"], color="#9c9", alpha=0.5)
    bottom.set_ylabel("bits per token" if every == 1 else f"mean bits per {every} tokens")
    bottom.set_xlabel("byte offset in the work")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
