"""The key format: headers round-trip, and every malformed key raises KeyFormatError."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inert.errors import KeyFormatError
from inert.keyfile import (
    MAGIC,
    KeyHeader,
    Kind,
    encode_uvarint,
    pack_segments,
    parse_key,
    read_header,
)

u63 = st.integers(0, 2**63 - 1)
pad_headers = st.builds(
    lambda blob_id, length, offset, crc: KeyHeader(Kind.PAD, blob_id, length, (offset,), crc),
    st.binary(min_size=8, max_size=8),
    u63,
    u63,
    st.integers(0, 2**32 - 1),
)
share_headers = st.integers(2, 300).flatmap(
    lambda count: st.builds(
        lambda blob_id, length, index, crc: KeyHeader(
            Kind.SHARE, blob_id, length, (index, count), crc
        ),
        st.binary(min_size=8, max_size=8),
        u63,
        st.integers(0, count - 1),
        st.integers(0, 2**32 - 1),
    )
)


@given(st.one_of(pad_headers, share_headers))
def test_header_round_trips(header: KeyHeader) -> None:
    import io

    stream = io.BytesIO(header.to_bytes() + b"payload")
    assert read_header(stream) == header
    assert stream.read() == b"payload"


def small_key(work_length: int = 5) -> bytes:
    header = KeyHeader(Kind.PAD, bytes(range(8)), work_length, (1000,), 0xDEADBEEF)
    return header.to_bytes() + b"x" * work_length


def test_header_of_a_short_work_is_small() -> None:
    # magic 2 + version 1 + kind 1 + blob id 8 + length 2 + offset 3 + checksum 4
    header = KeyHeader(Kind.PAD, bytes(8), 400, (70_000,), 0)
    assert len(header.to_bytes()) == 21


def test_varints_are_minimal_leb128() -> None:
    assert encode_uvarint(0) == b"\x00"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(300) == b"\xac\x02"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"\x89", "truncated key"),
        (b"PK\x03\x04rest", "wrong magic"),
        (MAGIC + b"\x02\x01", "version 2 is not supported"),
        (MAGIC + b"\x01\x09" + bytes(8), "unknown blob kind 9"),
        (MAGIC + b"\x01\x02" + bytes(8) + b"\x05\x00\x05\x01" + bytes(4), "segment length 0"),
        (
            MAGIC + b"\x01\x02" + bytes(8) + b"\x05\x10\x06\x01" + bytes(4),
            "token count does not fit",
        ),
        (
            MAGIC + b"\x01\x02" + bytes(8) + b"\x05\x10\x02\x01" + bytes(4) + b"\x01",
            "truncated key",
        ),
        (
            MAGIC + b"\x01\x02" + bytes(8) + b"\x05\x10\x02\x01" + bytes(4) + b"\x00\x00",
            "trailing garbage",
        ),
        (
            MAGIC + b"\x01\x01" + bytes(8) + b"\x85\x00" + b"\x00" + bytes(4),
            "not in minimal varint form",
        ),
        (MAGIC + b"\x01\x01" + bytes(8) + b"\xff" * 10, "longer than 9 bytes"),
        (MAGIC + b"\x01\x03" + bytes(8) + b"\x00\x03\x03" + bytes(4), "share index 3 is not below"),
        (MAGIC + b"\x01\x03" + bytes(8) + b"\x00\x00\x01" + bytes(4), "at least 2 shares"),
        (MAGIC + b"\x01\x04" + b"\x01" * 8 + b"\x00" + bytes(4), "names no blob"),
        (small_key()[:-1], "truncated key: payload has 4 of 5 bytes"),
        (small_key() + b"!", "1 bytes of trailing garbage"),
    ],
)
def test_malformed_keys_are_rejected_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        parse_key(data)


def test_every_truncation_is_rejected() -> None:
    key = small_key()
    for cut in range(len(key)):
        with pytest.raises(KeyFormatError, match=r"truncated|empty"):
            parse_key(key[:cut])


def mutate(key: bytes, rng: random.Random) -> bytes:
    data = bytearray(key)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[pos % len(data)] ^= 1 << rng.randrange(8)  # flip a bit
        elif op == 1 and data:
            data[pos % len(data)] = rng.randrange(256)  # overwrite a byte
        elif op == 2:
            data.insert(pos, rng.randrange(256))
        elif op == 3 and data:
            del data[pos % len(data) : pos % len(data) + rng.randint(1, 8)]
        else:
            data = data[:pos]  # truncate
    return bytes(data)


@pytest.mark.parametrize(
    "count", [10_000, pytest.param(100_000, marks=pytest.mark.slow)], ids=["10k", "100k"]
)
def test_fuzz_mutated_keys_never_crash(count: int) -> None:
    rng = random.Random(20261125 + count)
    seeds = [
        small_key(0),
        small_key(5),
        small_key(300),
        KeyHeader(Kind.SHARE, bytes(8), 17, (1, 3), 5).to_bytes() + bytes(17),
        KeyHeader(Kind.SEED_SHARE, bytes(8), 2**30, (0, 2), 5).to_bytes() + bytes(32),
        KeyHeader(Kind.STORED, bytes(8), 6, (), 1).to_bytes() + b"stored",
        KeyHeader(Kind.MODEL, bytes(8), 300, (4, 9, 1), 7).to_bytes()
        + pack_segments([np.arange(n, dtype=np.uint32) for n in (3, 1, 2)]),
        KeyHeader(Kind.PAD, b"\xff" * 8, 2**40, (2**62,), 2**32 - 1).to_bytes(),
        KeyHeader(Kind.MODEL, bytes(8), 300, (4, 9, 4), 7).to_bytes() + b"\x13\x7f",
        KeyHeader(Kind.CLASSICAL, bytes(8), 40, (3,), 7).to_bytes() + b"\x0b\x09",
    ]
    outcomes = {"parsed": 0, "rejected": 0}
    for _ in range(count):
        data = mutate(rng.choice(seeds), rng)
        try:
            header, payload = parse_key(data)
        except KeyFormatError:
            outcomes["rejected"] += 1
        else:
            variable = (Kind.MODEL, Kind.CLASSICAL)  # payloads of their own lengths
            assert header.kind in variable or len(payload) == header.payload_length
            outcomes["parsed"] += 1
    assert outcomes["rejected"] > count // 2  # the mutations really do hit the reader's checks
    assert (
        outcomes["parsed"] > count // 100
    )  # and some (e.g. flipped payload bits) stay well-formed


@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_key_format_error(data: bytes) -> None:
    with contextlib.suppress(KeyFormatError):
        parse_key(data)
