"""The work's own repeats -> sharper frequency tables (codec 2).

A small model with a short window forgets what the work said a page ago; classical
compressors live on exactly that. Codec 2 therefore keeps a history of which token followed
each pair of tokens in the part of the work the decoder already knows, and mixes the
continuations it saw into the model's table.

What the decoder knows: it advances GROUP segments in lockstep, one position of every
segment per step, group after group. So when position t of a segment is coded, every token
of the earlier groups and positions < t of every segment of its own group are known: that,
exactly, is the history the table at position t may use, and the encoder replays the same
order. All arithmetic is on integers, so the mixed tables are the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import FREQ_TOTAL

GROUP = 256  # segments decoded in lockstep, sharing one history as they go
WEIGHT_ONE = 1 << 16  # the history's weight is a fraction of this
WEIGHT_MAX = 62259  # round(0.95 * 2**16): the weight of a context seen very often
WEIGHT_HALF = 4  # weight = WEIGHT_MAX * n // (n + WEIGHT_HALF) for a context seen n times
NO_CONTEXT = -1  # positions 0 and 1 of a segment: no pair of tokens before them


@dataclass
class Predictions:
    """What the history says for some rows of a (R, V) table, as a sparse matrix.

    rows (H,): the rows whose context was seen; seen (H,): how often each was seen;
    owner, tokens, counts (E,): entry e says token tokens[e] followed the context of row
    rows[owner[e]] counts[e] times.
    """

    rows: np.ndarray
    seen: np.ndarray
    owner: np.ndarray
    tokens: np.ndarray
    counts: np.ndarray


def context(segment: list[int], t: int, vocab_size: int) -> int:
    """The pair of tokens before position t of a segment, as one integer."""
    return segment[t - 2] * vocab_size + segment[t - 1] if t >= 2 else NO_CONTEXT


class _Rows:
    """Predictions being collected, as lists."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.seen: list[int] = []
        self.owner: list[int] = []
        self.tokens: list[int] = []
        self.counts: list[int] = []

    def add(self, row: int, seen: int, followers: dict[int, int]) -> None:
        self.owner += [len(self.rows)] * len(followers)
        self.rows.append(row)
        self.seen.append(seen)
        self.tokens += followers.keys()
        self.counts += followers.values()

    def done(self) -> Predictions:
        fields = (self.rows, self.seen, self.owner, self.tokens, self.counts)
        return Predictions(*(np.array(f, dtype=np.int64) for f in fields))


class PairHistory:
    """context (a pair of tokens) -> {next token: count}, in the order the decoder learns it."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.followers: dict[int, dict[int, int]] = {}
        self.totals: dict[int, int] = {}

    def predict(self, rows: list[int], contexts: list[int]) -> Predictions:
        """Predictions for rows whose contexts are given (NO_CONTEXT: none)."""
        found = _Rows()
        for row, ctx in zip(rows, contexts, strict=True):
            self._predict_into(found, row, ctx)
        return found.done()

    def _predict_into(self, found: _Rows, row: int, ctx: int) -> None:
        followers = self.followers.get(ctx)
        if followers is not None:
            found.add(row, self.totals[ctx], followers)

    def learn(self, contexts: list[int], tokens: list[int]) -> None:
        for ctx, token in zip(contexts, tokens, strict=True):
            if ctx == NO_CONTEXT:
                continue
            followers = self.followers.setdefault(ctx, {})
            followers[token] = followers.get(token, 0) + 1
            self.totals[ctx] = self.totals.get(ctx, 0) + 1


def replay(history: PairHistory, segments: list[list[int]]) -> list[Predictions]:
    """The encoder's side: the predictions for every position of a group of segments.

    Walks the group in the decoder's order (position-major) and leaves the whole group in
    the history. Returns one Predictions per segment, its rows being positions.
    """
    V = history.vocab_size
    found = [_Rows() for _ in segments]
    for t in range(max(map(len, segments), default=0)):
        live = [j for j, s in enumerate(segments) if t < len(s)]
        contexts = [context(segments[j], t, V) for j in live]
        for j, ctx in zip(live, contexts, strict=True):
            history._predict_into(found[j], t, ctx)
        history.learn(contexts, [segments[j][t] for j in live])
    return [f.done() for f in found]


def mix(freq: np.ndarray, pred: Predictions) -> np.ndarray:
    """freq (R, V) int64 rows summing to FREQ_TOTAL -> the same with the history mixed in.

    For a row whose context was seen n times, with weight w = WEIGHT_MAX * n // (n + 4):
    the model keeps (freq - 1) * (2**16 - w) >> 16, plus 1; the mass this frees is shared
    among the tokens seen after the context in proportion to their counts (floored); what
    rounding leaves goes to the first most likely token. Rows not predicted are unchanged.
    """
    if not len(pred.rows):
        return freq
    vocab = freq.shape[1]
    weight = WEIGHT_MAX * pred.seen // (pred.seen + WEIGHT_HALF)  # (H,)
    kept = ((freq[pred.rows] - 1) * (WEIGHT_ONE - weight)[:, None]) >> 16  # (H, V) < 2**40
    budget = (FREQ_TOTAL - vocab) - kept.sum(axis=1)  # (H,) mass freed for the history
    kept += 1
    kept[pred.owner, pred.tokens] += budget[pred.owner] * pred.counts // pred.seen[pred.owner]
    leftover = FREQ_TOTAL - kept.sum(axis=1)  # >= 0: every share was floored
    kept[np.arange(len(kept)), np.argmax(kept, axis=1)] += leftover
    out = freq.copy()
    out[pred.rows] = kept
    return out
