"""A work and a model blob -> the ledger: what each token cost the key, and what the blob held.

For every token: its byte span in the work, the bits it costs in the key (-log2 p, exactly
as coded), its rank under the blob (1 = the blob's first choice) and the blob's top
alternatives. Per segment, what the key spends beyond Σ -log2 p — the range coder's flush
and the segment's length field — is charged to the segment's last token, so the tokens'
key bits sum to the key's payload bits exactly.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np

from .codec import (
    CALIBRATED_CODECS,
    LEARNING_CODECS,
    TABLE_CODEC,
    CodecSettings,
    LearnedMix,
    LoadedModel,
    SegmentCoder,
    calibrated_steps,
    coded_tables,
    mix_repeats,
    stream_code,
)
from .engine import FREQ_TOTALS
from .history import mix, mixed_intervals
from .keyfile import STREAM_CODECS, KeyHeader, Kind, encode_uvarint


@dataclass
class Ledger:
    work: bytes
    token_ids: np.ndarray  # (T,) int64
    starts: np.ndarray  # (T,) int64 byte offset of each token in the work
    ends: np.ndarray  # (T,) int64
    bits: np.ndarray  # (T,) float64: -log2 p of the token under the blob alone
    coded_bits: np.ndarray  # (T,) float64: -log2 p as coded (codec 2: the work's repeats mixed in)
    flush_bits: np.ndarray  # (T,) float64: flush + length field, on each segment's last token
    ranks: np.ndarray  # (T,) int64: 1 + number of tokens the blob found strictly more likely
    top_ids: np.ndarray  # (T, k) int64: the blob's most likely tokens, best first
    top_bits: np.ndarray  # (T, k) float64: their -log2 p
    segment_tokens: int
    token_bytes: list[bytes]  # the blob's vocabulary: token id -> the bytes it stands for

    @property
    def key_bits(self) -> np.ndarray:
        """(T,) bits each token costs in the key's payload, flush included."""
        return self.coded_bits + self.flush_bits

    @property
    def total_key_bits(self) -> float:
        return float(self.key_bits.sum())


TOP_BLOCK = 64  # top_tokens looks for the best tokens only in the blocks with the best maxima


def top_tokens(freq: np.ndarray, k: int) -> np.ndarray:
    """(n, k) the k most likely tokens of each row of freq (n, V), best first, ties by lower id.

    The k best of a row lie in the k blocks of TOP_BLOCK tokens with the largest maxima (a
    token outside them would have k better block maxima above it), unless tokens tie at the
    cutoff beyond them: those rows are redone over the whole row. Within the chosen blocks,
    each value is packed with its id (value << id bits | V-1-id) so that no two tie and one
    partition finds the best. 2.5x faster than partitioning whole rows of 4,096 tokens.
    freq must be non-negative and below 2^(63 - id bits).
    """
    n, vocab = freq.shape
    if vocab % TOP_BLOCK or vocab // TOP_BLOCK < 4 * k:  # few blocks: whole rows are as quick
        return _top_of_rows(freq, k)
    count = vocab // TOP_BLOCK
    block_max = freq.reshape(n, count, TOP_BLOCK).max(axis=2)  # (n, V/64)
    blocks = np.argpartition(block_max, count - k, axis=1)[:, count - k :]  # (n, k), any order
    ids = (blocks[:, :, None] * TOP_BLOCK + np.arange(TOP_BLOCK)).reshape(n, -1)  # (n, k*64)
    shift = (vocab - 1).bit_length()
    packed = (np.take_along_axis(freq, ids, axis=1) << shift) | (vocab - 1 - ids)
    last = packed.shape[1] - k
    best = -np.sort(-np.partition(packed, last, axis=1)[:, last:], axis=1)  # (n, k) best first
    cutoff = best[:, -1] >> shift  # the k-th best value
    best = vocab - 1 - (best & ((1 << shift) - 1))
    # A block left out has its maximum <= the least chosen block's <= the cutoff: only a
    # left-out block whose maximum equals the cutoff can hold a tie with a lower id.
    np.put_along_axis(block_max, blocks, -1, axis=1)
    for row in np.flatnonzero(block_max.max(axis=1) >= cutoff):
        best[row] = np.argsort(-freq[row], kind="stable")[:k]
    return best


