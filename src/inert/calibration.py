"""The model's tables, calibrated to the work's own token counts (codec 6).

A model trained on other text keeps misjudging some tokens of this work: a name it has
never seen but the work repeats, a word the work never uses. Calibration learns that from
the part of the work the decoder already knows, with nothing to tune: in the lockstep
decoder's order, `seen[t]` counts token t among the tokens coded so far and `expected[t]`
sums the model's own probability of t over those positions (its table entries f(t), in
units of 1/TOTAL); each table is then scaled entry by entry by

    w(t) = min((seen[t] + 1) / (expected[t] / TOTAL + 1), 2^20)

and made whole again. A token the model keeps underrating in this work gains, one it keeps
overrating loses (an online output bias; `bench/calibration_gain.py` measured 1.5-4.8 %
smaller keys on texts the blob never saw). Each table entry becomes

    g = 1 + trunc(f * w),   f' = 1 + trunc(g * ((TOTAL - V) / S)),   S = Σ g,

the remainder TOTAL - Σ f' (never negative) going to the first largest f'. Every step is
one IEEE-754 float64 operation rounded to nearest, or exact integer arithmetic, so the
calibrated tables are the same on every machine (docs/FORMAT.md, "Codec 6").
"""

from __future__ import annotations

import numpy as np

from . import exact
from .rangecoder import TOTAL, intervals

WEIGHT_CAP = float(1 << 20)  # w at most: g = 1 + trunc(f w) and Σ g stay below 2^52


class Calibration:
    """The work's token counts so far, and the tables they calibrate."""

    def __init__(self, vocab_size: int, threads: int = 1) -> None:
        self.seen = np.zeros(vocab_size, dtype=np.int64)
        self.expected = np.zeros(vocab_size, dtype=np.int64)  # Σ f(t), f at TOTAL
        self.threads = threads

    def weights(self) -> np.ndarray:
        """w (V,) float64 for the next step's tables."""
        ratio = (self.seen + 1).astype(np.float64) * float(TOTAL)
        ratio /= (self.expected + TOTAL).astype(np.float64)
        return np.minimum(ratio, WEIGHT_CAP)

    def apply(self, freq: np.ndarray, running: bool = False) -> np.ndarray:
        """The model's tables freq (R, V) int64 (rows summing to TOTAL) calibrated: a new
        (R, V) int64 array, or (`running`) its inclusive running sums."""
        freq = np.ascontiguousarray(freq, dtype=np.int64)
        w = self.weights()
        if exact.KERNELS is not None:
            out = np.empty_like(freq)
            threads = max(1, min(self.threads, freq.size >> 18))
            exact.KERNELS.calibrate(freq, w, out, *freq.shape, TOTAL, threads, running)
            return out
        out = calibrated(freq, w)
        return np.cumsum(out, axis=1, out=out) if running else out

    def intervals(self, freq: np.ndarray, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each symbol's interval (start, size) (R,) int64 in its row of the calibrated
        tables of freq (R, V): what an encoder needs, without making the tables."""
        freq = np.ascontiguousarray(freq, dtype=np.int64)
        symbols = np.ascontiguousarray(symbols, dtype=np.int64)
        if exact.KERNELS is None:
            return intervals(calibrated(freq, self.weights()), symbols)
        start, size = np.empty_like(symbols), np.empty_like(symbols)
        threads = max(1, min(self.threads, freq.size >> 18))
        exact.KERNELS.calibrated_intervals(
            freq, self.weights(), symbols, start, size, *freq.shape, TOTAL, threads
        )
        return start, size

    def learn(self, freq: np.ndarray, symbols: np.ndarray) -> None:
        """After a step: rows of the model's (uncalibrated) tables freq coded symbols."""
        self.expected += freq.sum(axis=0)
        self.seen += np.bincount(symbols, minlength=len(self.seen))


def calibrated(freq: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The module docstring's f' of the tables freq (R, V) int64 under weights w (V,)."""
    vocab = freq.shape[1]
    g = (freq * w).astype(np.int64) + 1  # f * w >= 0: truncation is floor
    share = float(TOTAL - vocab) / g.sum(axis=1).astype(np.float64)  # (R,)
    out = (g.astype(np.float64) * share[:, None]).astype(np.int64) + 1
    out[np.arange(len(out)), out.argmax(axis=1)] += TOTAL - out.sum(axis=1)
    return out
