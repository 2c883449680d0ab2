"""Codec 2's history: the mixed tables stay valid coder tables and favour what the work repeated."""

from __future__ import annotations

import numpy as np

from inert.engine import FREQ_TOTAL, logits_to_frequencies
from inert.history import FOLLOWERS_MAX, History, mix, replay


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


def test_a_full_order_starts_afresh(monkeypatch) -> None:
    from inert import history as module

    monkeypatch.setattr(module, "CONTEXTS_MAX", 4)
    h = History(4096)
    before = [[0, 0, t] for t in range(5)]  # five distinct contexts of every order
    h.learn(h.contexts(before), [7] * 5)
    assert len(h.followers[3]) == 1 and h.followers[3] == {(0 * 4096 + 0) * 4096 + 4: {7: 1}}
    assert len(h.followers[1]) == 1  # the fifth distinct one-token context emptied it too
