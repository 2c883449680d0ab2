"""Model keys: round trips, size near the ideal, imagine, and loud failures."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tinymodel import tiny_model_bytes

from inert import codec
from inert.errors import ChecksumError, InertError, KeyFormatError
from inert.keyfile import Kind, parse_key
from inert.store import open_blob

TEXT = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()
SMALL = codec.CodecSettings(segment_tokens=16, decode_lanes=4)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_any_work_round_trips(tiny, work: bytes) -> None:
    key, _ = codec.encode_work(work, tiny, SMALL)
    assert codec.decode_work(key, tiny) == work


def test_segments_decode_in_lockstep_batches(tiny) -> None:
    work = TEXT * 3
    settings = codec.CodecSettings(segment_tokens=20, codec=1)  # lanes are codec 1's freedom
    key, stats = codec.model_key(work, tiny, settings)
    assert stats.segments > 10
    header, payload = parse_key(key)
    out = io.BytesIO()
    stream = io.BytesIO(bytes(payload))
    codec.decode_key(stream, header, tiny, out, lanes=3)  # groups of 3 lanes, last group short
    assert out.getvalue() == work


def test_payload_is_within_the_ideal_plus_flush(tiny) -> None:
    work = TEXT * 5
    _, stats = codec.encode_work(work, tiny, codec.CodecSettings(segment_tokens=64))
    assert 8 * stats.payload_bytes <= stats.ideal_bits * 1.001 + 64 * stats.segments


def test_a_100_kb_work_round_trips(tiny) -> None:
    work = (TEXT * 200)[:100_000] + bytes(range(256))
    key, stats = codec.encode_work(work, tiny, codec.CodecSettings(segment_tokens=64))
    assert 8 * stats.payload_bytes <= stats.ideal_bits * 1.001 + 64 * stats.segments
    assert codec.decode_work(key, tiny) == work


@pytest.mark.parametrize("mixed, alone", [(2, 1), (4, 3)])
def test_the_history_codecs_use_the_works_repeats_across_groups(tiny, mixed, alone) -> None:
    work = TEXT * 4  # copies 2 to 4 repeat the first
    tiny_segments = codec.CodecSettings(segment_tokens=4, codec=mixed)  # > 256 segments
    key2, stats2 = codec.model_key(work, tiny, tiny_segments)
    key1, _ = codec.model_key(work, tiny, replace(tiny_segments, codec=alone))
    assert stats2.segments > 256  # the later copies lie in the second group
    assert parse_key(key2)[0].param("codec") == mixed
    assert parse_key(key1)[0].param("codec") == alone
    assert len(key2) < 0.9 * len(key1)
    assert codec.decode_work(key2, tiny) == work
    assert codec.decode_work(key1, tiny) == work


def test_unknown_codec_is_refused(tiny) -> None:
    key, _ = codec.model_key(b"some text", tiny, codec.CodecSettings(codec=1))
    header, payload = parse_key(key)
    params = (*header.params[:2], 7)
    forged = replace(header, params=params).to_bytes() + bytes(payload)
    with pytest.raises(KeyFormatError, match="codec version 7"):
        codec.decode_work(forged, tiny)


def test_imagined_tokens_encode_back_to_the_random_bits(tiny) -> None:
    words = np.random.default_rng(7).integers(0, 2**32, size=40, dtype=np.uint32)
    tokens = codec.imagine_tokens(tiny.engine, words, 30, np.zeros(0, dtype=np.int64))
    # imagine reads the model alone, as codec 1 codes
    settings = codec.CodecSettings(segment_tokens=64, codec=1)
    segments, _ = codec.encode_tokens(tiny.engine, tokens, settings)
    (reencoded,) = segments
    assert len(reencoded) >= 2
    assert np.array_equal(reencoded[:-1], words[: len(reencoded) - 1])


def test_imagine_is_seeded(tiny) -> None:
    a = codec.imagine(tiny, 20, seed=3, prompt=b"The quick")
    assert a.startswith(b"The quick") and a == codec.imagine(tiny, 20, seed=3, prompt=b"The quick")
    assert a != codec.imagine(tiny, 20, seed=4, prompt=b"The quick")


def test_wrong_model_is_refused(tiny, tmp_path: Path) -> None:
    other = tmp_path / "other.blob"
    other.write_bytes(tiny_model_bytes(seed=99))
    key, _ = codec.model_key(b"some text", tiny)
    with pytest.raises(InertError, match="wrong blob"):
        codec.decode_work(key, codec.load_model(open_blob(other)))


def test_flipped_payload_bit_fails_the_checksum(tiny) -> None:
    key = bytearray(codec.encode_work(TEXT, tiny)[0])
    key[-9] ^= 0x04
    with pytest.raises(ChecksumError):
        codec.decode_work(bytes(key), tiny)


@pytest.mark.parametrize("version", codec.CODECS)
def test_truncated_key_is_an_error_that_says_so(tiny, version) -> None:
    key = codec.model_key(TEXT, tiny, codec.CodecSettings(codec=version))[0]
    # codecs 1-2 state each segment's length; the one stream of 3-4 has none: its checksum
    error = KeyFormatError if version < 3 else ChecksumError
    for cut in (1, 3, len(key) // 2):
        with pytest.raises(error, match="truncated"):
            codec.decode_work(key[:-cut], tiny)


def test_incompressible_work_is_stored_with_only_a_header(tiny) -> None:
    work = np.random.default_rng(3).bytes(3000)
    key, stats = codec.encode_work(work, tiny)
    header, payload = parse_key(key)
    assert stats.stored and header.kind is Kind.STORED and bytes(payload) == work
    assert not stats.model_ran  # decided by a zstd -1 probe, before any model work
    assert len(key) - len(work) <= 20
    assert codec.decode_work(key, tiny) == work
    damaged = bytearray(key)
    damaged[-1] ^= 1
    with pytest.raises(ChecksumError):
        codec.decode_work(bytes(damaged), tiny)


@pytest.mark.parametrize("count", [200, pytest.param(5_000, marks=pytest.mark.slow)])
def test_mutated_model_keys_decode_to_the_work_or_fail_cleanly(tiny, count: int) -> None:
    """Damage of any kind (flips, overwrites, inserts, cuts) never yields wrong bytes and
    never anything but inert's own errors: no internal error reaches a user."""
    import random

    from test_keyfile import mutate

    work = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()[:120]
    key = codec.model_key(work, tiny, codec.CodecSettings(segment_tokens=8))[0]
    rng = random.Random(count)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(count):
        damaged = mutate(key, rng)
        try:
            decoded = codec.decode_work(damaged, tiny)
        except InertError:
            outcomes["refused"] += 1
        else:
            assert decoded == work  # e.g. a flip in the flush's unused bits
            outcomes["decoded"] += 1
    assert outcomes["refused"] > count * 0.8