def _top_of_rows(freq: np.ndarray, k: int) -> np.ndarray:
    """top_tokens by partitioning whole rows."""
    candidates = np.argpartition(-freq, k - 1, axis=1)[:, :k]  # the top k, in no order
    chosen = np.take_along_axis(freq, candidates, axis=1)
    cutoff = chosen.min(axis=1, keepdims=True)
    # where more tokens tie at the cutoff than were taken, the partition chose arbitrarily:
    # redo those (rare) rows with a stable full sort so lower ids win
    for row in np.flatnonzero((freq == cutoff).sum(axis=1) > (chosen == cutoff).sum(axis=1)):
        candidates[row] = np.argsort(-freq[row], kind="stable")[:k]
    ranked = np.take_along_axis(freq, candidates, axis=1)
    return np.take_along_axis(candidates, np.lexsort((candidates, -ranked), axis=1), axis=1)


def build_ledger(
    work: bytes,
    loaded: LoadedModel,
    settings: CodecSettings | None = None,
    top_k: int = 5,
    on_rows: Callable[[Ledger, int, int], None] | None = None,
) -> Ledger:
    """The ledger of `work` against a model blob, segment by segment as the codec codes it.

    on_rows(ledger, a, b) is called as the rows of tokens a..b-1 become final (the ledger's
    token ids and byte spans are there from the first call), e.g. to write them out early.
    """
    settings = settings or CodecSettings()
    segment_tokens = min(settings.segment_tokens, loaded.model.config.max_seq_len)
    settings = replace(settings, segment_tokens=segment_tokens)
    vocab = loaded.model.vocab
    tokens = vocab.tokenize(work)
    T = len(tokens)
    lengths = np.array([len(vocab.token_bytes[t]) for t in tokens], dtype=np.int64)
    ends = np.cumsum(lengths)
    bits, coded = np.zeros(T), np.zeros(T)
    ranks = np.zeros(T, dtype=np.int64)
    k = min(top_k, loaded.model.config.vocab_size)
    top_ids = np.zeros((T, k), dtype=np.int64)
    top_bits = np.zeros((T, k))
    flush = np.zeros(T)
    book = Ledger(
        work,
        tokens,
        ends - lengths,
        ends,
        bits,
        coded,
        flush,
        ranks,
        top_ids,
        top_bits,
        segment_tokens,
        vocab.token_bytes,
    )
    stream = settings.codec in STREAM_CODECS
    coder = SegmentCoder()
    starts, sizes = np.zeros(T, dtype=np.int64), np.ones(T, dtype=np.int64)  # codecs 3-4
    total = FREQ_TOTALS[TABLE_CODEC[settings.codec]]
    vocab_size = loaded.model.config.vocab_size
    learning = settings.codec in LEARNING_CODECS  # codec 5: the model's tables, then the mix
    model = replace(settings, codec=3) if learning else settings
    calibrated = settings.codec in CALIBRATED_CODECS
    if calibrated:  # codec 6: its tables are made a lockstep step at a time
        for step in calibrated_steps(loaded.engine, tokens, settings):
            _judge(book, step.at, step.freq, total, k)
            starts[step.at], sizes[step.at] = step.start, step.size
        starts, sizes = mix_repeats(tokens, starts, sizes, segment_tokens, vocab_size)
        coded[:] = -np.log2(sizes / total)
        if on_rows and T:
            for a in range(0, (T - 1) // segment_tokens * segment_tokens, segment_tokens):
                on_rows(book, a, a + segment_tokens)
    for tables in [] if calibrated else coded_tables(loaded.engine, tokens, model):
        freq, start = tables.freq, tables.first
        rows, end = np.arange(len(freq)), start + len(freq)
        symbols = tokens[start:end]
        _judge(book, np.arange(start, end), freq, total, k)
        if stream:  # the coded interval of each token; one stream, coded at the end
            lo, size = mixed_intervals(freq, symbols, tables.predictions, total)
            starts[start:end], sizes[start:end] = lo, size
            coded[start:end] = -np.log2(size / total)
            if on_rows and tables.ends_segment and end < T and not learning:  # the last
                # waits for the flush; codec 5's rows all wait for the mix
                on_rows(book, tables.start, end)
            continue
        coded_freq = mix(freq, tables.predictions, inplace=True)  # the model's table is read
        coded[start:end] = -np.log2(coded_freq[rows, symbols] / total)
        coder.code(symbols, coded_freq)
        if tables.ends_segment:
            first, words = tables.start, coder.words()
            flush[end - 1] = (
                32 * len(words) + 8 * len(encode_uvarint(len(words))) - coded[first:end].sum()
            )
            coder = SegmentCoder()
            if on_rows:
                on_rows(book, first, end)
    if learning and T:
        mixer = LearnedMix(tokens, starts, sizes, segment_tokens, vocab_size)
        mixer.mix_all()
        starts, sizes = mixer.out_starts, mixer.out_sizes
        coded[:] = -np.log2(sizes / total)
        if on_rows:
            last_segment = (T - 1) // segment_tokens * segment_tokens
            for a in range(0, last_segment, segment_tokens):
                on_rows(book, a, a + segment_tokens)
    if stream and T:  # the key's one flush (and the coder's rounding), on its last token
        code = stream_code(tokens, starts, sizes, segment_tokens, vocab_size)
        flush[T - 1] = 8 * len(code) - coded.sum()
        if on_rows:
            last_segment = (T - 1) // segment_tokens * segment_tokens
            on_rows(book, last_segment, T)
    return book


def _judge(book: Ledger, at: np.ndarray, freq: np.ndarray, total: int, k: int) -> None:
    """The ledger's view of the blob alone at the work positions `at` (n,), whose tokens the
    model's tables freq (n, V) predicted: each token's bits, rank and the k best tokens."""
    rows = np.arange(len(freq))
    chosen = freq[rows, book.token_ids[at]]  # (n,) int64, under the blob alone
    book.bits[at] = -np.log2(chosen / total)
    best = top_tokens(freq, k)
    top_freq = np.take_along_axis(freq, best, axis=1)  # (n, k)
    book.top_ids[at] = best
    book.top_bits[at] = -np.log2(top_freq / total)
    # rank = 1 + tokens strictly more likely: all among the k best when the token is as
    # likely as the k-th; only the other rows need counting over the whole vocabulary
    rank = 1 + np.sum(top_freq > chosen[:, None], axis=1)
    below = np.flatnonzero(chosen < top_freq[:, -1])
    rank[below] = 1 + np.sum(freq[below] > chosen[below, None], axis=1)
    book.ranks[at] = rank


ROW_FIELDS = ("token_ids", "starts", "ends", "bits", "coded_bits", "flush_bits", "ranks")
ROW_FIELDS += ("top_ids", "top_bits")


def rows(ledger: Ledger, a: int, b: int) -> dict[str, np.ndarray]:
    """The per-token arrays of tokens a..b-1: what another process needs besides the work
    and the vocabulary to write their records (Ledger.from_rows)."""
    return {name: getattr(ledger, name)[a:b] for name in ROW_FIELDS}


def ledger_of_rows(
    work: bytes, token_bytes: list[bytes], arrays: dict[str, np.ndarray], segment_tokens: int
) -> Ledger:
    """A ledger of some of a work's tokens (byte spans still count from the work's start)."""
    return Ledger(work=work, segment_tokens=segment_tokens, token_bytes=token_bytes, **arrays)


# ---------------------------------------------------------------------------- references


def pad_reference(ledger: Ledger) -> np.ndarray:
    """(T,) bits each token costs with no knowledge at all: 8 per byte, as a pad key pays."""
    return 8.0 * (ledger.ends - ledger.starts)


def spread_by_bytes(ledger: Ledger, total_bits: float) -> np.ndarray:
    """(T,) a whole-work cost (e.g. a classical compressor's) spread over tokens by byte length."""
    lengths = (ledger.ends - ledger.starts).astype(np.float64)
    return total_bits * lengths / max(lengths.sum(), 1.0)


# ---------------------------------------------------------------------------- recall


@dataclass(frozen=True)
class RecallRule:
    """Recall: every token of a recalled span lies in some window of `min_tokens` consecutive
    tokens whose mean cost is below `max_mean_bits`; spans are the maximal runs of such tokens.

    A window cannot average under the bound across many expensive tokens, so a span stops
    where the blob stops knowing the text, while one surprising token inside a long recalled
    passage does not break it.
    """

    min_tokens: int = 32
    max_mean_bits: float = 0.1


@dataclass(frozen=True)
class Span:
    first: int  # token index
    last: int  # token index, inclusive
    start: int  # byte offset
    end: int
    bits: float

    @property
    def tokens(self) -> int:
        return self.last - self.first + 1


def recalled_spans(ledger: Ledger, rule: RecallRule = RecallRule()) -> list[Span]:
    """Maximal runs the blob predicts almost perfectly (verbatim recall), left to right.

    Judged on -log2 p alone: the coder's per-segment flush says nothing about the blob.
    """
    bits = ledger.bits
    m, T = rule.min_tokens, len(bits)
    if m > T:
        return []
    running = np.concatenate([[0.0], np.cumsum(bits - rule.max_mean_bits)])
    starts = np.flatnonzero(running[m:] - running[:-m] < 0)  # windows [i, i+m) under the bound
    covered = np.zeros(T + 1, dtype=np.int64)
    np.add.at(covered, starts, 1)
    np.add.at(covered, starts + m, -1)
    inside = np.cumsum(covered[:T]) > 0  # (T,) token lies in some qualifying window
    edges = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(np.int8), [0]])))
    return [
        Span(
            int(a),
            int(b - 1),
            int(ledger.starts[a]),
            int(ledger.ends[b - 1]),
            float(bits[a:b].sum()),
        )
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]


