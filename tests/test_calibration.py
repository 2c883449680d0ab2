"""Codec 6: tables calibrated to the work's own token counts, against the spec in plain Python."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inert import codec, exact
from inert.calibration import Calibration
from inert.keyfile import parse_key
from inert.rangecoder import TOTAL

TEXT = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()


def spec_weights(seen: list[int], expected: list[int]) -> list[float]:
    """w(t) as docs/FORMAT.md says: Python's float is IEEE-754 float64."""
    return [
        min(float(s + 1) * float(TOTAL) / float(e + TOTAL), 2.0**20)
        for s, e in zip(seen, expected, strict=True)
    ]


def spec_calibrated(f: list[int], w: list[float]) -> list[int]:
    """One calibrated table, from docs/FORMAT.md alone."""
    g = [1 + int(float(x) * y) for x, y in zip(f, w, strict=True)]
    share = float(TOTAL - len(f)) / float(sum(g))
    out = [1 + int(float(x) * share) for x in g]
    out[out.index(max(out))] += TOTAL - sum(out)
    return out


def tables(rows: int, vocab: int, seed: int) -> np.ndarray:
    """Model-like tables at TOTAL: peaked rows, every entry >= 1."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(vocab, 0.05), size=rows)
    freq = np.floor(p * (TOTAL - vocab)).astype(np.int64) + 1
    freq[np.arange(rows), freq.argmax(axis=1)] += TOTAL - freq.sum(axis=1)
    return freq


@pytest.mark.parametrize("compiled", [True, False])
def test_calibrated_tables_are_the_specs(monkeypatch, compiled: bool) -> None:
    if compiled and exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")
    if not compiled:
        monkeypatch.setattr(exact, "KERNELS", None)
    vocab = 300
    c = Calibration(vocab, threads=2)
    rng = np.random.default_rng(1)
    for step in range(6):
        freq = tables(5, vocab, step)
        if step == 3:  # a token the model calls impossible, seen far more than expected
            freq[:, 7] = 1
            c.seen[7] += 5_000_000  # its weight reaches the cap
        want = [
            spec_calibrated(row, spec_weights(c.seen.tolist(), c.expected.tolist()))
            for row in freq.tolist()
        ]
        got = c.apply(freq)
        assert got.tolist() == want
        assert np.all(got.sum(axis=1) == TOTAL) and got.min() >= 1
        running = np.cumsum(want, axis=1)
        assert c.apply(freq, running=True).tolist() == running.tolist()
        symbols = rng.integers(0, vocab, size=5)
        symbols[0] = np.argmax(want[0])  # the entry that took the remainder
        symbols[1] = 0
        start, size = c.intervals(freq, symbols)
        rows = np.arange(5)
        assert size.tolist() == np.asarray(want)[rows, symbols].tolist()
        assert (start + size).tolist() == running[rows, symbols].tolist()
        c.learn(freq, symbols)


def test_calibration_moves_mass_to_what_the_work_uses() -> None:
    vocab = 64
    c = Calibration(vocab)
    freq = tables(1, vocab, 0)
    rare = int(freq[0].argmin())
    for _ in range(50):  # the work keeps using a token the model thinks rare
        c.learn(freq, np.array([rare]))
    after = c.apply(freq)[0]
    assert after[rare] > 20 * freq[0, rare]
    common = int(freq[0].argmax())  # and the token it was surest of, never used, loses
    assert after[common] < freq[0, common]


def test_codec_6_intervals_are_the_specs(tiny) -> None:
    """Codec 6's coded intervals over two groups of segments, written from docs/FORMAT.md
    in plain Python: the model's tables calibrated step by step, then codec 4's mix."""
    work = TEXT * 3
    tokens = tiny.model.vocab.tokenize(work)
    settings = codec.CodecSettings(segment_tokens=4, codec=6)
    starts, sizes = codec.stream_intervals(tiny.engine, tokens, settings)
    model = np.zeros((len(tokens), tiny.model.config.vocab_size), dtype=np.int64)
    for t in codec.segment_tables(tiny.engine, tokens, 4, codec=3):
        model[t.first : t.first + len(t.freq)] = t.freq
    reference = _reference_codec6(tokens.tolist(), model.tolist(), 4)
    assert len(tokens) // 4 > 256  # two groups: the second starts from what the first learned
    assert list(zip(starts.tolist(), sizes.tolist(), strict=True)) == reference


def _reference_codec6(tokens: list[int], model: list[list[int]], seg: int) -> list:
    V, orders = len(model[0]), (1, 2, 3, 4, 6)
    F = TOTAL - V
    seen, expected = [0] * V, [0] * V
    follow: dict = {o: {} for o in orders}  # order -> context -> {token: count}
    out = [None] * len(tokens)
    bounds = [(a, min(a + seg, len(tokens))) for a in range(0, len(tokens), seg)]
    for g in range(0, len(bounds), 256):
        group = bounds[g : g + 256]
        for t in range(group[0][1] - group[0][0]):
            lanes = [a + t for a, b in group if t < b - a]
            w = spec_weights(seen, expected)
            for i in lanes:
                x, f = tokens[i], spec_calibrated(model[i], w)
                hit = []
                for o in orders:
                    counts = follow[o].get(tuple(tokens[i - o : i])) if t >= o else None
                    if counts:
                        n, c = sum(counts.values()), max(counts.values())
                        hit.append((63570 * c // (n + 4), n, counts))
                K, shares = 65536, []
                for w_o, _, _ in hit:
                    shares = [(s * (65536 - w_o)) >> 16 for s in shares] + [w_o]
                    K = (K * (65536 - w_o)) >> 16
                B, S = F - ((F * K) >> 16), max(sum(shares), 1)
                extra: dict = {}
                for (_, n, counts), s in zip(hit, shares, strict=True):
                    part = B * s // S
                    for y, cy in counts.items():
                        extra[y] = extra.get(y, 0) + part * cy // n
                if extra:
                    best = min(extra, key=lambda y: (-extra[y], y))
                    extra[best] += B - sum(extra.values())
                C = sum(f[:x])
                below = sum(v for y, v in extra.items() if y < x)
                lo = (((C - x) * K) >> 16) + x + below
                hi = (((C + f[x] - x - 1) * K) >> 16) + x + 1 + below + extra.get(x, 0)
                out[i] = (lo, hi - lo)
            for i in lanes:  # the step learned: the counts, then the history
                seen[tokens[i]] += 1
                for v in range(V):
                    expected[v] += model[i][v]
                for o in orders:
                    if t >= o:
                        counts = follow[o].setdefault(tuple(tokens[i - o : i]), {})
                        if tokens[i] in counts or len(counts) < 32:
                            counts[tokens[i]] = counts.get(tokens[i], 0) + 1
    return out


def test_codec_6_round_trips_across_groups_and_beats_codec_4_on_a_skewed_work(tiny) -> None:
    """Words of the corpus in a random order (no phrase repeats for the history to find), a
    few of them far more often than the model expects: calibration learns that."""
    words = TEXT.split()[:40]
    rng = np.random.default_rng(2)
    work = b" ".join(words[i] for i in rng.zipf(1.6, size=3000) % len(words))
    settings = codec.CodecSettings(segment_tokens=8, codec=6, smallest=False)
    key6, stats = codec.model_key(work, tiny, settings)
    key4, _ = codec.model_key(work, tiny, replace(settings, codec=4))
    assert stats.segments > codec.GROUP and parse_key(key6)[0].param("codec") == 6
    assert codec.decode_work(key6, tiny) == work
    assert len(key6) < 0.97 * len(key4)
