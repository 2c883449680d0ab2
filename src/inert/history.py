"""The work's own repeats -> sharper frequency tables (codecs 2, 4, 5 and 6).

A small model with a short window forgets what the work said a page ago; classical
compressors live on exactly that. Codecs 2 and 4 therefore keep a history of which token
followed each context — the 1, 2 and 3 tokens before it (codec 4: also 4 and 6) — in the
part of the work the decoder already knows, and mix the followers it saw into the model's
table, order after order. Codec 2 mixes into the table entry by entry (`mix`); codec 4 into
its running sum (`mixed_intervals`, `mixed_cumulative`), which needs the model's table only
at the coded token: the encoder keeps two integers per token, not a table. Codec 5 is codec
4 with contexts of up to 24 tokens and each order's weight learned from how well it has
been predicting (`Weights`); codec 6 mixes codec 4's history into calibrated tables
(calibration.py).

What the decoder knows: it advances GROUP segments in lockstep, one position of every
segment per step, group after group. So when position t of a segment is coded, every token
of the earlier groups and positions < t of every segment of its own group are known: that,
exactly, is the history the table at position t may use, and the encoder replays the same
order. All arithmetic is on integers, so the mixed tables are the same on every machine.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from . import exact
from .engine import FREQ_TOTAL
from .rangecoder import intervals

GROUP = 256  # segments decoded in lockstep, sharing one history as they go
# context lengths, mixed in this order (the longest, most specific, last), by codec. Orders 4
# and 6 gain 0.3-0.8 % on 18-60 KB texts and 15 % on a 1.1 MB one with long repeats; a match
# model (the continuation of the last occurrence of the 12 tokens before) and weights adapted
# online gained nothing more measurable over them (bench notes in the README)
ORDERS_OF = {2: (1, 2, 3), 4: (1, 2, 3, 4, 6), 5: (1, 2, 3, 4, 6, 8, 12, 16, 24)}
ORDERS_OF[6] = ORDERS_OF[4]  # codec 6 mixes codec 4's history into calibrated tables
ORDERS = ORDERS_OF[2]
FOLLOWERS_MAX = 32  # distinct followers a context records: bounds the work per token
# contexts an order holds before it starts afresh: bounds memory (codec 5: a work's repeats
# a megabyte apart are still remembered)
CONTEXTS_MAX = 1 << 16
CONTEXTS_MAX_OF = {2: CONTEXTS_MAX, 4: CONTEXTS_MAX, 5: 1 << 20, 6: CONTEXTS_MAX}
WEIGHT_ONE = 1 << 16  # a context's weight is a fraction of this
WEIGHT_MAX = 63570  # round(0.97 * 2**16)
WEIGHT_PRIOR = 4  # weight = WEIGHT_MAX * (top count) // (seen + 4): sure, and seen often
MIX_ROWS = 32  # rows mixed together: (32, V) int64 temporaries stay in L2 (1.7x faster)


@dataclass
class Predictions:
    """What one order of the history says for some rows of a (R, V) table, sparsely.

    rows (H,): rows whose context was recorded; seen (H,): the context's count; top (H,):
    its most frequent follower's count; owner, tokens, counts (E,): token tokens[e] followed
    the context of row rows[owner[e]] counts[e] times.
    """

    rows: np.ndarray
    seen: np.ndarray
    top: np.ndarray
    owner: np.ndarray
    tokens: np.ndarray
    counts: np.ndarray


class _Found:
    """Predictions being collected, packed (a group's entries can be millions): rows, counts
    int64; owners and tokens int32 (below the rows of a group and the vocabulary)."""

    def __init__(self) -> None:
        self.rows, self.seen, self.top = array("q"), array("q"), array("q")
        self.owner, self.tokens, self.counts = array("i"), array("i"), array("q")

    def add(self, row: int, stats: list[int], followers: dict[int, int]) -> None:
        self.owner.extend([len(self.rows)] * len(followers))
        self.rows.append(row)
        self.seen.append(stats[0])
        self.top.append(stats[1])
        self.tokens.extend(followers.keys())
        self.counts.extend(followers.values())

    def done(self) -> Predictions:
        fields = (self.rows, self.seen, self.top, self.owner, self.tokens, self.counts)
        return Predictions(*(np.frombuffer(f, dtype=f"i{f.itemsize}") for f in fields))


class History:
    """Per order: context -> {follower: count} and [seen, top count], as the decoder learns it.

    A context records at most FOLLOWERS_MAX distinct followers (the first ones to come);
    `seen` counts only recorded followers. An order holds at most CONTEXTS_MAX contexts:
    a new one beyond that first empties the order (as PPMd restarts a full model), which
    bounds memory and keeps the history about the recent part of a long work.
    """

    def __init__(
        self, vocab_size: int, orders: tuple[int, ...] = ORDERS, contexts_max: int = CONTEXTS_MAX
    ) -> None:
        self.vocab_size = vocab_size
        self.orders = orders
        self.contexts_max = contexts_max
        self.longest = max(orders)  # tokens of context the longest order reads
        self.followers: dict[int, dict[int, dict[int, int]]] = {o: {} for o in orders}
        self.stats: dict[int, dict[int, list[int]]] = {o: {} for o in orders}

    def contexts(self, before: list[list[int]] | np.ndarray) -> dict[int, list[int | None]]:
        """order -> the context id of each row, given the tokens before it (None: too few)."""
        if isinstance(before, np.ndarray):
            before = before.tolist()
        V, out = self.vocab_size, {}
        for o in self.orders:
            ids: list[int | None] = []
            for tokens in before:
                if len(tokens) < o:
                    ids.append(None)
                    continue
                ctx = 0
                for token in tokens[-o:]:
                    ctx = ctx * V + token
                ids.append(ctx)
            out[o] = ids
        return out

    def predict(self, rows: list[int], contexts: dict[int, list[int | None]]) -> list[Predictions]:
        """One Predictions per order for these rows."""
        found = []
        for o in self.orders:
            into, followers, stats = _Found(), self.followers[o], self.stats[o]
            for row, ctx in zip(rows, contexts[o], strict=True):
                if ctx is not None and ctx in followers:
                    into.add(row, stats[ctx], followers[ctx])
            found.append(into.done())
        return found

    def learn(self, contexts: dict[int, list[int | None]], tokens: list[int]) -> None:
        for o in self.orders:
            followers, stats = self.followers[o], self.stats[o]
            for ctx, token in zip(contexts[o], tokens, strict=True):
                if ctx is None:
                    continue
                if ctx not in followers and len(followers) == self.contexts_max:
                    followers.clear()
                    stats.clear()
                seen = followers.setdefault(ctx, {})
                count = seen.get(token, 0)
                if count == 0 and len(seen) == FOLLOWERS_MAX:
                    continue
                seen[token] = count + 1
                s = stats.setdefault(ctx, [0, 0])
                s[0] += 1
                s[1] = max(s[1], count + 1)


class CompiledHistory(History):
    """History's tables and arithmetic in the compiled kernels (_kernels.c): the same
    predictions, 5-10x faster, and without the GIL while they run. Contexts are the rows'
    last tokens themselves, a (rows, n) array."""

    def __init__(
        self, vocab_size: int, orders: tuple[int, ...] = ORDERS, contexts_max: int = CONTEXTS_MAX
    ) -> None:
        super().__init__(vocab_size, orders, contexts_max)
        self._kernels = exact.KERNELS
        self._tables = self._kernels.history_new(
            np.asarray(orders, dtype=np.int64), contexts_max, FOLLOWERS_MAX
        )

    def contexts(self, before: list[list[int]] | np.ndarray) -> np.ndarray:  # type: ignore[override]
        """The tokens before each row, (rows, n) int64: rows of equal length."""
        rows = np.ascontiguousarray(before, dtype=np.int64)
        return rows.reshape(len(before), -1) if rows.ndim != 2 else rows

    def predict(self, rows: list[int], contexts: np.ndarray) -> list[Predictions]:  # type: ignore[override]
        *fields, hits, entries = self._kernels.history_predict(
            self._tables, contexts, *contexts.shape
        )
        kinds = ("i8", "i8", "i8", "i4", "i4", "i8")
        rows_, seen, top, owner, tokens, counts = (
            np.frombuffer(f, dtype=k) for f, k in zip(fields, kinds, strict=True)
        )
        hit_cuts = np.concatenate([[0], np.cumsum(np.frombuffer(hits, dtype=np.int64))])
        entry_cuts = np.concatenate([[0], np.cumsum(np.frombuffer(entries, dtype=np.int64))])
        lanes = np.asarray(rows, dtype=np.int64)
        out = []
        for (a, b), (c, d) in zip(pairwise(hit_cuts), pairwise(entry_cuts), strict=True):
            out.append(
                Predictions(
                    lanes[rows_[a:b]], seen[a:b], top[a:b], owner[c:d], tokens[c:d], counts[c:d]
                )
            )
        return out

    def learn(self, contexts: np.ndarray, tokens: list[int]) -> None:  # type: ignore[override]
        x = np.asarray(tokens, dtype=np.int64)
        self._kernels.history_learn(self._tables, contexts, x, *contexts.shape)


def replay(history: History, segments: list[list[int]]) -> list[list[Predictions]]:
    """The encoder's side: the predictions (one per order) for every position of a group of
    segments, rows being positions. Walks the group in the decoder's order (position-major)
    and leaves the whole group in the history."""
    back = history.longest
    steps: list[tuple[int, list[Predictions]]] = []  # (position, each order's, rows: segments)
    for t in range(max(map(len, segments), default=0)):
        live = [j for j, s in enumerate(segments) if t < len(s)]
        contexts = history.contexts([segments[j][max(0, t - back) : t] for j in live])
        steps.append((t, history.predict(live, contexts)))
        history.learn(contexts, [segments[j][t] for j in live])
    per_order = [
        _by_segment([(t, p[i]) for t, p in steps], len(segments))
        for i in range(len(history.orders))
    ]
    return [[per_order[i][j] for i in range(len(history.orders))] for j in range(len(segments))]


def replay_steps(
    history: History, work: list[int], group: list[tuple[int, int]]
) -> list[list[Predictions]]:
    """The encoder's side, step by step: the predictions (one per order, rows: the step's
    lanes) at each position of a group of segments (their bounds in the work), the group
    learned as the decoder learns it."""
    back = history.longest
    firsts = [a for a, _ in group]
    lengths = [b - a for a, b in group]
    steps = []
    for t in range(max(lengths, default=0)):
        lanes = sum(1 for n in lengths if t < n)  # a prefix: only the last is shorter
        contexts = history.contexts([work[a + max(0, t - back) : a + t] for a in firsts[:lanes]])
        steps.append(history.predict(list(range(lanes)), contexts))
        history.learn(contexts, [work[a + t] for a in firsts[:lanes]])
    return steps


def _by_segment(steps: list[tuple[int, Predictions]], count: int) -> list[Predictions]:
    """One order's predictions step by step (rows: segments) -> segment by segment (rows:
    positions, ascending)."""
    empty = _Found().done()
    if not steps:
        return [empty] * count
    segment = np.concatenate([p.rows for _, p in steps]).astype(np.int64)
    position = np.concatenate([np.full(len(p.rows), t, dtype=np.int64) for t, p in steps])
    seen = np.concatenate([p.seen for _, p in steps]).astype(np.int64)
    top = np.concatenate([p.top for _, p in steps]).astype(np.int64)
    starts = np.cumsum([0] + [len(p.rows) for _, p in steps[:-1]])
    owner = np.concatenate(
        [p.owner.astype(np.int64) + s for (_, p), s in zip(steps, starts, strict=True)]
    )
    tokens = np.concatenate([p.tokens for _, p in steps]).astype(np.int32)
    counts = np.concatenate([p.counts for _, p in steps]).astype(np.int64)
    order = np.argsort(segment, kind="stable")  # by segment, positions ascending within
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    moved = rank[owner]  # each entry's record, renumbered
    entry_order = np.argsort(moved, kind="stable")
    segment, position, seen, top = segment[order], position[order], seen[order], top[order]
    moved, tokens, counts = moved[entry_order], tokens[entry_order], counts[entry_order]
    record_cuts = np.searchsorted(segment, np.arange(count + 1))
    entry_cuts = np.searchsorted(moved, record_cuts)
    return [
        Predictions(
            position[a:b],
            seen[a:b],
            top[a:b],
            (moved[c:d] - a).astype(np.int32),
            tokens[c:d],
            counts[c:d],
        )
        for (a, b), (c, d) in zip(pairwise(record_cuts), pairwise(entry_cuts), strict=True)
    ]


def rows_of(predictions: list[Predictions], a: int, n: int) -> list[Predictions]:
    """The predictions for rows a .. a+n-1 only, numbered from 0 (mix is row by row, so
    mixing a block of rows with these is mixing the whole table and taking the block)."""
    out = []
    for p in predictions:
        lo, hi = np.searchsorted(p.rows, [a, a + n])  # rows ascend, and so do their owners
        elo, ehi = np.searchsorted(p.owner, [lo, hi])
        out.append(
            Predictions(
                p.rows[lo:hi] - a,
                p.seen[lo:hi],
                p.top[lo:hi],
                p.owner[elo:ehi] - lo,
                p.tokens[elo:ehi],
                p.counts[elo:ehi],
            )
        )
    return out


def mix(freq: np.ndarray, predictions: list[Predictions], inplace: bool = False) -> np.ndarray:
    """freq (R, V) int64 rows summing to FREQ_TOTAL -> the table with the history mixed in
    (a new one, or freq itself if `inplace`).

    In fixed point (2**16 = 1), per row: each order o whose context was seen n times, its
    most frequent follower c times, has weight w_o = WEIGHT_MAX * c // (n + 4). The orders
    are mixed in as if one after the other, shortest first — each keeping 1 - w_o of what
    came before — so the model keeps K = (((1 - w_1)(1 - w_2) >> 16)(1 - w_3)) >> 16 and
    order o gets s_o = w_o times the (1 - w) of the later orders, each product >> 16. The
    table keeps (freq - 1) * K >> 16, plus 1; the mass this frees is split among the orders
    in proportion to s_o, and each order's part among its followers in proportion to their
    counts, every share floored; what rounding leaves goes to the first most likely token.
    Rows no order predicts are unchanged.
    """
    hit = [p for p in predictions if len(p.rows)]
    if not hit:
        return freq
    rows = np.unique(np.concatenate([p.rows for p in hit]))  # (H,)
    where = [np.searchsorted(rows, p.rows) for p in hit]  # each order's rows among them
    weights = []
    for p, at in zip(hit, where, strict=True):
        w = np.zeros(len(rows), dtype=np.int64)
        w[at] = WEIGHT_MAX * p.top // (p.seen + WEIGHT_PRIOR)
        weights.append(w)
    keep = np.full(len(rows), WEIGHT_ONE, dtype=np.int64)
    shares: list[np.ndarray] = []
    for w in weights:  # shortest context first; each later order scales what came before
        shares = [(s * (WEIGHT_ONE - w)) >> 16 for s in shares] + [w]
        keep = (keep * (WEIGHT_ONE - w)) >> 16
    share_sum = sum(shares)  # (H,) > 0: every hit has top >= 1
    owners = [at[p.owner] for p, at in zip(hit, where, strict=True)]  # (E,) ascending
    vocab = freq.shape[1]
    out = freq if inplace else freq.copy()
    for a in range(0, len(rows), MIX_ROWS):  # blocks of rows stay in cache; no bit changes
        b = min(a + MIX_ROWS, len(rows))
        table = out[rows[a:b]]  # (h, V)
        table -= 1
        table *= keep[a:b, None]
        table >>= 16  # < 2**40 before the shift
        budget = (FREQ_TOTAL - vocab) - table.sum(axis=1)  # (h,) mass freed for the history
        table += 1
        for p, owner, share in zip(hit, owners, shares, strict=True):
            lo, hi = np.searchsorted(owner, [a, b])  # this block's entries of the order
            part = budget * share[a:b] // share_sum[a:b]  # (h,)
            row = owner[lo:hi] - a
            table[row, p.tokens[lo:hi]] += part[row] * p.counts[lo:hi] // p.seen[p.owner[lo:hi]]
        leftover = FREQ_TOTAL - table.sum(axis=1)  # >= 0: every share was floored
        table[np.arange(b - a), np.argmax(table, axis=1)] += leftover
        out[rows[a:b]] = table
    return out


# ---------------------------------------------------------------------------- codec 4


@dataclass
class Sparse:
    """The history's part of some rows' coded tables (codec 4), per row r of R: the model
    keeps keep[r] / 2**16 of its mass (2**16 for rows no order predicts), and token
    tokens[e] of row rows[e] gets amounts[e] more; entries are sorted by (row, token), each
    (row, token) once, and a row's amounts sum to its share of the freed mass exactly."""

    keep: np.ndarray  # (R,) int64 in [0, 2**16]
    rows: np.ndarray  # (E,) int64
    tokens: np.ndarray  # (E,) int64
    amounts: np.ndarray  # (E,) int64 >= 0


