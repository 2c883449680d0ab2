"""Codec 2's history: the mixed tables stay valid coder tables and favour what the work repeated."""

from __future__ import annotations

import numpy as np
import pytest

from inert import exact
from inert.engine import FREQ_TOTAL, logits_to_frequencies
from inert.history import (
    FOLLOWERS_MAX,
    ORDERS_OF,
    CompiledHistory,
    History,
    Predictions,
    mix,
    replay,
)


def model_tables(rows: int, vocab: int = 64) -> np.ndarray:
    return logits_to_frequencies(np.random.default_rng(0).normal(0, 3, size=(rows, vocab)))


def test_mixed_tables_are_valid_and_favour_the_followers() -> None:
    segment = [5, 6, 7] * 8  # "7 follows 5 6" is seen again and again
    (predictions,) = replay(History(64), [segment])
    freq = model_tables(len(segment))
    mixed = mix(freq, predictions)
    assert np.all(mixed.sum(axis=1) == FREQ_TOTAL) and mixed.min() >= 1
    assert np.array_equal(mixed[0], freq[0])  # position 0: nothing known yet
    later = [t for t in range(len(segment)) if segment[t] == 7 and t > 3]
    assert all(mixed[t, 7] > freq[t, 7] for t in later)
    assert mixed[later[-1], 7] > 0.9 * FREQ_TOTAL


def test_replay_walks_segments_in_lockstep() -> None:
    # position 3 of either segment has seen position 1 of both ("2 follows 1", twice) but
    # not position 3 of the other
    segments = [[1, 2, 1, 2], [1, 2, 1, 2]]
    for per_order in replay(History(16), segments):
        order1 = per_order[0]
        at3 = order1.owner == order1.rows.tolist().index(3)
        assert order1.tokens[at3].tolist() == [2] and order1.counts[at3].tolist() == [2]


def test_a_context_records_at_most_followers_max_distinct_followers() -> None:
    history = History(4096)
    followers = list(range(1, FOLLOWERS_MAX + 10))
    contexts = history.contexts([[0]] * len(followers))
    history.learn(contexts, followers)
    history.learn(history.contexts([[0]]), [1])  # a recorded follower still counts up
    recorded = history.followers[1][0]
    assert len(recorded) == FOLLOWERS_MAX and recorded[1] == 2
    assert history.stats[1][0] == [FOLLOWERS_MAX + 1, 2]


def test_a_full_order_starts_afresh() -> None:
    h = History(4096, contexts_max=4)
    before = [[0, 0, t] for t in range(5)]  # five distinct contexts of every order
    h.learn(h.contexts(before), [7] * 5)
    assert len(h.followers[3]) == 1 and h.followers[3] == {(0 * 4096 + 0) * 4096 + 4: {7: 1}}
    assert len(h.followers[1]) == 1  # the fifth distinct one-token context emptied it too


