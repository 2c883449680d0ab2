"""Pad blobs: round trips, offsets that never reuse pad bytes, and loud failures."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inert import pad
from inert.errors import ChecksumError, InertError, KeyFormatError
from inert.keyfile import parse_key
from inert.store import open_blob


@pytest.fixture(scope="module")
def shared_pad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pads") / "shared.pad"
    path.write_bytes(random.randbytes(1 << 16))
    return path


@settings(max_examples=200, deadline=None)
@given(work=st.binary(max_size=4096), offset=st.integers(0, 1 << 15))
def test_any_work_round_trips(shared_pad: Path, work: bytes, offset: int) -> None:
    pad_path = shared_pad  # read-only across examples
    key = pad.encode(work, str(pad_path), offset)
    header, _ = parse_key(key)
    assert (header.work_length, header.param("offset")) == (len(work), offset)
    assert pad.decode(key, str(pad_path)) == work


def test_key_is_work_xor_pad_bytes(pad_path: Path) -> None:
    work = b"attack at dawn"
    _, payload = parse_key(pad.encode(work, str(pad_path), 100))
    pad_bytes = pad_path.read_bytes()[100 : 100 + len(work)]
    assert bytes(payload) == bytes(w ^ p for w, p in zip(work, pad_bytes, strict=True))


def test_streams_in_chunks_larger_than_one_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("inert.xor.CHUNK", 1000)  # many chunks, including a partial last one
    pad_file = tmp_path / "p.pad"
    pad_file.write_bytes(random.randbytes(50_000))
    work = random.randbytes(12_345)
    assert pad.decode(pad.encode(work, str(pad_file), 7), str(pad_file)) == work


def test_wrong_pad_is_named_before_any_work(pad_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pad"
    other.write_bytes(random.randbytes(1 << 16))
    key = pad.encode(b"secret", str(pad_path))
    with pytest.raises(InertError, match="wrong blob: the key was made with blob"):
        pad.decode(key, str(other))


def test_flipped_payload_bit_fails_the_checksum(pad_path: Path) -> None:
    key = bytearray(pad.encode(b"a work of some length", str(pad_path)))
    key[-3] ^= 0x10
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        pad.decode(bytes(key), str(pad_path))


def test_truncated_key_is_a_format_error(pad_path: Path) -> None:
    key = pad.encode(b"a work of some length", str(pad_path))
    with pytest.raises(KeyFormatError, match="truncated"):
        pad.decode(key[:-1], str(pad_path))


def test_work_that_grows_while_read_is_refused(pad_path: Path) -> None:
    out = io.BytesIO()
    with pytest.raises(InertError, match="grew while being read"):
        pad.encode_stream(io.BytesIO(b"0123456789"), 5, open_blob(pad_path), 0, out)


def test_offsets_avoid_every_used_range() -> None:
    used = [(0, 10), (30, 10), (60, 40)]  # pad of 100: free gaps [10, 30) and [40, 60)
    for seed in range(200):
        offset = pad.choose_offset(100, 15, used, random.Random(seed).randrange)
        assert offset in range(10, 16) or offset in range(40, 46)
        assert not pad.overlaps(offset, 15, used)


def test_offsets_are_spread_over_all_free_starts() -> None:
    seen = {pad.choose_offset(100, 91, [], random.Random(s).randrange) for s in range(500)}
    assert seen == set(range(10))


def test_exhausted_pad_refuses_instead_of_reusing_bytes() -> None:
    with pytest.raises(InertError, match="no unused range of 21 bytes"):
        pad.choose_offset(100, 21, [(20, 20), (60, 20)])


def test_pad_smaller_than_work_is_refused() -> None:
    with pytest.raises(InertError, match="smaller than the work"):
        pad.choose_offset(10, 11, [])


def test_collision_chance_grows_with_the_work() -> None:
    assert pad.collision_chance(1 << 30, 1000) < 1e-5
    assert pad.collision_chance(1000, 400) > 0.5
    assert pad.collision_chance(1000, 0) == 0.0


def test_new_pad_is_uniform_random(tmp_path: Path) -> None:
    blob = pad.new_pad(str(tmp_path / "n.pad"), 1 << 16)
    data = (tmp_path / "n.pad").read_bytes()
    assert len(data) == blob.size == 1 << 16
    assert blob.sha256 == open_blob(tmp_path / "n.pad").sha256
    assert len(set(data)) == 256
