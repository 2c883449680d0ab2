"""Shares: one work -> N share keys, any N-1 of which are uniform noise; all N -> the work.

Shares 1..N-1 are random bytes; share N is the work XOR all of them. The work's CRC is
split the same way (each share carries a random-looking 4-byte share of it), so no N-1
shares reveal anything of the work but its length.

The random bytes are AES-256-CTR keystream under a fresh key from the OS CSPRNG per share:
computationally indistinguishable from the OS's own output (itself a ChaCha20 stream on
Linux), at ~6 GB/s instead of ~0.35 GB/s. A keystream is entirely determined by its key, so
by default shares 1..N-1 are *seed shares* that store the 32-byte key instead of the stream
it stands for: the same shares, the same security, and split writes one work-sized file
instead of N (`full=True` writes every share out in full).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import ChecksumError, InertError, KeyFormatError
from .keyfile import SEED_SIZE, KeyHeader, Kind, parse_key, read_header
from .streams import CHUNK, Progress, expect_end
from .xor import FileSource, Source, xor_streams

MAX_SHARES = 255


class Keystream:
    """AES-256-CTR keystream (counter block 0, 1, ...) under `key`, or a fresh key from the CSPRNG."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = os.urandom(SEED_SIZE) if key is None else key
        self._cipher = Cipher(algorithms.AES(self.key), modes.CTR(bytes(16))).encryptor()
        self._zeros = bytes(CHUNK)

    def fill(self, buffer: memoryview) -> None:
        """Write the next len(buffer) bytes of the keystream into buffer (a full share)."""
        for start in range(0, len(buffer), CHUNK):
            part = buffer[start : start + CHUNK]
            self._cipher.update_into(memoryview(self._zeros)[: len(part)], part)

    def xor_into(self, buffer: memoryview) -> None:
        """XOR the next len(buffer) bytes into buffer: CTR encryption, in place, in one pass."""
        self._cipher.update_into(buffer, buffer)


def share_sizes(work_length: int, count: int, full: bool = False) -> list[int]:
    """The size in bytes of each share file split_stream writes, known before it starts."""
    sizes = []
    for i in range(count):
        kind = Kind.SHARE if full or i == count - 1 else Kind.SEED_SHARE
        header = KeyHeader(kind, bytes(8), work_length, (i, count), 0)
        sizes.append(
            len(header.to_bytes()) + (SEED_SIZE if kind is Kind.SEED_SHARE else work_length)
        )
    return sizes


def split_stream(
    work: BinaryIO,
    work_length: int,
    outs: Sequence[BinaryIO],
    progress: Progress | None = None,
    full: bool = False,
) -> list[KeyHeader]:
    """Write one share key to each of `outs` (seekable); returns their headers.

    Shares 1..N-1 are seed shares unless `full`; share N is always the work XOR the others.
    """
    count = len(outs)
    if not 2 <= count <= MAX_SHARES:
        raise InertError(f"the number of shares must be between 2 and {MAX_SHARES}, not {count}")
    set_id = os.urandom(8)
    randoms = [Keystream() for _ in range(count - 1)]
    crc_shares = [int.from_bytes(os.urandom(4), "little") for _ in range(count - 1)]
    random_kind = Kind.SHARE if full else Kind.SEED_SHARE
    headers = [
        KeyHeader(random_kind, set_id, work_length, (i, count), c) for i, c in enumerate(crc_shares)
    ]
    headers.append(KeyHeader(Kind.SHARE, set_id, work_length, (count - 1, count), 0))  # CRC: below
    starts = [out.tell() for out in outs]
    for out, header in zip(outs, headers, strict=True):
        out.write(header.to_bytes())
    if not full:
        for out, random in zip(outs, randoms, strict=False):
            out.write(random.key)

    work_source = FileSource(work, work_length, "the work")
    if full:  # share i+1 <- random source i+1, written out beside the last share
        sources, keystreams = [work_source, *randoms], []
        copies = [(i + 1, out) for i, out in enumerate(outs[:-1])]
    else:
        sources, keystreams, copies = [work_source], randoms, []
    crc = xor_streams(sources, work_length, outs[-1], copies, 0, progress, keystreams=keystreams)
    expect_end(work, "the work (it grew while being read)")

    last_crc = crc
    for c in crc_shares:
        last_crc ^= c
    headers[-1] = headers[-1].with_checksum(last_crc, outs[-1], starts[-1])
    return headers