def sparse(
    predictions: list[Predictions],
    count: int,
    vocab: int,
    total: int,
    weights: list[np.ndarray] | None = None,
) -> Sparse:
    """Predictions for `count` rows -> the history's part of their tables at `total`.

    Weights and shares as in `mix`: order o gets w_o = WEIGHT_MAX * c // (n + 4), each later
    order scales the earlier ones' shares and the model's keep K by 1 - w. The mass freed,
    B = (total - V) - ((total - V) * K >> 16), is split among the orders in proportion to
    their shares and within an order in proportion to its counts, every part floored; what
    the floors leave of B goes to the token with the largest amount (the first, on ties).
    `weights`: each order's w per row (codec 5's learned ones, `Weights`) instead of the rule.
    """
    keep = np.full(count, WEIGHT_ONE, dtype=np.int64)
    hit = [p for p in predictions if len(p.rows)]
    if not hit:
        empty = np.zeros(0, dtype=np.int64)
        return Sparse(keep, empty, empty, empty)
    shares: list[np.ndarray] = []
    learned = (
        [w for p, w in zip(predictions, weights, strict=True) if len(p.rows)] if weights else []
    )
    for i, p in enumerate(hit):  # shortest context first; each later order scales the earlier
        w = np.zeros(count, dtype=np.int64)
        w[p.rows] = learned[i] if learned else WEIGHT_MAX * p.top // (p.seen + WEIGHT_PRIOR)
        shares = [(s * (WEIGHT_ONE - w)) >> 16 for s in shares] + [w]
        keep = (keep * (WEIGHT_ONE - w)) >> 16
    free = total - vocab
    budget = free - ((free * keep) >> 16)  # (R,)
    # (R,) > 0 on every row some order predicts with a weight above 0 (on a row whose
    # learned weights are all 0 the budget is 0 too)
    share_sum = np.maximum(sum(shares), 1)
    rows, tokens, amounts = [], [], []
    for p, share in zip(hit, shares, strict=True):
        owner = p.rows[p.owner]  # (E,) the row of each entry
        part = budget[owner] * share[owner] // share_sum[owner]
        rows.append(owner)
        tokens.append(p.tokens.astype(np.int64))
        amounts.append(part * p.counts // p.seen[p.owner])
    row, token, amount = (np.concatenate(a) for a in (rows, tokens, amounts))
    key = row * vocab + token
    order = np.argsort(key, kind="stable")
    unique, first = np.unique(key[order], return_index=True)
    amount = np.add.reduceat(amount[order], first)  # (E',) one entry per (row, token)
    row, token = unique // vocab, unique % vocab
    # the leftover of each row, to its largest amount (first token on ties)
    leftover = budget - np.bincount(row, weights=amount, minlength=count).astype(np.int64)
    best = np.lexsort((token, -amount, row))  # by row, then largest amount, then token
    starts = best[np.searchsorted(row[best], np.unique(row))]  # each hit row's first
    amount[starts] += leftover[row[starts]]
    return Sparse(keep, row, token, amount)


def mixed_intervals(
    freq: np.ndarray, symbols: np.ndarray, predictions: list[Predictions], total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each symbol's interval (start, size) (R,) in its row of the coded table of codecs 3
    and 4: the model's table freq (R, V) int64 (summing to `total`) with the predictions of
    the history (none in codec 3) mixed into its running sum, of which only the value at the
    symbol is computed.

    The coded table's running sum is C'(x) = ((C(x) - x) * K >> 16) + x + S(x), C the
    model's (C(0) = 0), S(x) the amounts of the row's tokens below x (see `sparse`): every
    entry keeps at least 1, and C'(V) = total.
    """
    start, size = intervals(freq, symbols)
    if not predictions:
        return start, size
    return mix_interval(
        start, size, symbols, sparse(predictions, len(symbols), freq.shape[1], total)
    )


def mix_interval(
    start: np.ndarray, size: np.ndarray, symbols: np.ndarray, part: Sparse
) -> tuple[np.ndarray, np.ndarray]:
    """The symbols' intervals (start, size) (R,) in the model's tables -> in the coded
    tables, the history's part mixed into their running sums (see mixed_intervals)."""
    rows = np.arange(len(symbols))
    below = np.zeros(len(rows), dtype=np.int64)  # S(x)
    at = np.zeros(len(rows), dtype=np.int64)  # the symbol's own amount
    if len(part.rows):
        x = symbols[part.rows]
        lt, eq = part.tokens < x, part.tokens == x
        below = np.bincount(part.rows[lt], part.amounts[lt], len(rows)).astype(np.int64)
        at = np.bincount(part.rows[eq], part.amounts[eq], len(rows)).astype(np.int64)
    k = part.keep
    lo = (((start - symbols) * k) >> 16) + symbols + below
    hi = (((start + size - symbols - 1) * k) >> 16) + symbols + 1 + below + at
    return lo, hi - lo


def mixed_cumulative(cumulative: np.ndarray, part: Sparse) -> np.ndarray:
    """The model's inclusive running sums (R, V) int64 (C(x + 1) at x) -> the coded table's
    C'(x + 1), in place on the rows some order predicts (see mixed_intervals)."""
    hit = np.unique(part.rows)  # rows some order predicts
    if not len(hit):
        return cumulative
    vocab = cumulative.shape[1]
    upto = np.arange(1, vocab + 1, dtype=np.int64)  # x + 1
    extra = np.zeros((len(hit), vocab), dtype=np.int64)
    np.add.at(extra, (np.searchsorted(hit, part.rows), part.tokens), part.amounts)
    np.cumsum(extra, axis=1, out=extra)  # S(x + 1)
    rows = cumulative[hit]
    rows -= upto
    rows *= part.keep[hit, None]
    rows >>= 16
    rows += upto
    rows += extra
    cumulative[hit] = rows
    return cumulative


# ---------------------------------------------------------------------------- codec 5

CLASS_SEEN = 8  # a context seen 8 times or more is one class
WEIGHT_TOP = 65470  # a learned weight stays below 1 (0.999): the model keeps some mass
RATE_SHIFT = 9  # a weight moves by 1/512 of its gradient per token (1/128: 4 % larger keys)
STEP_MAX = 2048  # and by 1/32 at most: a token the mix thought unlikely has a huge gradient


class Weights:
    """Codec 5: each order's weight, learned from what has been predicting well.

    A row's class, per order: (order, min(n, 8), min(4c // n, 3), min(d, 3)) for a context
    seen n times, its top follower c times, with d distinct followers. A class's weight
    starts as the first row's rule weight (WEIGHT_MAX c // (n + 4)) and, after each step,
    follows the gradient of log2 of the coded token's probability in the chain of mixes:
    P_0 = f(x) (the model's frequency of the coded token x), P_j = ((1 - w_j) P_{j-1} +
    w_j Q_j) >> 16 with Q_j = T cx_j // n_j (cx_j: how often x followed order j's context),
    and w_j += round((Q_j - P_{j-1}) L_j / (P * 2**9)) (halves up, then kept within
    +-2048), P the last P_j (at least 1) and L_j the
    keep of the orders after j (L = 2**16 for the last; L_{j-1} = (L_j (1 - w_j)) >> 16).
    A step's changes to one class are summed, then the sum applied and kept in [0, 65470].
    Everything is an integer: the weights are the same on every machine.
    """

    def __init__(self, orders: tuple[int, ...]) -> None:
        self.orders = orders
        self.classes = len(orders) * (CLASS_SEEN + 1) * 16
        self.weight = np.zeros(self.classes, dtype=np.int64)
        self.known = np.zeros(self.classes, dtype=bool)

    def _class(self, j: int, p: Predictions) -> np.ndarray:
        distinct = np.bincount(p.owner, minlength=len(p.rows))
        seen = np.minimum(p.seen, CLASS_SEEN)
        sure = np.minimum(4 * p.top // p.seen, 3)
        return ((j * (CLASS_SEEN + 1) + seen) * 4 + sure) * 4 + np.minimum(distinct, 3)

    def of(self, predictions: list[Predictions]) -> list[np.ndarray]:
        """Each order's weight for each of its predicted rows."""
        out = []
        for j, p in enumerate(predictions):
            cls = self._class(j, p)
            rule = WEIGHT_MAX * p.top // (p.seen + WEIGHT_PRIOR)
            out.append(np.where(self.known[cls], self.weight[cls], rule))
        return out

    def learn(
        self,
        predictions: list[Predictions],
        weights: list[np.ndarray],
        symbols: np.ndarray,
        model_freq: np.ndarray,
        total: int,
    ) -> None:
        """After a step: rows r coded symbols[r], the model's frequency of each model_freq[r]."""
        count = len(symbols)
        chain = [model_freq.astype(np.int64)]  # P_0 per row
        stages = []
        for p, w in zip(predictions, weights, strict=True):
            q = np.zeros(count, dtype=np.int64)
            wr = np.zeros(count, dtype=np.int64)
            if len(p.rows):
                x = symbols[p.rows[p.owner]]
                hits = p.tokens == x
                cx = np.zeros(len(p.rows), dtype=np.int64)
                cx[p.owner[hits]] = p.counts[hits]
                q[p.rows] = total * cx // p.seen
                wr[p.rows] = w
            prev = chain[-1]
            chain.append(((WEIGHT_ONE - wr) * prev + wr * q) >> 16)
            stages.append((q, wr, prev))
        final = np.maximum(chain[-1], 1)
        later = np.full(count, WEIGHT_ONE, dtype=np.int64)
        for j in reversed(range(len(predictions))):
            q, wr, prev = stages[j]
            p = predictions[j]
            if len(p.rows):
                rows = p.rows
                den = final[rows] << RATE_SHIFT  # the step, rounded to the nearest
                step = (2 * (q[rows] - prev[rows]) * later[rows] + den) // (2 * den)
                step = np.clip(step, -STEP_MAX, STEP_MAX)  # one surprise must not swing it
                cls = self._class(j, p)
                fresh = ~self.known[cls]
                if fresh.any():  # a class's first row sets where it starts
                    first_cls, first = np.unique(cls[fresh], return_index=True)
                    self.weight[first_cls] = wr[rows[fresh][first]]
                    self.known[first_cls] = True
                delta = np.zeros(self.classes, dtype=np.int64)
                np.add.at(delta, cls, step)
                touched = np.unique(cls)
                self.weight[touched] = np.clip(self.weight[touched] + delta[touched], 0, WEIGHT_TOP)
            later = (later * (WEIGHT_ONE - wr)) >> 16
