"""Benchmark: where a codec 5 key's bits go, token by token, and how much a better mix could
still save.

    python bench/mix_where.py FILE... [--blob MODEL.blob]

For every file, the model's intervals (codec 3) and codec 5's (the history mixed in with its
learned weights) are made once; each token is then put in one class by what the history knew
at its position, in the lockstep decoder's order:

  none            no order's context was recorded: the model alone codes it
  top             it is the most frequent follower of the longest recorded context
  other follower  some recorded context had it as a follower, but not that one's top
  escape          no recorded context had it as a follower: the mix only took mass away

and the table prints each class's share of the tokens and of the key's bits, and its mean
bits per token with the mix and with the model alone. `bound` is the key if every token had
been coded by whichever of the two gave it more probability: no reweighting of the model
against the history can do better, so it bounds what better weights could save; what lies
beyond it needs a better model (or better predictions from the history).

Mean model bits by position in the segment show what the model's missing context costs.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np

from inert import codec, rangecoder
from inert.default import default_blob
from inert.history import Predictions
from inert.store import open_blob

CLASSES = ("none", "top", "other follower", "escape")
POSITIONS = (0, 8, 32, 64, 128, 256, 512, 1 << 20)  # buckets of the position in the segment


def top_followers(predictions: list[Predictions], lanes: int) -> np.ndarray:
    """Per lane: the longest recorded context's most frequent follower (the smallest id on
    ties; -1 where no context was recorded)."""
    top = np.full(lanes, -1, dtype=np.int64)
    for p in predictions:  # shortest first: the longest recorded order writes last
        if not len(p.rows):
            continue
        best = p.counts == p.top[p.owner]
        first = np.full(len(p.rows), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, p.owner[best], p.tokens[best].astype(np.int64))
        top[p.rows] = first
    return top


class ClassifiedMix(codec.LearnedMix):
    """Codec 5's mix, unchanged, that also puts each token in one of CLASSES."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.classes = np.zeros(len(self.tokens), dtype=np.int64)

    def mix_group(self, g: int, steps: list[list[Predictions]]) -> None:
        firsts = np.array([a for a, _ in self.groups[g]], dtype=np.int64)
        for t, predictions in enumerate(steps):
            lanes = self._lanes[g][t]
            at = firsts[:lanes] + t
            symbols = self.tokens[at]
            top = top_followers(predictions, lanes)
            follower = np.zeros(lanes, dtype=bool)
            for p in predictions:
                if len(p.rows):
                    hit = p.tokens == symbols[p.rows[p.owner]]
                    follower[p.rows[p.owner[hit]]] = True
            self.classes[at] = np.select([top < 0, top == symbols, follower], [0, 1, 2], default=3)
        super().mix_group(g, steps)


def report(path: Path, loaded: codec.LoadedModel) -> None:
    work = path.read_bytes()
    settings = codec.default_settings(loaded, len(work))
    segment_tokens = min(settings.segment_tokens, loaded.model.config.max_seq_len)
    settings = replace(settings, codec=3, segment_tokens=segment_tokens)
    tokens = loaded.model.vocab.tokenize(work)
    starts, sizes = codec.stream_intervals(loaded.engine, tokens, settings)
    mix = ClassifiedMix(tokens, starts, sizes, segment_tokens, loaded.model.config.vocab_size)
    mix.mix_all()
    bits = rangecoder.TOTAL_BITS - np.log2(mix.out_sizes)
    alone = rangecoder.TOTAL_BITS - np.log2(sizes)
    total = bits.sum()
    print(
        f"\n{path.name}: {len(work):,} bytes, {len(tokens):,} tokens; codec 5 "
        f"{total / 8:,.0f} bytes ({total / len(work):.3f} bits/byte), model alone "
        f"{alone.sum() / 8:,.0f}, bound {np.minimum(bits, alone).sum() / 8:,.0f} "
        f"({np.minimum(bits, alone).sum() / total - 1:+.1%})"
    )
    print(f"  {'class':<15} {'tokens':>7} {'bits':>7} {'mixed':>7} {'model':>7}  (bits/token)")
    for c, name in enumerate(CLASSES):
        s = mix.classes == c
        if s.any():
            print(
                f"  {name:<15} {s.mean():7.1%} {bits[s].sum() / total:7.1%} "
                f"{bits[s].mean():7.3f} {alone[s].mean():7.3f}"
            )
    position = np.arange(len(tokens)) % segment_tokens
    cells = []
    for a, b in pairwise(POSITIONS):
        s = (position >= a) & (position < b)
        if s.any():
            cells.append(f"[{a},{min(b, segment_tokens)}) {alone[s].mean():.2f}")
    print("  model bits/token by position in the segment: " + ", ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--blob", help="model blob [default: the embedded default blob]")
    args = parser.parse_args()
    loaded = codec.load_model(open_blob(args.blob) if args.blob else default_blob())
    for path in args.paths:
        report(path, loaded)


if __name__ == "__main__":
    main()
