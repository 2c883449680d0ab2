"""Shares: all N restore the work; any N-1 are uniform noise; broken sets fail loudly."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inert import shares
from inert.errors import ChecksumError, InertError, KeyFormatError
from inert.keyfile import parse_key


@settings(max_examples=100, deadline=None)
@given(work=st.binary(max_size=2048), count=st.integers(2, 5), data=st.data())
def test_any_work_round_trips_in_any_order(work: bytes, count: int, data: st.DataObject) -> None:
    parts = shares.split(work, count)
    assert len(parts) == count
    assert shares.join(data.draw(st.permutations(parts))) == work


def chi_square(data: bytes) -> float:
    """Pearson's statistic for byte frequencies against the uniform distribution (255 dof)."""
    counts = Counter(data)
    expected = len(data) / 256
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(256))


# For 255 degrees of freedom, P(chi2 > 400) is about 1e-9: uniform bytes never fail this.
UNIFORM_LIMIT = 400.0


def test_any_n_minus_one_shares_look_uniform_on_a_non_random_work() -> None:
    work = b"It was the best of times, it was the worst of times. " * 4000  # ~212 KB of prose
    assert chi_square(work) > 100 * UNIFORM_LIMIT  # the test can tell structure from noise
    count = 4
    payloads = [bytes(parse_key(s)[1]) for s in shares.split(work, count)]
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