def extraction_log2_probabilities(ledger: Ledger, window: int = 50) -> np.ndarray:
    """(T - window + 1,) log2 of each window's probability under the blob: -Σ bits over it."""
    if len(ledger.bits) < window:
        return np.zeros(0)
    cumulative = np.concatenate([[0.0], np.cumsum(ledger.bits)])
    return -(cumulative[window:] - cumulative[:-window])


# ---------------------------------------------------------------------------- grouping


def group_bits(
    ledger: Ledger, separator: bytes, reference: np.ndarray | None = None
) -> list[tuple[int, int, float, float]]:
    """(start, end, key bits, reference bits) per line (b"\\n") or paragraph (b"\\n\\n").

    A token belongs to the group its first byte falls in; the reference defaults to a pad's.
    """
    bounds, at = [], 0
    while at < len(ledger.work):
        cut = ledger.work.find(separator, at)
        end = len(ledger.work) if cut < 0 else cut + len(separator)
        bounds.append((at, end))
        at = end
    owner = np.searchsorted(np.array([b for _, b in bounds]), ledger.starts, side="right")
    key = np.bincount(owner, weights=ledger.key_bits, minlength=len(bounds))
    ref = pad_reference(ledger) if reference is None else reference
    held = np.bincount(owner, weights=ref, minlength=len(bounds))
    return [(a, b, float(key[i]), float(held[i])) for i, (a, b) in enumerate(bounds)]


