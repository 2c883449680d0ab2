"""inert's range coder against a second implementation written from docs/FORMAT.md alone.

The reference below keeps the code's bottom as one exact integer over all bytes written (no
64-bit window, no carry handling): what the spec defines, computed the slowest way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inert import codec, rangecoder
from inert.keyfile import parse_key

TOTAL = 2**31


def reference_encode(symbols: list[tuple[int, int, bool]]) -> bytes:
    low, width, shifts = 0, 2**64 - 1, 0  # the interval [low, low + width) at 2^-(64 + 8 shifts)
    for start, size, last in symbols:
        r = width // TOTAL
        low += start * r
        width = width - start * r if last else size * r
        while width < 2**56:
            low, width, shifts = low << 8, width << 8, shifts + 1
    for k in range(9):  # the fewest final bytes naming a point of the interval
        unit = 2 ** (64 - 8 * k)
        point = -(-low // unit) * unit
        if point < low + width:
            break
    return (point >> (64 - 8 * k)).to_bytes(shifts + k, "big").rstrip(b"\0")


def reference_decode(data: bytes, tables: list[np.ndarray]) -> list[int]:
    low, width, shifts, out = 0, 2**64 - 1, 0, []
    for freq in tables:
        value = int.from_bytes(data[: 8 + shifts].ljust(8 + shifts, b"\0"), "big")
        r = width // TOTAL
        target = min((value - low) // r, TOTAL - 1)
        bounds = np.concatenate([[0], np.cumsum(freq)])
        symbol = int(np.searchsorted(bounds, target, side="right")) - 1
        start, size, last = int(bounds[symbol]), int(freq[symbol]), symbol == len(freq) - 1
        low += start * r
        width = width - start * r if last else size * r
        while width < 2**56:
            low, width, shifts = low << 8, width << 8, shifts + 1
        out.append(symbol)
    return out


def random_tables(rng: np.random.Generator, n: int, vocab: int, sharp: float) -> np.ndarray:
    weights = rng.random((n, vocab)) ** sharp
    freq = 1 + (weights / weights.sum(axis=1, keepdims=True) * (TOTAL - vocab)).astype(np.int64)
    freq[np.arange(n), rng.integers(0, vocab, n)] += TOTAL - freq.sum(axis=1)
    return freq  # (n, V) int64, rows summing to TOTAL, every entry >= 1


@pytest.mark.parametrize("vocab, sharp", [(2, 1.0), (5, 30.0), (300, 4.0), (70000, 12.0)])
def test_the_coder_matches_the_spec_bit_for_bit(vocab: int, sharp: float) -> None:
    rng = np.random.default_rng(vocab)
    for n in (0, 1, 7, 300):
        freq = random_tables(rng, n, vocab, sharp)
        symbols = np.array([rng.choice(vocab, p=row / TOTAL) for row in freq], dtype=np.int64)
        if n:
            symbols[-1] = vocab - 1  # the last symbol, which takes the range's remainder
        start, size = rangecoder.intervals(freq, symbols)
        encoder = rangecoder.Encoder()
        encoder.encode_all(start.tolist(), size.tolist(), (symbols == vocab - 1).tolist())
        code = encoder.finish()
        expected = reference_encode(
            list(zip(start.tolist(), size.tolist(), symbols == vocab - 1, strict=True))
        )
        assert code == expected
        assert reference_decode(code, list(freq)) == symbols.tolist()
        decoder, cumulative = rangecoder.Decoder(code), np.cumsum(freq, axis=1)
        for row, symbol in zip(cumulative, symbols, strict=True):
            found, lo, width = rangecoder.find(row, decoder.target())
            decoder.consume(lo, width, found == vocab - 1)
            assert found == symbol
        # Σ -log2 p plus at most a byte of flush and one of rounding
        ideal = float(np.sum(rangecoder.TOTAL_BITS - np.log2(size)))
        assert 8 * len(code) <= ideal + 16


def test_every_byte_string_decodes() -> None:
    rng = np.random.default_rng(5)
    freq = random_tables(rng, 200, 40, 8.0)
    for data in (b"", b"\xff" * 40, rng.bytes(64)):
        decoder, cumulative = rangecoder.Decoder(data), np.cumsum(freq, axis=1)
        for row in cumulative:
            symbol, lo, width = rangecoder.find(row, decoder.target())
            assert 0 <= symbol < 40 and width == row[symbol] - lo
            decoder.consume(lo, width, symbol == 39)


@pytest.mark.parametrize("version", [3, 4, 5])
def test_a_model_keys_payload_is_the_spec_coders_output(tiny, version: int) -> None:
    work = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()[:3000]
    settings = codec.CodecSettings(segment_tokens=32, codec=version)
    key, _ = codec.model_key(work, tiny, settings)
    tokens = tiny.model.vocab.tokenize(work)
    starts, sizes = codec.stream_intervals(tiny.engine, tokens, settings)
    order = codec.decode_order(len(tokens), 32)
    last = tokens[order] == tiny.model.config.vocab_size - 1
    symbols = list(zip(starts[order].tolist(), sizes[order].tolist(), last.tolist(), strict=True))
    assert bytes(parse_key(key)[1]) == reference_encode(symbols)
