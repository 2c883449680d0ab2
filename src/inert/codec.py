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

import io
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from typing import BinaryIO

import constriction
import numpy as np

from .engine import FREQ_TOTAL, Engine
from .errors import ChecksumError, InertError, KeyFormatError
from .history import GROUP, History, Predictions, mix, replay
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


@dataclass(frozen=True)
class CodecSettings:
    # tokens per segment (capped at the model's context): longer predicts better, shorter
    # decodes in more parallel lanes; written into every key
    segment_tokens: int = 512
    # segments evaluated together when encoding, at most: memory ~ batch * segment * vocabulary
    # (see encode_batch_for); the engine is batch-invariant, so it never changes a key
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
def _load(path: str, sha256: bytes, threads: int) -> tuple[Model, Engine]:
    model = read_model(path)
    return model, Engine(model, threads)


def load_model(blob: Blob, threads: int = 0) -> LoadedModel:
    """The blob's model and an engine with `threads` threads (0: one per core)."""
    model, engine = _load(str(blob.path), blob.sha256, threads or os.cpu_count() or 1)
    return LoadedModel(blob, model, engine)


def _categorical() -> object:
    return constriction.stream.model.Categorical(perfect=False)


# ---------------------------------------------------------------------------- frequencies


def segment_bounds(token_count: int, segment_tokens: int) -> list[tuple[int, int]]:
    return [
        (a, min(a + segment_tokens, token_count)) for a in range(0, token_count, segment_tokens)
    ]


def segment_frequencies(
    engine: Engine, tokens: np.ndarray, segment_tokens: int, batch: int = 4, codec: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """(start, freq (n, V) int64) for every segment: freq[i] is the table that codes tokens[start+i].

    The engine evaluates the next group of segments while the caller codes this one.
    """
    bos = engine.config.bos_token_id
    bounds = segment_bounds(len(tokens), segment_tokens)
    groups = []
    for first in range(0, len(bounds), batch):
        group = bounds[first : first + batch]
        # segments of a group share one forward pass when they have the same length
        full = [b for b in group if b[1] - b[0] == group[0][1] - group[0][0]]
        groups += [members for members in (full, [b for b in group if b not in full]) if members]

    def evaluate(members: list[tuple[int, int]]) -> list[tuple[int, np.ndarray]]:
        inputs = np.stack([np.concatenate([[bos], tokens[a : b - 1]]) for a, b in members])
        cache = engine.new_cache(len(members), inputs.shape[1])
        freqs = engine.frequencies(inputs, cache, codec)
        return [(a, freq) for (a, _), freq in zip(members, freqs, strict=True)]

    if not groups:
        return
    with ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(evaluate, groups[0])
        for following in groups[1:]:
            done = pending.result()
            pending = ahead.submit(evaluate, following)
            yield from done
        yield from pending.result()


# ---------------------------------------------------------------------------- encode


@dataclass
class EncodeStats:
    tokens: int
    segments: int
    ideal_bits: float  # Σ -log2(freq/FREQ_TOTAL) over the coded tokens
    payload_bytes: int  # of the model key (also when a stored key was returned instead)
    stored: bool = False  # the model would have enlarged the work: the key stores it as is


CODE_ROWS = 64  # tables handed to the coder at a time: (64, V) float64, not the segment's


def code_segment(symbols: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """Range-code one segment: symbols (n,) under their tables freq (n, V) -> words (uint32).

    A queue coder codes in order, so handing it the rows in blocks codes the same words.
    """
    encoder = constriction.stream.queue.RangeEncoder()
    symbols = symbols.astype(np.int32)
    for a in range(0, len(symbols), CODE_ROWS):
        rows = freq[a : a + CODE_ROWS].astype(np.float64)
        encoder.encode(symbols[a : a + CODE_ROWS], _categorical(), rows)
    return encoder.get_compressed()


TABLE_BUDGET = 1 << 30  # bytes of (segments, tokens, V) int64 tables evaluated at once


def encode_batch_for(settings: CodecSettings, vocab_size: int) -> int:
    """Segments to evaluate at once: settings.encode_batch, fewer where their tables would
    pass TABLE_BUDGET (Gemma's 262,144-token vocabulary: 1 GiB per 512-token segment)."""
    per_segment = settings.segment_tokens * vocab_size * 8
    return max(1, min(settings.encode_batch, TABLE_BUDGET // per_segment))


def coded_frequencies(
    engine: Engine, tokens: np.ndarray, settings: CodecSettings
) -> Iterator[tuple[int, np.ndarray, list[Predictions]]]:
    """(start, model freq (n, V) int64, the history's predictions) per segment: the codec
    codes with mix(freq, predictions) — the model's own table in codec 1 (no predictions),
    the work's repeats mixed in, in codec 2. Callers that need the model's table as well
    read it before mixing in place."""
    size = settings.segment_tokens
    if settings.codec == 1:
        batch = encode_batch_for(settings, engine.config.vocab_size)
        for start, freq in segment_frequencies(engine, tokens, size, batch, 1):
            yield start, freq, []
        return
    history = History(engine.config.vocab_size)
    bounds = segment_bounds(len(tokens), size)
    for first in range(0, len(bounds), GROUP):
        lo, hi = bounds[first][0], bounds[min(first + GROUP, len(bounds)) - 1][1]
        group = [tokens[a:b].tolist() for a, b in bounds[first : first + GROUP]]
        with ThreadPoolExecutor(1) as helper:  # the replay runs while the engine starts
            replayed = helper.submit(replay, history, group)
            for start, freq in segment_frequencies(
                engine, tokens[lo:hi], size, encode_batch_for(settings, engine.config.vocab_size), 2
            ):
                yield lo + start, freq, replayed.result()[start // size]


def encode_tokens(
    engine: Engine, tokens: np.ndarray, settings: CodecSettings, progress: Progress | None = None
) -> tuple[list[np.ndarray], float]:
    """Code each segment; returns the words (uint32) of every segment and the ideal bit count."""
    segments: list[np.ndarray] = []
    ideal = 0.0
    for start, freq, predictions in coded_frequencies(engine, tokens, settings):
        freq = mix(freq, predictions, inplace=True)
        symbols = tokens[start : start + len(freq)]
        segments.append(code_segment(symbols, freq))
        ideal -= float(np.sum(np.log2(freq[np.arange(len(freq)), symbols] / FREQ_TOTAL)))
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
        # the engine evaluates this step while the history catches up and predicts
        pending = ahead.submit(engine.frequencies, step_input, cache, codec)
        live = [lane for lane, n in enumerate(lengths) if step < n]
        if history:
            if learned:
                history.learn(*learned)
            contexts = history.contexts(out[live, max(0, step - 3) : step].tolist())
            predictions = history.predict(live, contexts)
        freq = pending.result()[:, 0]  # (lanes, V) int64
        if history:
            freq = mix(freq, predictions, inplace=True)
        table = freq.astype(np.float64)
        for lane in live:
            try:
                out[lane, step] = decoders[lane].decode(_categorical(), table[lane : lane + 1])[0]
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
    freq = engine.frequencies(context[None], cache)[0, -1:]
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
