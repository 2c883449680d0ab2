"""The XOR loop's output files: exact bytes after any header, direct I/O or not."""

from __future__ import annotations

import errno
import io
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from inert import xor
from inert.xor import FileSource, xor_streams

HEADERS = [0, 19, 4095, 4096, 5000]
LENGTHS = [0, 1, 4095, 4097, 3 * 65536 + 123]


def run_loop(path: Path, header: bytes, a: bytes, b: bytes) -> tuple[int, int]:
    """Write header + (a XOR b) to `path` the way the commands do; (crc, file position)."""
    with open(path, "w+b") as out:
        out.write(header)
        sources = [FileSource(io.BytesIO(a), len(a), "a"), FileSource(io.BytesIO(b), len(b), "b")]
        crc = xor_streams(sources, len(a), out, checksum_source=0)
        position = out.tell()
    return crc, position


def expected(header: bytes, a: bytes, b: bytes) -> bytes:
    return header + (np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).tobytes()


@pytest.mark.parametrize("header_length", HEADERS)
@pytest.mark.parametrize("length", LENGTHS)
def test_output_is_header_then_xor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header_length: int, length: int
) -> None:
    monkeypatch.setattr(xor, "CHUNK", 65536)  # several chunks, a partial last one
    rng = np.random.default_rng(length + header_length)
    header, a, b = (rng.bytes(n) for n in (header_length, length, length))
    crc, position = run_loop(tmp_path / "out", header, a, b)
    assert (tmp_path / "out").read_bytes() == expected(header, a, b)
    assert position == header_length + length  # callers patch the header, then append nothing
    assert crc == zlib.crc32(a)


def test_without_direct_io_the_bytes_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    header, a, b = b"head", os.urandom(70001), os.urandom(70001)
    run_loop(tmp_path / "out", header, a, b)
    assert (tmp_path / "out").read_bytes() == expected(header, a, b)


@pytest.mark.parametrize("header_length", [0, 23])  # aligned writes, staged writes
def test_a_file_system_that_refuses_direct_writes_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header_length: int
) -> None:
    """open(O_DIRECT) succeeds but the first write says EINVAL: the rest goes buffered."""
    real_pwrite = os.pwrite
    direct_fds: set[int] = set()
    real_open = os.open

    def tracking_open(path, flags, *args):
        fd = real_open(path, flags, *args)
        if flags & getattr(os, "O_DIRECT", 0):
            direct_fds.add(fd)
        return fd

    def refusing_pwrite(fd, data, offset):
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "pwrite", refusing_pwrite)
    monkeypatch.setattr(xor, "CHUNK", 65536)
    header, a, b = b"x" * header_length, os.urandom(200_000), os.urandom(200_000)
    run_loop(tmp_path / "out", header, a, b)
    assert (tmp_path / "out").read_bytes() == expected(header, a, b)


def test_a_full_disk_is_an_error_not_a_short_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    monkeypatch.setattr(xor, "CHUNK", 65536)
    with pytest.raises(OSError) as raised:
        run_loop(tmp_path / "out", b"h", os.urandom(100_000), os.urandom(100_000))
    assert raised.value.errno == errno.ENOSPC
