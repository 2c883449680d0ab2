"""Model keys: work -> tokens -> segments -> frequency tables -> range coder -> key, and back.

The work's tokens are cut into segments of `segment_tokens`; each segment is coded on its
own, its context starting from the blob's BOS token, so segments can be evaluated in
batches when encoding and decoded in lockstep (one token of every segment per step, with
a KV cache) when decoding. A segment's code is constriction's range coder driven by the
engine's integer frequency tables — in codec 2 with the work's own repeats mixed in, in
the order the lockstep decoder learns them (history.py); its length in bits is Σ -log2 p
plus < 64 bits of flush.
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

from .engine import FREQ_TOTAL, Engine, table_rows
from .errors import ChecksumError, InertError, KeyFormatError
from .history import GROUP, History, Predictions, mix, replay, rows_of
from .keyfile import KeyHeader, Kind, pack_segments, read_header, unpack_segments
from .modelfile import Model, read_model
from .store import Blob, check_blob
from .streams import Progress

# Version 1 of the codec: engine arithmetic of engine.py/exact.py, 24-bit frequency tables,
# constriction 0.5's RangeEncoder with Categorical(perfect=False). Version 2: the same, with
# the work's own repeats mixed in (history.py). Changing any of these changes keys: bump it,
# and keep decoding every earlier version.
CODEC_VERSION = 2
CODECS = (1, 2)
T = TypeVar("T")


@dataclass(frozen=True)
class CodecSettings:
    # tokens per segment (capped at the model's context): longer predicts better, shorter
    # decodes in more parallel lanes; written into every key
    segment_tokens: int = 512
    # segments evaluated together when encoding, at most (see encode_batch_for); the engine
    # is batch-invariant, so it never changes a key
    encode_batch: int = 4
    # segments decoded in lockstep (codec 1; codec 2 always decodes history.GROUP): more
    # lanes amortize each step's overhead; this, not the work's size, bounds decoding memory
    decode_lanes: int = 256
    # written into every key: 2 mixes the work's own repeats into the model's tables
    codec: int = CODEC_VERSION


def default_settings(loaded: LoadedModel) -> CodecSettings:
    """The settings a blob codes best with when nobody says otherwise.

    Codec 2's fixed mix of the work's repeats makes up for what a small model forgets
    (20-35 % smaller keys with inert's own 1.3 M-parameter blobs), but costs a real model
    that remembers its whole context: +3.4 % on Gemma 3 270M (4,808 against 4,648 bits on
    3 KB of docs/FORMAT.md). Imported blobs code with the model alone.
    """
    return CodecSettings(codec=1 if loaded.model.source else CODEC_VERSION)


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


def segment_tables(
    engine: Engine, tokens: np.ndarray, segment_tokens: int, batch: int = 4, codec: int = 1
) -> Iterator[Tables]:
    """The model's tables for every segment in order, a block of rows at a time.

    Segments of a group of `batch` share one forward pass when they have the same length.
    """
    bos = engine.config.bos_token_id
    bounds = segment_bounds(len(tokens), segment_tokens)
    rows = table_rows(engine.config.vocab_size)
    for first in range(0, len(bounds), batch):
        group = bounds[first : first + batch]
        full = [b for b in group if b[1] - b[0] == group[0][1] - group[0][0]]
        for members in (full, [b for b in group if b not in full]):
            if not members:
                continue
            inputs = np.stack([np.concatenate([[bos], tokens[a : b - 1]]) for a, b in members])
            cache = engine.new_cache(len(members), inputs.shape[1])
            q, scale = engine.final_states(inputs, cache)  # (members * n, d)
            n = inputs.shape[1]
            for m, (a, b) in enumerate(members):
                for r in range(0, n, rows):
                    at = slice(m * n + r, m * n + min(r + rows, n))
                    yield Tables(a, b - a, r, engine.tables(q[at], scale[at], codec))


# ---------------------------------------------------------------------------- encode


@dataclass
class EncodeStats:
    tokens: int
    segments: int
    ideal_bits: float  # Σ -log2(freq/FREQ_TOTAL) over the coded tokens
    payload_bytes: int  # of the model key (also when a stored key was returned instead)
    stored: bool = False  # the model would have enlarged the work: the key stores it as is


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
    if settings.codec == 1:
        yield from ahead(segment_tables(engine, tokens, size, batch, 1))
        return
    history = History(engine.config.vocab_size)
    bounds = segment_bounds(len(tokens), size)
    for first in range(0, len(bounds), GROUP):
        lo, hi = bounds[first][0], bounds[min(first + GROUP, len(bounds)) - 1][1]
        group = [tokens[a:b].tolist() for a, b in bounds[first : first + GROUP]]
        with ThreadPoolExecutor(1) as helper:  # the replay runs while the engine starts
            replayed = helper.submit(replay, history, group)
            for tables in ahead(segment_tables(engine, tokens[lo:hi], size, batch, 2)):
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
    """Code each segment; returns the words (uint32) of every segment and the ideal bit count."""
    segments: list[np.ndarray] = []
    ideal = 0.0
    coder = SegmentCoder()
    for tables in coded_tables(engine, tokens, settings):
        freq = mix(tables.freq, tables.predictions, inplace=True)
        symbols = tokens[tables.first : tables.first + len(freq)]
        coder.code(symbols, freq)
        ideal -= float(np.sum(np.log2(freq[np.arange(len(freq)), symbols] / FREQ_TOTAL)))
        if tables.ends_segment:
            segments.append(coder.words())
            coder = SegmentCoder()
        if progress:
            progress(len(freq))
    return segments, ideal


def encode_work(
    work: bytes,
    loaded: LoadedModel,
    settings: CodecSettings = CodecSettings(),
    progress: Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """The key of `work` under a model blob, or a stored key if that is smaller."""
    key, stats = model_key(work, loaded, settings, progress)
    stored = stored_key(work)
    if len(stored) < len(key):  # e.g. compressed or random data: never grow by more than a header
        stats.stored = True
        return stored, stats
    return key, stats


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
    segments, ideal = encode_tokens(loaded.engine, tokens, settings, progress)
    header = KeyHeader(
        Kind.MODEL,
        loaded.blob.id,
        len(work),
        (segment_tokens, len(tokens), settings.codec),
        zlib.crc32(work),
    )
    payload = pack_segments(segments)
    return header.to_bytes() + payload, EncodeStats(len(tokens), len(segments), ideal, len(payload))


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
    segments: list[np.ndarray],
    token_count: int,
    segment_tokens: int,
    lanes: int,
    progress: Progress | None = None,
    codec: int = CODEC_VERSION,
) -> Iterator[np.ndarray]:
    """Token ids of each segment, in order: `lanes` segments at a time advance in lockstep.

    Codec 2 decodes history.GROUP lanes, whatever `lanes` says: its tables depend on them.
    """
    bounds = segment_bounds(token_count, segment_tokens)
    history = History(engine.config.vocab_size) if codec == 2 else None
    lanes = GROUP if history else lanes
    with ThreadPoolExecutor(1) as ahead:
        for first in range(0, len(bounds), lanes):
            group = bounds[first : first + lanes]
            words = segments[first : first + lanes]
            yield from _decode_group(engine, group, words, codec, history, ahead, progress)


def _decode_group(
    engine: Engine,
    group: list[tuple[int, int]],
    words: list[np.ndarray],
    codec: int,
    history: History | None,
    ahead: ThreadPoolExecutor,
    progress: Progress | None,
) -> Iterator[np.ndarray]:
    """The tokens of a group of segments decoded in lockstep, one position of each per step."""
    lengths = [b - a for a, b in group]
    decoders = [constriction.stream.queue.RangeDecoder(w) for w in words]
    out = np.zeros((len(group), max(lengths)), dtype=np.int64)  # (lanes, longest)
    cache = engine.new_cache(len(group), max(lengths))
    step_input = np.full((len(group), 1), engine.config.bos_token_id, dtype=np.int64)
    learned: tuple[dict, list[int]] | None = None  # the last step's tokens, for the history
    for step in range(max(lengths)):
        live = [lane for lane, n in enumerate(lengths) if step < n]  # a prefix: only the
        if len(live) < cache.k[0].shape[0]:  # last segment is shorter, and the engine is
            cache = cache.rows(0, len(live))  # batch-invariant: finished lanes are dropped
        # the engine evaluates this step while the history catches up and predicts
        pending = ahead.submit(engine.frequencies, step_input[: len(live)], cache, codec)
        if history:
            if learned:
                history.learn(*learned)
            contexts = history.contexts(out[live, max(0, step - 3) : step].tolist())
            predictions = history.predict(live, contexts)
        freq = pending.result()[:, 0]  # (lanes, V) int64
        if history:
            freq = mix(freq, predictions, inplace=True)
        for lane in live:
            table = freq[lane : lane + 1].astype(np.float64)  # one lane's (1, V) at a time
            try:
                out[lane, step] = decoders[lane].decode(_categorical(), table)[0]
            except AssertionError:  # constriction: a point no symbol's interval covers
                raise ChecksumError(
                    f"the key is damaged, or was made with a different blob: segment "
                    f"{lane + 1} of its group does not decode (token {step + 1})"
                ) from None
        if history:
            learned = (contexts, out[live, step].tolist())
        step_input = out[:, step : step + 1]
        if progress:
            progress(len(live))
    if history and learned:
        history.learn(*learned)
    for lane, n in enumerate(lengths):
        yield out[lane, :n]


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
    segments = unpack_segments(header, key.read())
    crc, written = 0, 0
    vocab = loaded.model.vocab
    for tokens in decode_segments(
        loaded.engine, segments, token_count, segment_tokens, lanes, progress, codec
    ):
        data = vocab.detokenize(tokens)
        written += len(data)
        if written > header.work_length:
            break
        crc = zlib.crc32(data, crc)
        out.write(data)
    if written != header.work_length or crc != header.checksum:
        raise ChecksumError(
            "checksum mismatch: the key is damaged, or was made with a different blob"
        )


def decode_work(key: bytes, loaded: LoadedModel) -> bytes:
    stream = io.BytesIO(key)
    header = read_header(stream)
    out = io.BytesIO()
    if header.kind is Kind.STORED:
        decode_stored(stream, header, out)
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
