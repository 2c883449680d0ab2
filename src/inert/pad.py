"""Pad blobs: work XOR pad[offset : offset+len] -> key, and key XOR the same pad bytes -> work.

The literal thought experiment: the pad is uniform noise, the key alone is uniform noise,
and all of the work's information lives in the key. Never use the same pad bytes for two
works: the XOR of the two keys is the XOR of the two works (the two-time pad). Offsets are
chosen at random among the ranges this machine has not used yet (see Store.pad_uses).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import ChecksumError, InertError, KeyFormatError
from .keyfile import MAGIC, KeyHeader, Kind, check_payload_length, read_header
from .store import Blob, check_blob, open_blob
from .streams import CHUNK, Progress, atomic_output, expect_end, is_plain_text
from .xor import FileSource, xor_streams

# ---------------------------------------------------------------------------- making pads


def new_pad(path: str, size: int, *, force: bool = False, progress: Progress | None = None) -> Blob:
    """Write `size` bytes from the operating system's CSPRNG to `path`.

    The space is claimed first: a size the file system cannot hold fails before any writing.
    """
    digest = hashlib.sha256()
    with atomic_output(path, force=force, private=True, size=size) as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(CHUNK, remaining))
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
            if progress:
                progress(len(chunk))
    return Blob(Path(path), digest.digest(), size, Kind.PAD)


SAMPLE = 1 << 20  # bytes of a pad examined before it is used for new keys


def check_random(pad: Blob) -> None:
    """Refuse, for new keys, a "pad" that is not uniform random bytes.

    Any file that is not a model blob reads as a pad, so a mistyped --blob (a text, a key,
    an empty file) would silently become one, and a key made with a text leaks the work to
    anyone who guesses the text. Random bytes never compress and are almost never text:
    1 MiB of them compresses by nothing, 16 of them are printable UTF-8 with chance < 1e-6.
    """
    if pad.size == 0:
        raise InertError(
            f"{pad.path} is empty: a pad of 0 bytes cannot encode anything",
            hint="make a pad with: inert pad new PATH --size SIZE",
        )
    with open(pad.path, "rb") as f:
        sample = f.read(SAMPLE)
    if sample.startswith(MAGIC):
        with contextlib.suppress(KeyFormatError):
            read_header(io.BytesIO(sample))
            raise InertError(f"{pad.path} is an inert key, not a blob")
    looks_like_text = len(sample) >= 16 and is_plain_text(io.BytesIO(sample))
    compresses = len(sample) >= 256 and len(zlib.compress(sample, 1)) < 0.9 * len(sample)
    if looks_like_text or compresses:
        what = "is text" if looks_like_text else "compresses"
        raise InertError(
            f"{pad.path} is neither a model blob nor random bytes (it {what}): as a pad it would "
            "leak the work to anyone who can guess it",
            hint="make a pad with: inert pad new PATH --size SIZE",
        )


# ---------------------------------------------------------------------------- offsets


def choose_offset(
    pad_size: int,
    length: int,
    used: list[tuple[int, int]],
    randbelow: Callable[[int], int] = secrets.randbelow,
) -> int:
    """A uniformly random offset whose range [offset, offset+length) avoids every used range."""
    if length > pad_size:
        raise InertError(
            f"the pad ({pad_size} bytes) is smaller than the work ({length} bytes)",
            hint="make a larger pad: inert pad new PATH --size SIZE",
        )
    # Free gaps between used ranges, and how many start positions each offers.
    starts: list[tuple[int, int]] = []  # (first start, number of starts)
    cursor = 0
    for used_offset, used_length in [*sorted(used), (pad_size, 0)]:
        gap_end = min(used_offset, pad_size)
        if gap_end - cursor >= length:
            starts.append((cursor, gap_end - cursor - length + 1))
        cursor = max(cursor, used_offset + used_length)
    total = sum(n for _, n in starts)
    if total == 0:
        used_bytes = sum(n for _, n in used)
        raise InertError(
            f"the pad has no unused range of {length} bytes left "
            f"({used_bytes} of its {pad_size} bytes were already used by keys made here)",
            hint="make a fresh pad (inert pad new PATH --size SIZE), or pass --offset N to reuse bytes knowingly",
        )
    pick = randbelow(total)
    for first, n in starts:
        if pick < n:
            return first + pick
        pick -= n
    raise AssertionError("unreachable")


def overlaps(offset: int, length: int, used: list[tuple[int, int]]) -> bool:
    return any(offset < o + n and o < offset + length for o, n in used if n and length)


def collision_chance(pad_size: int, length: int) -> float:
    """Chance that another key of the same length, placed at random in this pad, overlaps this one.

    Keys made on other machines are not in this machine's record, so this is the risk left.
    """
    if length == 0:
        return 0.0
    return min(1.0, (2 * length - 1) / (pad_size - length + 1))


# ---------------------------------------------------------------------------- coding


def key_header(pad: Blob, work_length: int, offset: int) -> KeyHeader:
    """The header of a pad key, its checksum still 0 (the writer patches it in at the end)."""
    return KeyHeader(Kind.PAD, pad.id, work_length, (offset,), checksum=0)


def encode_stream(
    work: BinaryIO,
    work_length: int,
    pad: Blob,
    offset: int,
    out: BinaryIO,
    progress: Progress | None = None,
) -> KeyHeader:
    """Write the key of `work` to the seekable `out`; the checksum is patched in at the end."""
    if offset + work_length > pad.size:
        raise InertError(
            f"offset {offset} + work length {work_length} runs past the pad's {pad.size} bytes"
        )
    header = key_header(pad, work_length, offset)
    start = out.tell()
    out.write(header.to_bytes())
    with open(pad.path, "rb") as pad_file:
        pad_file.seek(offset)
        sources = [
            FileSource(work, work_length, "the work"),
            FileSource(pad_file, work_length, "the pad"),
        ]
        crc = xor_streams(sources, work_length, out, checksum_source=0, progress=progress)
    expect_end(work, "the work (it grew while being read)")
    return header.with_checksum(crc, out, start)


def decode_stream(
    key: BinaryIO, header: KeyHeader, pad: Blob, out: BinaryIO, progress: Progress | None = None
) -> None:
    """Write the work to `out`; raise if the key is damaged or the checksum does not match."""
    check_blob(header, pad)
    offset = header.param("offset")
    if offset + header.work_length > pad.size:
        raise KeyFormatError(
            f"corrupt key: its range runs past the end of the pad ({pad.size} bytes)"
        )
    with open(pad.path, "rb") as pad_file:
        pad_file.seek(offset)
        sources = [
            FileSource(key, header.payload_length, "the key's payload", KeyFormatError),
            FileSource(pad_file, header.work_length, "the pad"),
        ]
        crc = xor_streams(sources, header.work_length, out, progress=progress)
    expect_end(key, "the key", KeyFormatError)
    if crc != header.checksum:
        raise ChecksumError(
            "checksum mismatch: the key is damaged, or was made with different pad bytes"
        )


# ---------------------------------------------------------------------------- one-shots


def encode(work: bytes, pad_path: str, offset: int = 0) -> bytes:
    """The key of `work` under the pad at `pad_path`, using the pad bytes from `offset` on."""
    out = io.BytesIO()
    encode_stream(io.BytesIO(work), len(work), open_blob(pad_path), offset, out)
    return out.getvalue()


def decode(key: bytes, pad_path: str) -> bytes:
    stream = io.BytesIO(key)
    header = read_header(stream)
    if header.kind is not Kind.PAD:
        raise InertError(f"this is a {header.kind.label} key, not a pad key")
    check_payload_length(header, len(key) - stream.tell())
    out = io.BytesIO()
    decode_stream(stream, header, open_blob(pad_path), out)
    return out.getvalue()