def _reference_codec5(tokens: list[int], f: list[int], C: list[int], seg: int, V: int):
    """Codec 5's coded intervals written from docs/FORMAT.md alone, one lane at a time in
    plain Python: its own history (dicts), class weights, mix and learning rule."""
    T, orders, F = 1 << 31, (1, 2, 3, 4, 6, 8, 12, 16, 24), (1 << 31) - V
    follow: dict = {o: {} for o in orders}  # order -> context -> {token: count}
    weight: dict = {}  # class -> learned weight
    out = [None] * len(tokens)
    bounds = [(a, min(a + seg, len(tokens))) for a in range(0, len(tokens), seg)]
    for g in range(0, len(bounds), 256):
        group = bounds[g : g + 256]
        for t in range(group[0][1] - group[0][0]):
            lanes = [(a, b) for a, b in group if t < b - a]
            step = []  # per lane: x, f(x), [(class, w, n, counts)]
            for a, _ in lanes:
                i, x = a + t, tokens[a + t]
                hit = []
                for j, o in enumerate(orders):
                    counts = follow[o].get(tuple(tokens[i - o : i])) if t >= o else None
                    if counts:
                        n, c = sum(counts.values()), max(counts.values())
                        cls = (j, min(n, 8), min(4 * c // n, 3), min(len(counts), 3))
                        w = weight.get(cls, 63570 * c // (n + 4))
                        hit.append((cls, w, n, counts))
                K, shares = 65536, []
                for _, w, _, _ in hit:
                    shares = [(s * (65536 - w)) >> 16 for s in shares] + [w]
                    K = (K * (65536 - w)) >> 16
                B, S = F - ((F * K) >> 16), max(sum(shares), 1)
                extra: dict = {}
                for (_, _, n, counts), s in zip(hit, shares, strict=True):
                    part = B * s // S
                    for y, cy in counts.items():
                        extra[y] = extra.get(y, 0) + part * cy // n
                if extra:
                    best = min(extra, key=lambda y: (-extra[y], y))
                    extra[best] += B - sum(extra.values())
                below = sum(v for y, v in extra.items() if y < x)
                lo = (((C[i] - x) * K) >> 16) + x + below
                hi = (((C[i] + f[i] - x - 1) * K) >> 16) + x + 1 + below + extra.get(x, 0)
                out[i] = (lo, hi - lo)
                step.append((x, f[i], hit))
            changes: dict = {}
            for x, fx, hit in step:  # the weights learn, lane by lane
                P = [fx]
                for _, w, n, counts in hit:
                    Q = T * counts.get(x, 0) // n
                    P.append(((65536 - w) * P[-1] + w * Q) >> 16)
                final, L = max(P[-1], 1), 65536
                for j in reversed(range(len(hit))):
                    cls, w, n, counts = hit[j]
                    Q, D = T * counts.get(x, 0) // n, max(P[-1], 1) << 9
                    step = (2 * (Q - P[j]) * L + D) // (2 * D)
                    changes.setdefault(cls, [w, 0])[1] += min(max(step, -2048), 2048)
                    L = (L * (65536 - w)) >> 16
                assert final >= 1
            for cls, (first, delta) in changes.items():
                weight[cls] = min(max(weight.get(cls, first) + delta, 0), 65470)
            for a, _ in lanes:  # the history records the step's tokens
                i = a + t
                for o in orders:
                    if t >= o:
                        counts = follow[o].setdefault(tuple(tokens[i - o : i]), {})
                        if tokens[i] in counts or len(counts) < 32:
                            counts[tokens[i]] = counts.get(tokens[i], 0) + 1
    return out


def test_codec_5_intervals_are_the_specs(tiny) -> None:
    from pathlib import Path

    from inert import codec

    work = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes() * 3
    tokens = tiny.model.vocab.tokenize(work)
    settings = codec.CodecSettings(segment_tokens=4, codec=5)
    starts, sizes = codec.stream_intervals(tiny.engine, tokens, settings)
    model = codec.stream_intervals(
        tiny.engine, tokens, codec.CodecSettings(segment_tokens=4, codec=3)
    )
    C, f = model[0].tolist(), model[1].tolist()
    V = tiny.model.config.vocab_size
    reference = _reference_codec5(tokens.tolist(), f, C, 4, V)
    assert len(tokens) // 4 > 256  # two groups: the second starts from what the first learned
    assert list(zip(starts.tolist(), sizes.tolist(), strict=True)) == reference


def _same(a: list[Predictions], b: list[Predictions]) -> bool:
    fields = ("rows", "seen", "top", "owner", "tokens", "counts")
    return all(
        np.array_equal(getattr(p, f), getattr(q, f))
        for p, q in zip(a, b, strict=True)
        for f in fields
    )


def test_the_compiled_history_predicts_and_learns_as_the_python_one() -> None:
    """Step by step over lanes of a repetitive random work: the same predictions from the
    compiled tables, through followers past FOLLOWERS_MAX, full orders starting afresh and
    rows too short for the longest orders; and the encoder's replay the same for both."""
    if exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")
    rng = np.random.default_rng(5)
    orders = ORDERS_OF[5]
    work = rng.integers(0, 50, size=(7, 120))  # 7 lanes; small alphabet: many repeats
    work[:, 60:] = work[:, :60]  # long repeats too
    work[0, :40] = rng.integers(0, 4000, size=40)  # a context with more than 32 followers
    work[0, 40:] = 3
    work[0, 41::2] = rng.integers(0, 4000, size=40)
    for contexts_max in (1 << 20, 40):
        python = History(4096, orders, contexts_max)
        compiled = CompiledHistory(4096, orders, contexts_max)
        for t in range(work.shape[1]):
            live = list(range(7 - t % 3))  # lanes drop out, as the last segment does
            before = work[live, max(0, t - python.longest) : t]
            ctx_p, ctx_c = python.contexts(before.tolist()), compiled.contexts(before)
            assert _same(python.predict(live, ctx_p), compiled.predict(live, ctx_c))
            python.learn(ctx_p, work[live, t].tolist())
            compiled.learn(ctx_c, work[live, t].tolist())
        segments = [s.tolist() for s in work[:, :90]] + [work[1, :33].tolist()]
        got = replay(CompiledHistory(4096, orders, contexts_max), segments)
        for p, q in zip(replay(History(4096, orders, contexts_max), segments), got, strict=True):
            assert _same(p, q)