def check_share_set(headers: Sequence[KeyHeader], names: Sequence[str]) -> list[int]:
    """Validate that the headers form one complete share set; return them ordered by index."""
    for header, name in zip(headers, names, strict=True):
        if not header.kind.is_share:
            raise InertError(f"{name} is a {header.kind.label} key, not a share")
    first = headers[0]
    for header, name in zip(headers, names, strict=True):
        if header.blob_id != first.blob_id:
            raise InertError(
                f"{name} belongs to share set {header.blob_id_hex}, {names[0]} to {first.blob_id_hex}"
            )
        if header.param("count") != first.param("count") or header.work_length != first.work_length:
            raise KeyFormatError(
                f"{name} disagrees with {names[0]} about the share set: one of them is corrupt"
            )
    count = first.param("count")
    by_index: dict[int, int] = {}
    for i, (header, name) in enumerate(zip(headers, names, strict=True)):
        index = header.param("index")
        if index in by_index:
            raise InertError(
                f"{name} and {names[by_index[index]]} are the same share ({index + 1} of {count})"
            )
        by_index[index] = i
    missing = [str(i + 1) for i in range(count) if i not in by_index]
    if missing:
        raise InertError(
            f"the share set needs all {count} shares; missing share {', '.join(missing)} of {count}",
            hint="pass every share file of the set to inert join",
        )
    return [by_index[i] for i in range(count)]


def join_stream(
    shares: Sequence[BinaryIO],
    headers: Sequence[KeyHeader],
    names: Sequence[str],
    out: BinaryIO,
    progress: Progress | None = None,
) -> None:
    """XOR the payloads of a whole share set into `out`; verify the work's checksum.

    Each stream is positioned at its payload; a seed share's is read here and expanded.
    """
    order = check_share_set(headers, names)
    length = headers[0].work_length
    sources: list[Source] = []
    keystreams: list[Keystream] = []
    for i in order:
        if headers[i].kind is Kind.SEED_SHARE:
            seed = shares[i].read(SEED_SIZE)
            if len(seed) != SEED_SIZE:
                raise KeyFormatError(
                    f"truncated key: {names[i]}'s seed has {len(seed)} of 32 bytes"
                )
            keystreams.append(Keystream(seed))
        else:
            sources.append(FileSource(shares[i], length, f"{names[i]}'s payload", KeyFormatError))
    crc = xor_streams(sources, length, out, progress=progress, keystreams=keystreams)
    for i in order:
        expect_end(shares[i], names[i], KeyFormatError)
    expected = 0
    for header in headers:
        expected ^= header.checksum
    if crc != expected:
        raise ChecksumError(
            "checksum mismatch: a share is damaged, or the shares do not belong together"
        )


# ---------------------------------------------------------------------------- one-shots


def split(work: bytes, count: int, full: bool = False) -> list[bytes]:
    outs = [io.BytesIO() for _ in range(count)]
    split_stream(io.BytesIO(work), len(work), outs, full=full)
    return [o.getvalue() for o in outs]


def join(shares: Sequence[bytes]) -> bytes:
    if not shares:
        raise InertError("no shares given")
    names = [f"share #{i + 1}" for i in range(len(shares))]
    headers = [parse_key(s)[0] for s in shares]
    streams = [io.BytesIO(s) for s in shares]
    for stream in streams:
        read_header(stream)
    out = io.BytesIO()
    join_stream(streams, headers, names, out)
    return out.getvalue()
