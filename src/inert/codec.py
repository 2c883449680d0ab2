"""Model keys: work -> tokens -> segments -> frequency tables -> range coder -> key, and back.

The work's tokens are cut into segments of `segment_tokens`; each segment's context starts
from the blob's BOS token, so segments can be evaluated in batches when encoding and decoded
in lockstep (one token of every segment per step, with a KV cache) when decoding. Codecs 3
to 6 (6 the default, 5 for long works) code every token of the key in one stream of inert's
own range coder (rangecoder.py), in the lockstep decoder's order, with tables summing to
2^31: the key is Σ -log2 p plus at most 8 bits of flush. Codecs 2, 4, 5 and 6 mix the
work's own repeats into the model's tables, in the order the decoder learns them
(history.py; codec 5 learns its weights from the model's tables too); codec 6 first
calibrates the model's tables to the work's own token counts (calibration.py). Codecs 1
and 2, which code each segment with constriction's coder at 2^24, keep decoding.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cache
from queue import Empty, Full, Queue
from typing import BinaryIO, TypeVar

import constriction
import numpy as np

from . import classical, exact, rangecoder
from .calibration import Calibration
from .engine import FREQ_TOTALS, Cache, Engine, table_rows
from .errors import ChecksumError, InertError, KeyFormatError
from .history import (
    CONTEXTS_MAX_OF,
    GROUP,
    ORDERS_OF,
    CompiledHistory,
    History,
    Predictions,
    Sparse,
    Weights,
    mix,
    mix_interval,
    mixed_cumulative,
    mixed_intervals,
    replay,
    replay_steps,
    rows_of,
    sparse,
)
from .keyfile import (
    STREAM_CODECS,
    KeyHeader,
    Kind,
    check_stream,
    pack_segments,
    read_header,
    unpack_segments,
)
from .modelfile import Model, read_model
from .store import Blob, check_blob
from .streams import Progress

# Version 1 of the codec: engine arithmetic of engine.py/exact.py, 24-bit frequency tables,
# constriction 0.5's RangeEncoder with Categorical(perfect=False), a code per segment.
# Version 2: the same, with the work's own repeats mixed in (history.py). Version 3: one
# stream of inert's range coder for the whole key, tables at 2^31. Version 4: version 3
# with the repeats of contexts of 1, 2, 3, 4 and 6 tokens mixed into the tables' running
# sums. Version 5: version 4 with contexts of up to 24 tokens, remembered across a megabyte,
# and each order's weight learned from how well it has predicted (history.Weights).
# Version 6: version 4's mix on the model's tables calibrated to the work's own token counts
# (calibration.py).
# Changing any of these changes keys: add a version, and keep decoding every earlier one.
CODEC_VERSION = 6
CODECS = (1, 2, 3, 4, 5, 6)
HISTORY_CODECS = (2, 4, 5, 6)
LEARNING_CODECS = (5,)  # their history's weights are learned from the model's tables
CALIBRATED_CODECS = (6,)  # their model's tables are calibrated to the work (calibration.py)
TABLE_CODEC = {1: 1, 2: 2, 3: 3, 4: 3, 5: 3, 6: 3}  # the engine's table arithmetic of each
T = TypeVar("T")


@dataclass(frozen=True)
class CodecSettings:
    # tokens per segment (capped at the model's context): longer predicts better, shorter
    # decodes in more parallel lanes; written into every key
    segment_tokens: int = 512
    # segments evaluated together when encoding, at most (see encode_batch_for); the engine
    # is batch-invariant, so it never changes a key
    encode_batch: int = 4
    # segments decoded in lockstep (codec 1; the others always decode history.GROUP): more
    # lanes amortize each step's overhead; this, not the work's size, bounds decoding memory
    decode_lanes: int = 256
    # written into every key: 6 mixes the work's own repeats into the model's tables
    # calibrated to the work (codec 5: long contexts and learned weights; 3: the model alone)
    codec: int = CODEC_VERSION
    # encode_work's key: the smallest of the model's, a classical and a stored one; False:
    # the model's (to study a model, or test it)
    smallest: bool = True


LONG_WORK = 1 << 16  # bytes from which inert's own blobs code with codec 5


def default_settings(loaded: LoadedModel, work_length: int = 0) -> CodecSettings:
    """The settings a blob codes best with when nobody says otherwise.

    The fixed mix of the work's repeats (codecs 2 and 4) makes up for what a small model
    forgets (20-35 % smaller keys with inert's own 1.3 M-parameter blobs), but costs a real
    model that remembers its whole context: +3.4 % on Gemma 3 270M (4,808 against 4,648
    bits on 3 KB of docs/FORMAT.md). Imported blobs code with the model alone (codec 3).
    Codec 5's long contexts and learned weights pay on long works (keys 1 % smaller at
    100 KB, 6 % at 250 KB, 12 % at 1.1 MB than codec 4's) and little below 64 KB (0.1-0.3 %)
    where its 10-35 % slower encoding is not worth it; codec 6 (codec 4 on tables
    calibrated to the work) is 1.6-3.5 % smaller than codec 4 on 17-60 KB texts at codec
    2's speed: a work of LONG_WORK bytes or more gets codec 5, a shorter one codec 6.
    """
    if loaded.model.source:
        return CodecSettings(codec=3)
    return CodecSettings(codec=5 if work_length >= LONG_WORK else CODEC_VERSION)


@dataclass
class LoadedModel:
    blob: Blob
    model: Model
    engine: Engine


@cache
def _load(
    path: str, sha256: bytes, threads: int, backend: str, device: str | None
) -> tuple[Model, Engine]:
    model = read_model(path)
    return model, Engine(model, threads, backend, device)


# The engine's backend when a caller names none (the CLI's --backend and --device set it):
# "numpy", or "torch" on a device. Keys never depend on it.
BACKEND: dict[str, str | None] = {"backend": "numpy", "device": None}


def load_model(
    blob: Blob, threads: int = 0, backend: str | None = None, device: str | None = None
) -> LoadedModel:
    """The blob's model and an engine with `threads` threads (0: one per core), on `backend`
    (default: BACKEND's)."""
    backend = backend or BACKEND["backend"] or "numpy"
    device = device or BACKEND["device"]
    cores = threads or os.cpu_count() or 1
    model, engine = _load(str(blob.path), blob.sha256, cores, backend, device)
    return LoadedModel(blob, model, engine)


def _categorical() -> object:
    return constriction.stream.model.Categorical(perfect=False)


# ---------------------------------------------------------------------------- frequencies


def segment_bounds(token_count: int, segment_tokens: int) -> list[tuple[int, int]]:
    return [
        (a, min(a + segment_tokens, token_count)) for a in range(0, token_count, segment_tokens)
    ]


@dataclass
class Tables:
    """Frequency tables of some consecutive tokens of one segment, as the codec codes them.

    freq[i] codes the work's token start + offset + i; the segment holds tokens
    start .. start + length - 1. The engine makes a segment's tables a block at a time, so
    memory holds a few blocks, not (segment, V).
    """

    start: int  # the segment's first token, in the work
    length: int  # tokens in the segment
    offset: int  # the first row's token, within the segment
    freq: np.ndarray  # (rows, V) int64, under the model alone
    predictions: list[Predictions] = field(default_factory=list)  # the history's, these rows

    @property
    def first(self) -> int:
        """The work position of the first row's token."""
        return self.start + self.offset

    @property
    def ends_segment(self) -> bool:
        return self.offset + len(self.freq) == self.length


AHEAD = 1  # table blocks the engine may make ahead of the coder


def ahead(items: Iterator[T], depth: int = AHEAD) -> Iterator[T]:
    """The items of a generator made by a helper thread, at most `depth` ahead of the
    consumer: the engine evaluates while the coder codes. Its exceptions reach the consumer;
    a consumer that stops early (an error, Ctrl-C) stops the helper at its next item."""
    queue: Queue = Queue(depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((item, None), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((done, None))
        except BaseException as e:  # handed to the consumer, which raises it
            queue.put((done, e))

    helper = threading.Thread(target=produce, name="inert-engine", daemon=True)
    helper.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while helper.is_alive():  # unblock a helper waiting to put, then let it finish
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)
        helper.join()


def new_history(vocab_size: int, codec: int) -> History:
    """The empty history of the work's repeats that codec `codec` mixes in (compiled where
    the kernels are built: the same predictions)."""
    kind = History if exact.KERNELS is None else CompiledHistory
    return kind(vocab_size, ORDERS_OF[codec], CONTEXTS_MAX_OF[codec])


class LearnedMix:
    """Codec 5's coded intervals, group after group of segments: each token's interval in
    its coded table from its interval in the model's (starts, sizes (N,), work order), the
    decoder's steps replayed — predict, mix with the learned weights, learn the weights,
    learn the history — position by position. A group needs only its own model intervals,
    so it can be mixed while the engine evaluates the next."""

    def __init__(
        self,
        tokens: np.ndarray,
        starts: np.ndarray,
        sizes: np.ndarray,
        segment_tokens: int,
        vocab: int,
    ) -> None:
        self.tokens, self.starts, self.sizes, self.vocab = tokens, starts, sizes, vocab
        self.history = new_history(vocab, 5)
        self.weights = Weights(ORDERS_OF[5])
        self.out_starts, self.out_sizes = starts.copy(), sizes.copy()
        self.bounds = segment_bounds(len(tokens), segment_tokens)
        self.groups = [self.bounds[g : g + GROUP] for g in range(0, len(self.bounds), GROUP)]
        self._lanes = [  # lanes of each step of each group: a prefix (the last is shorter)
            [sum(1 for a, b in group if t < b - a) for t in range(group[0][1] - group[0][0])]
            for group in self.groups
        ]
        self._work = tokens.tolist()

    def group_end(self, g: int) -> int:
        """The work position after the last token of group g."""
        return self.groups[g][-1][1]

    def replay_group(self, g: int) -> list[list[Predictions]]:
        """The history's predictions at each step of group g (the steps' lanes), and the
        group learned: what needs no model, so it can run while the engine does."""
        return replay_steps(self.history, self._work, self.groups[g])

    def mix_group(self, g: int, steps: list[list[Predictions]]) -> None:
        """Group g's coded intervals, its model intervals known and its steps replayed."""
        weights, tokens = self.weights, self.tokens
        firsts = np.array([a for a, _ in self.groups[g]], dtype=np.int64)
        for t, predictions in enumerate(steps):
            lanes = self._lanes[g][t]
            at = firsts[:lanes] + t
            symbols = tokens[at]
            learned = weights.of(predictions)
            part = sparse(predictions, lanes, self.vocab, rangecoder.TOTAL, learned)
            start, size = mix_interval(self.starts[at], self.sizes[at], symbols, part)
            self.out_starts[at], self.out_sizes[at] = start, size
            weights.learn(predictions, learned, symbols, self.sizes[at], rangecoder.TOTAL)

    def mix_all(self) -> None:
        for g in range(len(self.groups)):
            self.mix_group(g, self.replay_group(g))


def segment_states(
    engine: Engine, tokens: np.ndarray, bounds: list[tuple[int, int]], batch: int
) -> Iterator[tuple[list[tuple[int, int]], np.ndarray, np.ndarray]]:
    """The quantized final states (members * n, d) and scales of segments (their bounds in
    the work), in order: each `batch` of them in one forward pass where they have the same
    length (the last segment, shorter, in its own)."""
    bos = engine.config.bos_token_id
    for first in range(0, len(bounds), batch):
        group = bounds[first : first + batch]
        full = [b for b in group if b[1] - b[0] == group[0][1] - group[0][0]]
        for members in (full, [b for b in group if b not in full]):
            if members:
                inputs = np.stack([np.concatenate([[bos], tokens[a : b - 1]]) for a, b in members])
                cache = engine.new_cache(len(members), inputs.shape[1])
                yield members, *engine.final_states(inputs, cache)


def segment_tables(
    engine: Engine, tokens: np.ndarray, segment_tokens: int, batch: int = 4, codec: int = 1
) -> Iterator[Tables]:
    """The model's tables for every segment in order, a block of rows at a time.

    Segments of a group of `batch` share one forward pass when they have the same length.
    """
    bounds = segment_bounds(len(tokens), segment_tokens)
    rows = table_rows(engine.config.vocab_size)
    for members, q, scale in segment_states(engine, tokens, bounds, batch):
        n = members[0][1] - members[0][0]
        for m, (a, b) in enumerate(members):
            for r in range(0, n, rows):
                at = slice(m * n + r, m * n + min(r + rows, n))
                yield Tables(a, b - a, r, engine.tables(q[at], scale[at], codec))


# ---------------------------------------------------------------------------- encode


@dataclass
class EncodeStats:
    tokens: int  # 0 where the model did not run
    segments: int
    ideal_bits: float  # Σ -log2 p over the coded tokens, as coded
    payload_bytes: int  # of the model key (also when another key was returned instead)
    kind: Kind = Kind.MODEL  # the key returned: model, classical or stored
    method: str = ""  # the classical method of a classical key
    model_ran: bool = True

    @property
    def stored(self) -> bool:
        return self.kind is Kind.STORED


class SegmentCoder:
    """Range-codes one segment, its tables handed over a block at a time.

    A queue coder codes in order, so handing it the rows in blocks codes the same words.
    """

    def __init__(self) -> None:
        self._encoder = constriction.stream.queue.RangeEncoder()

    def code(self, symbols: np.ndarray, freq: np.ndarray) -> None:
        """Code symbols (n,) under their tables freq (n, V) int64."""
        self._encoder.encode(symbols.astype(np.int32), _categorical(), freq.astype(np.float64))

    def words(self) -> np.ndarray:
        return self._encoder.get_compressed()


def coded_tables(engine: Engine, tokens: np.ndarray, settings: CodecSettings) -> Iterator[Tables]:
    """Every segment's tables in order, made ahead of the caller: the codec codes with
    mix(freq, predictions) — the model's own table in codec 1 (no predictions), the work's
    repeats mixed in, in codec 2. Callers that need the model's table as well read it
    before mixing in place."""
    size = settings.segment_tokens
    batch = encode_batch_for(settings)
    table_codec = TABLE_CODEC[settings.codec]
    if settings.codec not in HISTORY_CODECS:
        yield from ahead(segment_tables(engine, tokens, size, batch, table_codec))
        return
    history = new_history(engine.config.vocab_size, settings.codec)
    bounds = segment_bounds(len(tokens), size)
    for first in range(0, len(bounds), GROUP):
        lo, hi = bounds[first][0], bounds[min(first + GROUP, len(bounds)) - 1][1]
        group = [tokens[a:b].tolist() for a, b in bounds[first : first + GROUP]]
        with ThreadPoolExecutor(1) as helper:  # the replay runs while the engine starts
            replayed = helper.submit(replay, history, group)
            for tables in ahead(segment_tables(engine, tokens[lo:hi], size, batch, table_codec)):
                found = replayed.result()[tables.start // size]
                tables.predictions = rows_of(found, tables.offset, len(tables.freq))
                tables.start += lo
                yield tables


EVAL_TOKENS = 2048  # tokens of segments evaluated in one batch, at most (one Gemma segment)


def encode_batch_for(settings: CodecSettings) -> int:
    """Segments to evaluate at once: settings.encode_batch, fewer where they would hold
    more than EVAL_TOKENS tokens: the layers' activations grow with it (tables do not, made
    a block at a time whatever the batch)."""
    return max(1, min(settings.encode_batch, EVAL_TOKENS // settings.segment_tokens))


def encode_tokens(
    engine: Engine, tokens: np.ndarray, settings: CodecSettings, progress: Progress | None = None
) -> tuple[list[np.ndarray], float]:
    """Codecs 1 and 2: code each segment; returns the words (uint32) of every segment and
    the ideal bit count."""
    segments: list[np.ndarray] = []
    ideal = 0.0
    coder = SegmentCoder()
    for tables in coded_tables(engine, tokens, settings):
        freq = mix(tables.freq, tables.predictions, inplace=True)
        symbols = tokens[tables.first : tables.first + len(freq)]
        coder.code(symbols, freq)
        ideal -= float(np.sum(np.log2(freq[np.arange(len(freq)), symbols] / FREQ_TOTALS[1])))
        if tables.ends_segment:
            segments.append(coder.words())
            coder = SegmentCoder()
        if progress:
            progress(len(freq))
    return segments, ideal


def token_intervals(
    engine: Engine, tokens: np.ndarray, settings: CodecSettings, progress: Progress | None = None
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Codecs 3 and 4: (first token, starts, sizes) of blocks of the work's tokens, each
    token's interval in its coded table (the model's, with the repeats mixed in by codec 4).
    Codec 5's come only once the whole work's model intervals are known: stream_intervals."""
    if settings.codec in LEARNING_CODECS:
        raise ValueError("codec 5's intervals are mixed after the model's: stream_intervals")
    for tables in coded_tables(engine, tokens, settings):
        symbols = tokens[tables.first : tables.first + len(tables.freq)]
        start, size = mixed_intervals(tables.freq, symbols, tables.predictions, rangecoder.TOTAL)
        if progress:
            progress(len(symbols))
        yield tables.first, start, size


def decode_order(token_count: int, segment_tokens: int) -> np.ndarray:
    """The work positions (N,) int64 in the order the lockstep decoder reads them: group by
    group of GROUP segments, position by position, segment by segment."""
    bounds = segment_bounds(token_count, segment_tokens)
    out = []
    for first in range(0, len(bounds), GROUP):
        starts = np.array([a for a, _ in bounds[first : first + GROUP]], dtype=np.int64)
        lengths = np.array([b - a for a, b in bounds[first : first + GROUP]], dtype=np.int64)
        at = np.arange(segment_tokens, dtype=np.int64)[:, None]  # (position, 1)
        positions = starts[None, :] + at  # (position, segment), read row by row
        out.append(positions[at < lengths[None, :]])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def encode_stream(
    engine: Engine, tokens: np.ndarray, settings: CodecSettings, progress: Progress | None = None
) -> tuple[bytes, float]:
    """Codecs 3-5: the key's payload — every token in one stream, in decoding order — and
    the ideal bit count. Two integers per token wait for the stream, not tables."""
    starts, sizes = stream_intervals(engine, tokens, settings, progress)
    code = stream_code(tokens, starts, sizes, settings.segment_tokens, engine.config.vocab_size)
    return code, float(np.sum(rangecoder.TOTAL_BITS - np.log2(sizes)))


def stream_intervals(
    engine: Engine, tokens: np.ndarray, settings: CodecSettings, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Codecs 3-5: each token's interval (starts, sizes (N,) int64, work order) in its coded
    table."""
    if settings.codec in LEARNING_CODECS:
        return _learned_intervals(engine, tokens, settings, progress)
    if settings.codec in CALIBRATED_CODECS:
        return _calibrated_intervals(engine, tokens, settings, progress)
    starts = np.zeros(len(tokens), dtype=np.int64)
    sizes = np.ones(len(tokens), dtype=np.int64)
    for first, start, size in token_intervals(engine, tokens, settings, progress):
        starts[first : first + len(start)] = start
        sizes[first : first + len(size)] = size
    return starts, sizes


@dataclass
class Step:
    """One lockstep step of codec 6's encoder: the work positions of its lanes, the model's
    tables there (uncalibrated, (lanes, V) int64) and each token's interval in its
    calibrated table (the work's repeats not yet mixed in: mix_repeats)."""

    at: np.ndarray
    freq: np.ndarray
    start: np.ndarray
    size: np.ndarray


def calibrated_steps(engine: Engine, tokens: np.ndarray, settings: CodecSettings) -> Iterator[Step]:
    """Codec 6's steps in the lockstep decoder's order. A calibrated table depends on every
    token decoded before it, so tables are made a step at a time (all lanes of a group at
    one position) from the group's final states, which one pass of the engine makes."""
    vocab, size = engine.config.vocab_size, settings.segment_tokens
    calibration = Calibration(vocab, engine.threads)
    bounds = segment_bounds(len(tokens), size)
    for first in range(0, len(bounds), GROUP):
        group = bounds[first : first + GROUP]
        states = group_states(engine, tokens, group, encode_batch_for(settings))
        firsts = np.array([a for a, _ in group], dtype=np.int64)
        longest, last = group[0][1] - group[0][0], group[-1][1] - group[-1][0]
        lanes = [len(group) - (t >= last) for t in range(longest)]  # only the last is shorter
        for t, model in ahead(_step_tables_of(engine, states, lanes)):
            at = firsts[: lanes[t]] + t
            symbols = tokens[at]
            start, size_ = calibration.intervals(model, symbols)
            yield Step(at, model, start, size_)
            calibration.learn(model, symbols)


def mix_repeats(
    tokens: np.ndarray, starts: np.ndarray, sizes: np.ndarray, segment_tokens: int, vocab: int
) -> tuple[np.ndarray, np.ndarray]:
    """Codec 6's coded intervals (N,) from each token's interval in its calibrated table:
    codec 4's mix of the work's repeats, group after group, segment by segment (the mix is
    row by row, so the order the rows are mixed in changes nothing)."""
    history = new_history(vocab, 6)
    out_starts, out_sizes = starts.copy(), sizes.copy()
    bounds = segment_bounds(len(tokens), segment_tokens)
    for first in range(0, len(bounds), GROUP):
        group = bounds[first : first + GROUP]
        found = replay(history, [tokens[a:b].tolist() for a, b in group])
        for (a, b), predictions in zip(group, found, strict=True):
            part = sparse(predictions, b - a, vocab, rangecoder.TOTAL)
            out_starts[a:b], out_sizes[a:b] = mix_interval(
                starts[a:b], sizes[a:b], tokens[a:b], part
            )
    return out_starts, out_sizes


def _step_tables_of(
    engine: Engine, states: tuple[np.ndarray, np.ndarray, np.ndarray], lanes: list[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """Each step's model tables (lanes, V) int64 from a group's final states: several
    steps' rows made in one call of the engine (up to table_rows), handed over step by
    step."""
    q, scale, offsets = states
    most = table_rows(engine.config.vocab_size)
    t = 0
    while t < len(lanes):
        steps = [t]
        while (
            steps[-1] + 1 < len(lanes)
            and sum(lanes[s] for s in steps) + lanes[steps[-1] + 1] <= most
        ):
            steps.append(steps[-1] + 1)
        rows = np.concatenate([offsets[: lanes[s]] + s for s in steps])
        freq = engine.tables(_take(q, rows), _take(scale, rows), TABLE_CODEC[6])
        cuts = np.cumsum([0] + [lanes[s] for s in steps])
        for s, a, b in zip(steps, cuts[:-1], cuts[1:], strict=True):
            yield s, freq[a:b]
        t = steps[-1] + 1


def group_states(
    engine: Engine, tokens: np.ndarray, group: list[tuple[int, int]], batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The quantized final states (n, d) and scales (n,) of every token of a group of
    segments, segment after segment (`batch` segments of one length per pass of the
    engine), and where each segment's rows start (segments,)."""
    states, scales = [], []
    for _, q, scale in segment_states(engine, tokens, group, batch):
        states.append(q)
        scales.append(scale)
    xp = exact.namespace(states[0])
    offsets = np.cumsum([0] + [b - a for a, b in group[:-1]], dtype=np.int64)
    return xp.concat(states), xp.concat(scales), offsets


def _take(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x[rows] of a numpy array or a torch backend's tensor."""
    if isinstance(x, np.ndarray):
        return x[rows]
    import torch

    return x[torch.as_tensor(rows, device=x.device)]


def _calibrated_intervals(
    engine: Engine, tokens: np.ndarray, settings: CodecSettings, progress: Progress | None
) -> tuple[np.ndarray, np.ndarray]:
    """Codec 6: each token's interval in its coded table, work order."""
    starts = np.zeros(len(tokens), dtype=np.int64)
    sizes = np.ones(len(tokens), dtype=np.int64)
    for step in calibrated_steps(engine, tokens, settings):
        starts[step.at], sizes[step.at] = step.start, step.size
        if progress:
            progress(len(step.at))
    vocab = engine.config.vocab_size
    return mix_repeats(tokens, starts, sizes, settings.segment_tokens, vocab)


def _learned_intervals(
    engine: Engine, tokens: np.ndarray, settings: CodecSettings, progress: Progress | None
) -> tuple[np.ndarray, np.ndarray]:
    """Codec 5: the model's intervals (codec 3's tables), each group of segments mixed as
    soon as the engine has made its last one, its history replayed meanwhile by a helper."""
    starts = np.zeros(len(tokens), dtype=np.int64)
    sizes = np.ones(len(tokens), dtype=np.int64)
    mixer = LearnedMix(tokens, starts, sizes, settings.segment_tokens, engine.config.vocab_size)
    done = 0  # groups mixed
    with ThreadPoolExecutor(1) as helper:  # replays the history, a group ahead of the mix
        replayed = helper.submit(mixer.replay_group, 0) if mixer.groups else None
        model = replace(settings, codec=3)
        for first, start, size in token_intervals(engine, tokens, model, progress):
            starts[first : first + len(start)] = start
            sizes[first : first + len(size)] = size
            while done < len(mixer.groups) and mixer.group_end(done) <= first + len(start):
                steps = replayed.result()
                if done + 1 < len(mixer.groups):
                    replayed = helper.submit(mixer.replay_group, done + 1)
                mixer.mix_group(done, steps)
                done += 1
    return mixer.out_starts, mixer.out_sizes


def stream_code(
    tokens: np.ndarray, starts: np.ndarray, sizes: np.ndarray, segment_tokens: int, vocab: int
) -> bytes:
    """The one code of codecs 3 to 6: each token's interval (starts, sizes (N,) int64, in
    work order) range-coded in the lockstep decoder's order."""
    order = decode_order(len(tokens), segment_tokens)
    coder = rangecoder.Encoder()
    last = tokens[order] == vocab - 1
    coder.encode_all(starts[order].tolist(), sizes[order].tolist(), last.tolist())
    return coder.finish()


INCOMPRESSIBLE = 0.97  # zstd -1 saves under 3 %: random or compressed data, stored at once


def encode_work(
    work: bytes,
    loaded: LoadedModel,
    settings: CodecSettings = CodecSettings(),
    progress: Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """The smallest key of `work`: its model key, a classical key or a stored key.

    Incompressible data (zstd -1 saves under 3 %) is stored without more ado; binary data
    (over 1 % of bytes no text holds) is compressed classically without the model's time;
    text is coded by the model and by every classical method, and the smallest wins (the
    model's key on ties). So no key is larger than min(best classical, stored) + its header.
    """
    if not settings.smallest:
        return model_key(work, loaded, settings, progress)
    keys: list[tuple[bytes, EncodeStats]] = []
    if classical.probe_ratio(work) < INCOMPRESSIBLE:
        if not classical.looks_binary(work):
            keys.append(model_key(work, loaded, settings, progress))
        method, payload = classical.smallest(work)
        header = KeyHeader(Kind.CLASSICAL, bytes(8), len(work), (method,), zlib.crc32(work))
        keys.append((header.to_bytes() + payload, _other(keys, Kind.CLASSICAL, method)))
    keys.append((stored_key(work), _other(keys, Kind.STORED)))
    return min(keys, key=lambda k: len(k[0]))


def _other(keys: list[tuple[bytes, EncodeStats]], kind: Kind, method: int = 0) -> EncodeStats:
    """The stats of a key that is not the model's: the model's figures if it ran."""
    name = classical.METHODS[method][0] if method else ""
    if keys and keys[0][1].kind is Kind.MODEL:
        return replace(keys[0][1], kind=kind, method=name)
    return EncodeStats(0, 0, 0.0, 0, kind, name, model_ran=False)


def model_key(
    work: bytes,
    loaded: LoadedModel,
    settings: CodecSettings = CodecSettings(),
    progress: Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """The arithmetic code of `work` under a model blob, as a key."""
    if settings.codec not in CODECS:
        raise ValueError(f"codec {settings.codec} is not one of {CODECS}")
    segment_tokens = min(settings.segment_tokens, loaded.model.config.max_seq_len)
    settings = replace(settings, segment_tokens=segment_tokens)
    tokens = loaded.model.vocab.tokenize(work)
    segment_count = len(segment_bounds(len(tokens), segment_tokens))
    if settings.codec in STREAM_CODECS:
        payload, ideal = encode_stream(loaded.engine, tokens, settings, progress)
    else:
        segments, ideal = encode_tokens(loaded.engine, tokens, settings, progress)
        payload = pack_segments(segments)
    header = KeyHeader(
        Kind.MODEL,
        loaded.blob.id,
        len(work),
        (segment_tokens, len(tokens), settings.codec),
        zlib.crc32(work),
    )
    stats = EncodeStats(len(tokens), segment_count, ideal, len(payload))
    return header.to_bytes() + payload, stats


def stored_key(work: bytes) -> bytes:
    header = KeyHeader(Kind.STORED, bytes(8), len(work), (), zlib.crc32(work))
    return header.to_bytes() + work


def decode_stored(key: BinaryIO, header: KeyHeader, out: BinaryIO) -> None:
    """Copy a stored key's payload out, verifying its length and checksum."""
    work = key.read(header.work_length + 1)
    if len(work) != header.work_length:
        raise KeyFormatError(
            "truncated key"
            if len(work) < header.work_length
            else "corrupt key: trailing garbage after the payload"
        )
    if zlib.crc32(work) != header.checksum:
        raise ChecksumError("checksum mismatch: the key is damaged")
    out.write(work)


# ---------------------------------------------------------------------------- decode


def decode_segments(
    engine: Engine,
    code: list[np.ndarray] | rangecoder.Decoder,
    token_count: int,
    segment_tokens: int,
    lanes: int,
    progress: Progress | None = None,
    codec: int = CODEC_VERSION,
) -> Iterator[np.ndarray]:
    """Token ids of each segment, in order: `lanes` segments at a time advance in lockstep.

    `code`: the words of each segment (codecs 1 and 2) or a decoder of the key's one stream
    (3 and 4).
    Codecs 2-4 decode history.GROUP lanes, whatever `lanes` says: their code depends on them.
    """
    bounds = segment_bounds(token_count, segment_tokens)
    history = new_history(engine.config.vocab_size, codec) if codec in HISTORY_CODECS else None
    weights = Weights(ORDERS_OF[codec]) if codec in LEARNING_CODECS else None
    vocab = engine.config.vocab_size
    calibration = Calibration(vocab, engine.threads) if codec in CALIBRATED_CODECS else None
    stream = code if isinstance(code, rangecoder.Decoder) else None
    lanes = lanes if codec == 1 else GROUP
    with ThreadPoolExecutor(1) as ahead:
        for first in range(0, len(bounds), lanes):
            group = bounds[first : first + lanes]
            if stream is None:
                readers: Readers = [
                    constriction.stream.queue.RangeDecoder(w) for w in code[first : first + lanes]
                ]
            else:
                readers = stream
            yield from _decode_group(
                engine, group, readers, codec, history, weights, calibration, ahead, progress
            )


Readers = list | rangecoder.Decoder  # constriction's decoder of each lane, or the one stream


def _decode_group(
    engine: Engine,
    group: list[tuple[int, int]],
    readers: Readers,
    codec: int,
    history: History | None,
    weights: Weights | None,
    calibration: Calibration | None,
    ahead: ThreadPoolExecutor,
    progress: Progress | None,
) -> Iterator[np.ndarray]:
    """The tokens of a group of segments decoded in lockstep, one position of each per step."""
    lengths = [b - a for a, b in group]
    out = np.zeros((len(group), max(lengths)), dtype=np.int64)  # (lanes, longest)
    cache = engine.new_cache(len(group), max(lengths))
    step_input = np.full((len(group), 1), engine.config.bos_token_id, dtype=np.int64)
    learned: tuple[dict, list[int]] | None = None  # the last step's tokens, for the history
    back = history.longest if history else 0
    predictions: list[Predictions] = []
    for step in range(max(lengths)):
        live = [lane for lane, n in enumerate(lengths) if step < n]  # a prefix: only the
        if len(live) < cache.k[0].shape[0]:  # last segment is shorter, and the engine is
            cache = cache.rows(0, len(live))  # batch-invariant: finished lanes are dropped
        # the engine evaluates this step while the history catches up and predicts; the
        # one stream (codecs 3-6) searches the tables' running sums
        one_stream = isinstance(readers, rangecoder.Decoder)
        pending = ahead.submit(
            _step_tables, engine, step_input[: len(live)], cache, codec, one_stream, calibration
        )
        if history:
            if learned:
                history.learn(*learned)
            contexts = history.contexts(out[live, max(0, step - back) : step])
            predictions = history.predict(live, contexts)
        learned = weights.of(predictions) if weights else None
        if one_stream:
            vocab = engine.config.vocab_size
            part = sparse(predictions, len(live), vocab, rangecoder.TOTAL, learned)
            model, cumulative = pending.result()  # (lanes, V) int64
            out[live, step] = symbols = _read_step(readers, cumulative, part)
            if calibration is not None:
                calibration.learn(model, symbols)
            if weights is not None and learned is not None:
                rows = np.arange(len(live))
                below = np.where(symbols > 0, cumulative[rows, symbols - 1], 0)
                chosen = cumulative[rows, symbols] - below
                weights.learn(predictions, learned, symbols, chosen, rangecoder.TOTAL)
        else:
            freq = pending.result()[1]  # (lanes, V) int64
            out[live, step] = _read_lanes(readers, freq, predictions, step)
        if history:
            learned = (contexts, out[live, step].tolist())
        step_input = out[:, step : step + 1]
        if progress:
            progress(len(live))
    if history and learned:
        history.learn(*learned)
    for lane, n in enumerate(lengths):
        yield out[lane, :n]


def _step_tables(
    engine: Engine,
    step_input: np.ndarray,
    cache: Cache,
    codec: int,
    running: bool,
    calibration: Calibration | None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """One lockstep step's tables (lanes, V) int64 as its codec codes them (or, `running`,
    their running sums), and (codec 6) the model's own, which calibration learns from."""
    if calibration is None:
        return None, engine.frequencies(step_input, cache, TABLE_CODEC[codec], running)[:, 0]
    model = engine.frequencies(step_input, cache, TABLE_CODEC[codec])[:, 0]
    return model, calibration.apply(model, running)


def _read_step(stream: rangecoder.Decoder, cumulative: np.ndarray, part: Sparse) -> np.ndarray:
    """Codecs 3-5: one token of each lane (in lane order) from the key's stream, given the
    model's tables as inclusive running sums (lanes, V) int64 and the history's part of the
    coded tables (history.sparse; none in codec 3)."""
    lanes, vocab = cumulative.shape
    symbols = np.zeros(lanes, dtype=np.int64)
    if exact.KERNELS is None:  # numpy: the coded tables' running sums, then a search each
        coded = mixed_cumulative(cumulative.copy(), part)  # the model's stay (codec 5 learns)
        for lane in range(lanes):
            symbol, start, size = rangecoder.find(coded[lane], stream.target())
            stream.consume(start, size, symbol == vocab - 1)
            symbols[lane] = symbol
        return symbols
    # each lane's entries of the history's part (sorted by row, then token)
    cuts = np.searchsorted(part.rows, np.arange(lanes + 1))
    for lane in range(lanes):
        a, b = cuts[lane], cuts[lane + 1]
        symbol, start, size = exact.KERNELS.mixed_find(
            cumulative[lane],
            int(part.keep[lane]),
            part.tokens[a:b],
            part.amounts[a:b],
            stream.target(),
        )
        stream.consume(start, size, symbol == vocab - 1)
        symbols[lane] = symbol
    return symbols


def _read_lanes(
    decoders: list, freq: np.ndarray, predictions: list[Predictions], step: int
) -> np.ndarray:
    """Codecs 1 and 2: one token of each lane from its own constriction code."""
    freq = mix(freq, predictions, inplace=True)
    symbols = np.zeros(len(freq), dtype=np.int64)
    for lane in range(len(freq)):
        table = freq[lane : lane + 1].astype(np.float64)  # one lane's (1, V) at a time
        try:
            symbols[lane] = decoders[lane].decode(_categorical(), table)[0]
        except AssertionError:  # constriction: a point no symbol's interval covers
            raise ChecksumError(
                f"the key is damaged, or was made with a different blob: segment "
                f"{lane + 1} of its group does not decode (token {step + 1})"
            ) from None
    return symbols


def decode_key(
    key: BinaryIO,
    header: KeyHeader,
    loaded: LoadedModel,
    out: BinaryIO,
    lanes: int = CodecSettings.decode_lanes,
    progress: Progress | None = None,
) -> None:
    """Write the work of a model key to `out`; raise unless its length and checksum match."""
    check_blob(header, loaded.blob)
    segment_tokens, token_count, codec = header.params
    if codec not in CODECS:
        raise KeyFormatError(
            f"key uses codec version {codec}; this inert decodes versions "
            + ", ".join(map(str, CODECS)),
            hint="a newer inert may decode it: pip install -U inert",
        )
    if segment_tokens > loaded.model.config.max_seq_len:
        raise KeyFormatError(
            f"corrupt key: segments of {segment_tokens} tokens exceed the model's context"
        )
    payload = key.read()
    stream = rangecoder.Decoder(check_stream(payload)) if codec in STREAM_CODECS else None
    code = stream or unpack_segments(header, payload)
    crc, written = 0, 0
    vocab = loaded.model.vocab
    for tokens in decode_segments(
        loaded.engine, code, token_count, segment_tokens, lanes, progress, codec
    ):
        data = vocab.detokenize(tokens)
        written += len(data)
        if written > header.work_length:
            break
        crc = zlib.crc32(data, crc)
        out.write(data)
    if written != header.work_length or crc != header.checksum:
        if stream:  # no length to check: every byte string decodes, so the checksum tells
            raise ChecksumError("checksum mismatch: the key is damaged or truncated")
        raise ChecksumError(
            "checksum mismatch: the key is damaged, or was made with a different blob"
        )


def decode_classical(key: BinaryIO, header: KeyHeader, out: BinaryIO) -> None:
    """Decompress a classical key's payload out, verifying its length and checksum."""
    try:
        work = classical.decompress(header.params[0], key.read(), header.work_length)
    except ValueError as e:
        raise ChecksumError(f"the key is damaged: its payload does not decompress ({e})") from None
    if len(work) != header.work_length or zlib.crc32(work) != header.checksum:
        raise ChecksumError("checksum mismatch: the key is damaged")
    out.write(work)


def decode_work(key: bytes, loaded: LoadedModel | None) -> bytes:
    stream = io.BytesIO(key)
    header = read_header(stream)
    out = io.BytesIO()
    if header.kind is Kind.STORED:
        decode_stored(stream, header, out)
    elif header.kind is Kind.CLASSICAL:
        decode_classical(stream, header, out)
    elif loaded is None:
        raise InertError("a model key needs its blob")
    elif header.kind is Kind.MODEL:
        decode_key(stream, header, loaded, out)
    else:
        raise InertError(f"this is a {header.kind.label} key, not a model key")
    return out.getvalue()


# ---------------------------------------------------------------------------- imagine


def imagine_tokens(engine: Engine, words: np.ndarray, count: int, prompt: np.ndarray) -> np.ndarray:
    """Decode `count` tokens from arbitrary words (uint32): every bit string reads as some text.

    The context starts as BOS + prompt; when it fills the model's window, a new segment starts
    from BOS alone, as in keys. Returns the new tokens (count,) int64.
    """
    window = engine.config.max_seq_len
    bos = engine.config.bos_token_id
    decoder = constriction.stream.queue.RangeDecoder(words)
    context = np.concatenate([[bos], prompt]).astype(np.int64)[-window:]
    out = np.zeros(count, dtype=np.int64)
    cache = engine.new_cache(1, window)
    q, scale = engine.final_states(context[None], cache)
    freq = engine.tables(q[-1:], scale[-1:])  # the prompt's last table only
    for i in range(count):
        restart = i
        while True:
            try:
                out[i] = decoder.decode(_categorical(), freq.astype(np.float64))[0]
                break
            except AssertionError:
                # Not every bit string is a code word of constriction's coder: its range
                # keeps a sliver no symbol covers. The words from here on start a new code.
                decoder = constriction.stream.queue.RangeDecoder(words[restart:])
                restart += 1
        if cache.length == window:  # window full: a fresh segment, as in keys
            cache = engine.new_cache(1, window)
            freq = engine.frequencies(np.array([[bos]]), cache)[0]
        else:
            freq = engine.frequencies(out[None, i : i + 1], cache)[0]
    return out


def imagine(loaded: LoadedModel, count: int, seed: int, prompt: bytes = b"") -> bytes:
    """A new work: the prompt, continued by `count` tokens decoded from seeded random bits."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**32, size=count + 2, dtype=np.uint32)  # a token takes < 25 bits
    prompt_tokens = loaded.model.vocab.tokenize(prompt)
    return prompt + loaded.model.vocab.detokenize(
        imagine_tokens(loaded.engine, words, count, prompt_tokens)
    )
