"""Shares: all N restore the work; any N-1 are uniform noise; broken sets fail loudly."""

from __future__ import annotations

import itertools
import zlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inert import shares
from inert.errors import ChecksumError, InertError, KeyFormatError
from inert.keyfile import SEED_SIZE, KeyHeader, Kind, parse_key


@settings(max_examples=100, deadline=None)
@given(work=st.binary(max_size=2048), count=st.integers(2, 5), full=st.booleans(), data=st.data())
def test_any_work_round_trips_in_any_order(
    work: bytes, count: int, full: bool, data: st.DataObject
) -> None:
    parts = shares.split(work, count, full=full)
    assert len(parts) == count
    assert shares.join(data.draw(st.permutations(parts))) == work


def expanded(share: bytes) -> tuple[KeyHeader, bytes]:
    """A share's header and the bytes its payload stands for (a seed share's keystream)."""
    header, payload = parse_key(share)
    if header.kind is Kind.SEED_SHARE:
        stream = bytearray(header.work_length)
        shares.Keystream(bytes(payload)).fill(memoryview(stream))
        return header, bytes(stream)
    return header, bytes(payload)


def test_seed_shares_are_tiny_and_one_share_holds_the_work() -> None:
    work = b"x" * 100_000
    seeded = shares.split(work, 3)
    assert [parse_key(s)[0].kind for s in seeded] == [Kind.SEED_SHARE] * 2 + [Kind.SHARE]
    assert [len(s) for s in seeded[:2]] == [len(seeded[0])] * 2 and len(seeded[0]) < 64
    assert len(seeded[2]) == len(shares.split(work, 3, full=True)[0]) > len(work)


def test_a_seed_share_is_exactly_its_keystream_written_out() -> None:
    """FORMAT.md: a seed share stands for AES-256-CTR keystream from counter block 0."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    parts = shares.split(bytes(range(256)) * 3, 2)
    header, payload = parse_key(parts[0])
    counter_blocks = b"".join(i.to_bytes(16, "big") for i in range(48))
    ecb = Cipher(algorithms.AES(bytes(payload)), modes.ECB()).encryptor()
    assert expanded(parts[0])[1] == ecb.update(counter_blocks)
    # the same share written out in full (kind 3) joins with the rest of its set
    full = KeyHeader(Kind.SHARE, header.blob_id, header.work_length, header.params, header.checksum)
    assert shares.join([full.to_bytes() + expanded(parts[0])[1], parts[1]]) == bytes(range(256)) * 3


def test_a_set_of_seeds_alone_is_the_xor_of_their_keystreams() -> None:
    """No writer makes one, but the format allows it: the work is then pure keystream."""
    seeds = [bytes([1]) * 32, bytes([2]) * 32]
    streams = [bytearray(1000), bytearray(1000)]
    for seed, stream in zip(seeds, streams, strict=True):
        shares.Keystream(seed).fill(memoryview(stream))
    work = bytes(a ^ b for a, b in zip(*streams, strict=True))
    crcs = [7, zlib.crc32(work) ^ 7]
    keys = [
        KeyHeader(Kind.SEED_SHARE, b"set-id!!", 1000, (i, 2), crcs[i]).to_bytes() + seeds[i]
        for i in range(2)
    ]
    assert shares.join(keys) == work


def test_damaged_or_truncated_seed_share_fails_loudly() -> None:
    parts = shares.split(b"hello world", 2)
    damaged = bytearray(parts[0])
    damaged[-SEED_SIZE] ^= 1
    with pytest.raises(ChecksumError):
        shares.join([bytes(damaged), parts[1]])
    with pytest.raises(KeyFormatError, match="truncated"):
        shares.join([parts[0][:-1], parts[1]])
    with pytest.raises(KeyFormatError, match="trailing garbage"):
        shares.join([parts[0] + b"\0", parts[1]])


def chi_square(data: bytes) -> float:
    """Pearson's statistic for byte frequencies against the uniform distribution (255 dof)."""
    counts = Counter(data)
    expected = len(data) / 256
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(256))


# For 255 degrees of freedom, P(chi2 > 400) is about 1e-9: uniform bytes never fail this.
UNIFORM_LIMIT = 400.0


@pytest.mark.parametrize("full", [False, True], ids=["seed", "full"])
def test_any_n_minus_one_shares_look_uniform_on_a_non_random_work(full: bool) -> None:
    work = b"It was the best of times, it was the worst of times. " * 4000  # ~212 KB of prose
    assert chi_square(work) > 100 * UNIFORM_LIMIT  # the test can tell structure from noise
    count = 4
    payloads = [expanded(s)[1] for s in shares.split(work, count, full=full)]
    for subset in itertools.combinations(range(count), count - 1):
        for i in subset:
            assert chi_square(payloads[i]) < UNIFORM_LIMIT, f"share {i + 1} is not uniform"
        # and their XOR (all that N-1 shares jointly give) is uniform too
        combined = bytearray(len(work))
        for i in subset:
            combined = bytearray(a ^ b for a, b in zip(combined, payloads[i], strict=True))
        assert chi_square(bytes(combined)) < UNIFORM_LIMIT


def test_shares_headers_reveal_only_the_length() -> None:
    a = [parse_key(s)[0] for s in shares.split(b"A" * 100, 3)]
    b = [parse_key(s)[0] for s in shares.split(b"B" * 100, 3)]
    assert {h.work_length for h in a + b} == {100}
    assert len({h.checksum for h in a + b}) == 6  # checksums are random shares, not the CRC


def test_missing_share_is_named() -> None:
    parts = shares.split(b"hello", 3)
    with pytest.raises(InertError, match="missing share 2 of 3"):
        shares.join([parts[0], parts[2]])


def test_shares_of_different_sets_do_not_mix() -> None:
    a, b = shares.split(b"hello", 2), shares.split(b"hello", 2)
    with pytest.raises(InertError, match="belongs to share set"):
        shares.join([a[0], b[1]])


def test_duplicate_share_is_refused() -> None:
    parts = shares.split(b"hello", 2)
    with pytest.raises(InertError, match="are the same share"):
        shares.join([parts[0], parts[0], parts[1]])


def test_damaged_share_fails_the_checksum() -> None:
    parts = shares.split(b"hello world", 2)
    damaged = bytearray(parts[1])
    damaged[-1] ^= 1
    with pytest.raises(ChecksumError):
        shares.join([parts[0], bytes(damaged)])


def test_truncated_share_is_a_format_error() -> None:
    parts = shares.split(b"hello world", 2)
    with pytest.raises(KeyFormatError, match="truncated"):
        shares.join([parts[0], parts[1][:-2]])


def test_share_count_is_bounded() -> None:
    with pytest.raises(InertError, match="between 2 and 255"):
        shares.split(b"x", 1)