# ---------------------------------------------------------------------------- report


class TokenRecords:
    """The ledger's tokens, made as they are read: a report of any size holds numpy arrays,
    never a dict per token. Iterating gives JSON-ready dicts; json_text() the same records
    already written as JSON, 3x faster than json.dumps of the dicts."""

    BLOCK = 4096  # columns become Python lists a block of tokens at a time

    def __init__(self, ledger: Ledger, reference: np.ndarray) -> None:
        self.ledger, self.reference = ledger, reference

    def __len__(self) -> int:
        return len(self.ledger.bits)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(end, key_bits, bits, reference_bits) of every token as (T,) arrays: for charts."""
        lg = self.ledger
        return lg.ends, lg.key_bits, lg.bits, self.reference

    def blocks(self, stop: int | None = None, size: int = BLOCK) -> Iterator[tuple[list, ...]]:
        """Per block of `size` tokens, up to token `stop`: (start, end, id, bits, key_bits,
        reference_bits, rank, top ids, top bits) as Python lists."""
        lg, key_bits = self.ledger, self.ledger.key_bits
        stop = len(lg.bits) if stop is None else min(stop, len(lg.bits))
        for a in range(0, stop, size):
            part = slice(a, min(a + size, stop))
            yield (
                lg.starts[part].tolist(),
                lg.ends[part].tolist(),
                lg.token_ids[part].tolist(),
                lg.bits[part].tolist(),
                key_bits[part].tolist(),
                self.reference[part].tolist(),
                lg.ranks[part].tolist(),
                lg.top_ids[part].tolist(),
                lg.top_bits[part].tolist(),
            )

    def vocabulary_text(self) -> dict[int, str]:
        """Token id -> its text, for the ids among the alternatives."""
        token_bytes = self.ledger.token_bytes
        return {
            t: token_bytes[t].decode("utf-8", errors="replace")
            for t in np.unique(self.ledger.top_ids).tolist()
        }

    def __iter__(self) -> Iterator[dict]:
        work, text = self.ledger.work, self.vocabulary_text()
        for columns in self.blocks():
            for start, end, token, bits, key, ref, rank, top_ids, top_bits in zip(
                *columns, strict=True
            ):
                yield {
                    "start": start,
                    "end": end,
                    "id": token,
                    "text": work[start:end].decode("utf-8", errors="replace"),
                    "bits": bits,
                    "key_bits": key,
                    "reference_bits": ref,
                    "rank": rank,
                    "top": [
                        {"id": t, "text": text[t], "bits": b}
                        for t, b in zip(top_ids, top_bits, strict=True)
                    ],
                }

    def json_text(self) -> Iterator[str]:
        """The records of __iter__ as json.dumps(ensure_ascii=False) writes them, ", "-joined,
        a block at a time: %-formatting with repr for floats (as json does), strings escaped
        by json's own encoder, each alternative's '{"id": …, "text": …, "bits": ' once."""
        work = self.ledger.work
        opening = {
            t: f'{{"id": {t}, "text": {_json_string(text)}, "bits": '
            for t, text in self.vocabulary_text().items()
        }
        record = (
            '{"start": %d, "end": %d, "id": %d, "text": %s, "bits": %r, "key_bits": %r, '
            '"reference_bits": %r, "rank": %d, "top": [%s}]}'
        )
        for columns in self.blocks():
            starts, ends = columns[0], columns[1]
            texts = [
                _json_string(work[a:b].decode("utf-8", errors="replace"))
                for a, b in zip(starts, ends, strict=True)
            ]
            yield ", ".join(
                record
                % (
                    start,
                    end,
                    token,
                    text,
                    bits,
                    key,
                    ref,
                    rank,
                    "}, ".join(
                        [opening[t] + repr(b) for t, b in zip(top_ids, top_bits, strict=True)]
                    ),
                )
                for start, end, token, text, bits, key, ref, rank, top_ids, top_bits in zip(
                    starts, ends, columns[2], texts, *columns[3:], strict=True
                )
            )


_json_string = json.encoder.encode_basestring  # type: ignore[attr-defined]  # "..." escaped


def write_json(result: dict, out: BinaryIO) -> None:
    """The report as JSON, its token list streamed a block of records at a time."""
    out.write(json_head(result))
    for i, text in enumerate(result["tokens"].json_text()):
        out.write((b", " if i else b"") + text.encode())
    out.write(JSON_END)


def json_head(result: dict) -> bytes:
    """The JSON report up to its first token record: every field but the tokens comes first."""
    head = {k: v for k, v in result.items() if k != "tokens"}
    return json.dumps(head, ensure_ascii=False)[:-1].encode() + b', "tokens": ['


JSON_END = b"]}"


def stream_json(
    out: BinaryIO,
    work: bytes,
    token_bytes: list[bytes],
    messages: Iterator[tuple],
    spool_dir: str | None = None,
) -> None:
    """write_json, fed while the ledger is made: ("rows", segment_tokens, rows(...), the
    reference bits of those tokens) in token order, then ("end", the report without its
    tokens). The records wait in a temporary file until the report's totals, which come
    first in the JSON, are known: an unnamed file in `spool_dir` (the output's folder, which
    has room for the output; /tmp may be a small RAM disk)."""
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        for message in messages:
            if message[0] == "rows":
                _, segment_tokens, arrays, reference = message
                part = ledger_of_rows(work, token_bytes, arrays, segment_tokens)
                for text in TokenRecords(part, reference).json_text():
                    spool.write((b", " if spool.tell() else b"") + text.encode())
            else:
                _, result = message
                out.write(json_head(result))
                spool.seek(0)
                shutil.copyfileobj(spool, out, 1 << 20)
                out.write(JSON_END)
                out.flush()


def report(
    ledger: Ledger,
    reference_name: str,
    reference: np.ndarray,
    rule: RecallRule = RecallRule(),
    window: int = 50,
) -> dict:
    """The whole ledger as plain data (the `--json` schema, docs/EXPLAIN.md); "tokens" is lazy."""
    vocab_text = lambda a, b: ledger.work[a:b].decode("utf-8", errors="replace")  # noqa: E731
    logp = extraction_log2_probabilities(ledger, window)
    spans = recalled_spans(ledger, rule)
    groups = lambda sep: [  # noqa: E731
        {"start": a, "end": b, "key_bits": k, "reference_bits": r}
        for a, b, k, r in group_bits(ledger, sep, reference)
    ]
    total_ref = float(reference.sum())
    blob_bits, ideal_bits = float(ledger.bits.sum()), float(ledger.coded_bits.sum())
    return {
        "format": "inert-explain/1",
        "segment_tokens": ledger.segment_tokens,
        "reference": {"name": reference_name, "bits": total_ref},
        "totals": {
            "bytes": len(ledger.work),
            "tokens": len(ledger.bits),
            "key_bits": ledger.total_key_bits,
            "ideal_bits": ideal_bits,
            "key_bits_per_byte": ledger.total_key_bits / max(len(ledger.work), 1),
            "reference_bits": total_ref,
            "held_bits": total_ref - ledger.total_key_bits,
            "held_fraction": (total_ref - ledger.total_key_bits) / total_ref if total_ref else 0.0,
            "blob_bits": blob_bits,
            "blob_held_bits": total_ref - blob_bits,
            "repeat_bits": blob_bits - ideal_bits,
            "stored": stores_as_is(ledger),
        },
        "recall": {
            "rule": {"min_tokens": rule.min_tokens, "max_mean_bits": rule.max_mean_bits},
            "spans": [
                {
                    "first_token": sp.first,
                    "last_token": sp.last,
                    "start": sp.start,
                    "end": sp.end,
                    "tokens": sp.tokens,
                    "bits": sp.bits,
                    "text": vocab_text(sp.start, sp.end),
                }
                for sp in spans
            ],
        },
        "extraction": {
            "window": window,
            "max_log2_probability": float(logp.max()) if len(logp) else None,
            "at_token": int(np.argmax(logp)) if len(logp) else None,
        },
        "lines": groups(b"\n"),
        "paragraphs": groups(b"\n\n"),
        "tokens": TokenRecords(ledger, reference),  # one dict per token, made as it is read
    }


def stores_as_is(ledger: Ledger) -> bool:
    """Whether `inert encode` would store this work as is: its model key would be larger."""
    n = len(ledger.work)
    model = KeyHeader(Kind.MODEL, bytes(8), n, (ledger.segment_tokens, len(ledger.bits), 2), 0)
    stored = KeyHeader(Kind.STORED, bytes(8), n, (), 0)
    return len(stored.to_bytes()) + n < len(model.to_bytes()) + ledger.total_key_bits / 8


def blob_reference(ledger: Ledger, other: Ledger) -> np.ndarray:
    """(T,) bits a second model's key spends on each of this ledger's tokens.

    The two blobs tokenize differently, so the other model's per-token cost is spread over
    its tokens' bytes and summed again over this ledger's token spans.
    """
    if other.work != ledger.work:
        raise ValueError("the two ledgers must describe the same work")
    lengths = (other.ends - other.starts).astype(np.float64)
    per_byte = np.repeat(other.key_bits / np.maximum(lengths, 1.0), (other.ends - other.starts))
    if len(ledger.starts) == 0:
        return np.zeros(0)
    return (
        np.add.reduceat(per_byte, ledger.starts) if len(per_byte) else np.zeros(len(ledger.starts))
    )
