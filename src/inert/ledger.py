"""A work and a model blob -> the ledger: what each token cost the key, and what the blob held.

For every token: its byte span in the work, the bits it costs in the key (-log2 p, exactly
as coded), its rank under the blob (1 = the blob's first choice) and the blob's top
alternatives. Per segment, what the key spends beyond Σ -log2 p — the range coder's flush
and the segment's length field — is charged to the segment's last token, so the tokens'
key bits sum to the key's payload bits exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codec import CodecSettings, LoadedModel, code_segment, segment_frequencies
from .engine import FREQ_TOTAL
from .keyfile import encode_uvarint


@dataclass
class Ledger:
    work: bytes
    token_ids: np.ndarray  # (T,) int64
    starts: np.ndarray  # (T,) int64 byte offset of each token in the work
    ends: np.ndarray  # (T,) int64
    bits: np.ndarray  # (T,) float64: -log2 p of the token under the blob
    flush_bits: np.ndarray  # (T,) float64: flush + length field, on each segment's last token
    ranks: np.ndarray  # (T,) int64: 1 + number of tokens the blob found strictly more likely
    top_ids: np.ndarray  # (T, k) int64: the blob's most likely tokens, best first
    top_bits: np.ndarray  # (T, k) float64: their -log2 p
    segment_tokens: int

    @property
    def key_bits(self) -> np.ndarray:
        """(T,) bits each token costs in the key's payload, flush included."""
        return self.bits + self.flush_bits

    @property
    def total_key_bits(self) -> float:
        return float(self.key_bits.sum())


def build_ledger(
    work: bytes, loaded: LoadedModel, settings: CodecSettings | None = None, top_k: int = 5
) -> Ledger:
    """The ledger of `work` against a model blob, segment by segment as the codec codes it."""
    settings = settings or CodecSettings()
    segment_tokens = min(settings.segment_tokens, loaded.model.config.max_seq_len)
    vocab = loaded.model.vocab
    tokens = vocab.tokenize(work)
    T = len(tokens)
    lengths = np.array([len(vocab.token_bytes[t]) for t in tokens], dtype=np.int64)
    ends = np.cumsum(lengths)
    bits = np.zeros(T)
    ranks = np.zeros(T, dtype=np.int64)
    k = min(top_k, loaded.model.config.vocab_size)
    top_ids = np.zeros((T, k), dtype=np.int64)
    top_bits = np.zeros((T, k))
    flush = np.zeros(T)
    for start, freq in segment_frequencies(
        loaded.engine, tokens, segment_tokens, settings.encode_batch
    ):
        rows, end = np.arange(len(freq)), start + len(freq)
        symbols = tokens[start:end]
        chosen = freq[rows, symbols]  # (n,) int64
        bits[start:end] = -np.log2(chosen / FREQ_TOTAL)
        words = code_segment(symbols, freq)
        flush[end - 1] = (
            32 * len(words) + 8 * len(encode_uvarint(len(words))) - bits[start:end].sum()
        )
        ranks[start:end] = 1 + np.sum(freq > chosen[:, None], axis=1)
        best = np.argsort(-freq, axis=1, kind="stable")[:, :k]  # ties: lower token id first
        top_ids[start:end] = best
        top_bits[start:end] = -np.log2(np.take_along_axis(freq, best, axis=1) / FREQ_TOTAL)
    return Ledger(
        work, tokens, ends - lengths, ends, bits, flush, ranks, top_ids, top_bits, segment_tokens
    )
