"""Benchmark (an estimate): what calibrating the model's tables to the work's own token counts
saves, alone and before codec 5's history is mixed in (a codec 7 not yet built; codec 6,
built, calibrates under codec 4's mix with the exact integer rule of docs/FORMAT.md).

    python bench/calibration_gain.py FILE... [--blob MODEL.blob] [--alpha 1] [--beta 1]

The calibration: in the lockstep decoder's order, each token's probability under the model
is multiplied by ((seen + alpha) / (expected + alpha)) ** beta, where `seen` counts the
token among the work's tokens coded so far and `expected` sums the model's own probability
of it over those positions, then the table is made whole again. A token the model keeps
underrating in this work gains, one it keeps overrating loses: an online bias of the
model's output, learned from the work, with no learning rate to tune. The model's tables
are codec 3's integer tables exactly; the calibrated ones are made in float64 here (a codec
would specify integer arithmetic), so the figures estimate a codec's key to a few bytes.
Per file it prints the model alone and codec 5 as they are, and both with the calibration.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from inert import codec, rangecoder
from inert.default import default_blob
from inert.history import GROUP
from inert.store import open_blob

TOTAL = rangecoder.TOTAL


def whole_table(p: np.ndarray) -> np.ndarray:
    """(lanes, V) float probabilities as integer tables summing to TOTAL, every entry >= 1."""
    freq = np.floor(p * (TOTAL - p.shape[1])).astype(np.int64) + 1
    freq[np.arange(len(freq)), freq.argmax(1)] += TOTAL - freq.sum(1)
    return freq


def intervals(
    loaded: codec.LoadedModel, tokens: np.ndarray, segment_tokens: int, alpha: float, beta: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each token's model interval (starts, sizes) as it is and calibrated, work order."""
    engine, vocab = loaded.engine, loaded.model.config.vocab_size
    bos = engine.config.bos_token_id
    plain = np.zeros(len(tokens), np.int64), np.ones(len(tokens), np.int64)
    tuned = np.zeros(len(tokens), np.int64), np.ones(len(tokens), np.int64)
    seen, expected = np.zeros(vocab), np.zeros(vocab)
    bounds = codec.segment_bounds(len(tokens), segment_tokens)
    for g in range(0, len(bounds), GROUP):
        group = bounds[g : g + GROUP]
        states = []  # each segment's quantized final states (n, d) and scales (n,)
        for a, b in group:
            inputs = np.concatenate([[bos], tokens[a : b - 1]])[None]
            states.append(engine.final_states(inputs, engine.new_cache(1, b - a)))
        for t in range(group[0][1] - group[0][0]):
            members = [m for m, (a, b) in enumerate(group) if t < b - a]
            at = np.array([group[m][0] + t for m in members], dtype=np.int64)
            q = np.stack([states[m][0][t] for m in members])
            scale = np.array([states[m][1][t] for m in members])
            freq = engine.tables(q, scale, 3)
            symbols, rows = tokens[at], np.arange(len(at))
            for (starts, sizes), table in (
                (plain, freq),
                (tuned, whole_table(calibrated(freq, seen, expected, alpha, beta))),
            ):
                starts[at] = (np.cumsum(table, 1) - table)[rows, symbols]
                sizes[at] = table[rows, symbols]
            expected += (freq / TOTAL).sum(0)
            np.add.at(seen, symbols, 1.0)
    return *plain, *tuned


def calibrated(
    freq: np.ndarray, seen: np.ndarray, expected: np.ndarray, alpha: float, beta: float
) -> np.ndarray:
    p = freq * ((seen + alpha) / (expected + alpha)) ** beta
    return p / p.sum(1, keepdims=True)


def report(path: Path, loaded: codec.LoadedModel, alpha: float, beta: float) -> None:
    work = path.read_bytes()
    segment_tokens = min(
        codec.default_settings(loaded, len(work)).segment_tokens, loaded.model.config.max_seq_len
    )
    tokens = np.asarray(loaded.model.vocab.tokenize(work), dtype=np.int64)
    starts, sizes, tuned_starts, tuned_sizes = intervals(
        loaded, tokens, segment_tokens, alpha, beta
    )
    vocab = loaded.model.config.vocab_size
    figures = []
    for s, z in ((starts, sizes), (tuned_starts, tuned_sizes)):
        mix = codec.LearnedMix(tokens, s, z, segment_tokens, vocab)
        mix.mix_all()
        figures.append([np.sum(rangecoder.TOTAL_BITS - np.log2(x)) / 8 for x in (z, mix.out_sizes)])
    (alone, mixed), (alone_c, mixed_c) = figures
    print(
        f"| {path.name} | {len(work):,} | {alone:,.0f} | {alone_c:,.0f} ({alone_c / alone - 1:+.1%}) "
        f"| {mixed:,.0f} | {mixed_c:,.0f} ({mixed_c / mixed - 1:+.1%}) |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--blob", help="model blob [default: the embedded default blob]")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=1.0)
    args = parser.parse_args()
    loaded = codec.load_model(open_blob(args.blob) if args.blob else default_blob())
    print(f"payload bytes (Σ -log2 p / 8); calibration alpha {args.alpha}, beta {args.beta}")
    print("| file | bytes | model alone | calibrated | codec 5 | codec 5 calibrated |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in args.paths:
        report(path, loaded, args.alpha, args.beta)


if __name__ == "__main__":
    main()