def test_the_engine_s_look_ahead_passes_errors_and_stops_with_its_consumer() -> None:
    """codec.ahead: items in order, the producer's exception raised in the consumer, and a
    consumer that stops early (an error, Ctrl-C) leaves no producer thread running."""
    import threading

    before = set(threading.enumerate())  # other tests' threads are not this test's business
    assert list(codec.ahead(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise ValueError("engine failed")

    with pytest.raises(ValueError, match="engine failed"):
        list(codec.ahead(failing()))
    produced = []

    def endless():
        for i in range(10**9):
            produced.append(i)
            yield i

    items = codec.ahead(endless())
    assert next(items) == 0
    items.close()  # the consumer stops
    assert not [t for t in set(threading.enumerate()) - before if t.name == "inert-engine"]
    assert len(produced) < 10  # the helper stopped at its next item, not at the end


def test_binary_work_is_compressed_classically_without_the_model(tiny) -> None:
    import struct

    work = b"".join(struct.pack("<IHxxd", i, i % 7, i / 3) for i in range(2000))  # NULs
    key, stats = codec.encode_work(work, tiny)
    header, _ = parse_key(key)
    assert header.kind is Kind.CLASSICAL and not stats.model_ran
    assert len(key) < len(work) // 2
    assert codec.decode_work(key, None) == work


def test_no_key_is_larger_than_the_best_classical_payload_or_the_work(tiny) -> None:
    from inert import classical

    for work in (TEXT[:3000], TEXT[:3000] * 6, np.random.default_rng(4).bytes(5000)):
        key, _ = codec.encode_work(work, tiny)
        header_bytes = 24
        assert len(key) <= min(len(classical.smallest(work)[1]), len(work)) + header_bytes
        assert codec.decode_work(key, tiny) == work


def test_a_damaged_classical_key_is_an_error(tiny) -> None:
    work = TEXT[:3000] * 6  # the tiny random model loses to classical methods on it
    key = bytearray(codec.encode_work(work, tiny)[0])
    assert parse_key(bytes(key))[0].kind is Kind.CLASSICAL
    key[40] ^= 0x55
    with pytest.raises(ChecksumError, match="damaged"):
        codec.decode_work(bytes(key), None)


def test_codec_5_round_trips_across_groups_and_learns_from_repeats(tiny) -> None:
    """Over 256 segments: the second group mixes with the weights and history the first
    left, in the encoder as in the decoder; the repeats cost far less than in codec 3."""
    work = TEXT * 4
    settings = codec.CodecSettings(segment_tokens=4, codec=5, smallest=False)
    key, stats = codec.model_key(work, tiny, settings)
    assert stats.segments > codec.GROUP
    assert codec.decode_work(key, tiny) == work
    alone = codec.model_key(work, tiny, replace(settings, codec=3))[0]
    assert len(key) < 0.8 * len(alone)


def test_long_works_default_to_codec_5_with_inert_s_own_blobs(tiny) -> None:
    assert codec.default_settings(tiny, codec.LONG_WORK - 1).codec == 6
    assert codec.default_settings(tiny, codec.LONG_WORK).codec == 5
