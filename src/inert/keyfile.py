"""Key files: header fields <-> bytes. The one writer and the one reader of docs/FORMAT.md.

Layout of a v1 key (all integers little-endian; uvarint = unsigned LEB128, minimal form):

    magic        2 bytes   0x89 'K'
    version      1 byte    1
    kind         1 byte    1 pad, 2 model, 3 share, 4 stored, 5 seed share, 6 classical
    blob id      8 bytes   first 8 bytes of SHA-256(blob); a share set's random id for shares
    work length  uvarint
    params       uvarints  pad: offset; model: segment_tokens, token_count, codec;
                           share, seed share: index, count; stored: none;
                           classical: method
    checksum     4 bytes   CRC-32 of the work (shares: an XOR share of it)
    payload      the rest  pad, share and stored: exactly `work length` bytes;
                           seed share: a 32-byte AES-256 key (its payload is that keystream);
                           model: codecs 1-2 a uvarint word count per segment, then the
                           words (u32 LE); codecs 3-4 the range coder's bytes;
                           classical: the work compressed by the method

Everything else in the package reads and writes keys through this module.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import BinaryIO

import numpy as np

from .errors import KeyFormatError

MAGIC = b"\x89K"  # 0x89 is not ASCII and cannot start UTF-8 text: a key never passes as text
VERSION = 1
BLOB_ID_SIZE = 8  # a 64-bit prefix of SHA-256 names a blob unambiguously in any real store
CHECKSUM_SIZE = 4
MAX_VARINT_BYTES = 9  # values below 2**63; more is never needed for lengths or offsets
SEED_SIZE = 32  # a seed share's payload: the AES-256 key of the keystream it stands for


class Kind(IntEnum):
    PAD = 1
    MODEL = 2
    SHARE = 3
    STORED = 4  # the work as is: what a model key falls back to when coding would enlarge it
    SEED_SHARE = 5  # a share whose payload is AES-256-CTR keystream, stored as its 32-byte key
    CLASSICAL = 6  # the work compressed by a classical method, when that beats the model

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")

    @property
    def is_share(self) -> bool:
        return self in (Kind.SHARE, Kind.SEED_SHARE)


# Number of uvarint parameters each kind carries, in the order they are written.
PARAM_NAMES: dict[Kind, tuple[str, ...]] = {
    Kind.PAD: ("offset",),
    Kind.MODEL: ("segment_tokens", "token_count", "codec"),
    Kind.SHARE: ("index", "count"),
    Kind.STORED: (),
    Kind.SEED_SHARE: ("index", "count"),
    Kind.CLASSICAL: ("method",),
}
# classical methods a key may name: 1 LZMA2, 2 zstd, 3 brotli, 4 bzip2, 5 PPMd var. I
CLASSICAL_METHODS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class KeyHeader:
    kind: Kind
    blob_id: bytes  # (8,) SHA-256 prefix of the blob; for a share, the share set's id
    work_length: int  # bytes of the work this key restores
    params: tuple[int, ...]  # kind-specific, see PARAM_NAMES
    checksum: int  # CRC-32 of the work; for a share, its XOR share of that CRC

    def __post_init__(self) -> None:
        if self.kind not in PARAM_NAMES:
            raise KeyFormatError(f"blob kind {self.kind.label} has no v1 key format yet")
        if len(self.blob_id) != BLOB_ID_SIZE:
            raise KeyFormatError(f"blob id must be {BLOB_ID_SIZE} bytes, got {len(self.blob_id)}")
        if len(self.params) != len(PARAM_NAMES[self.kind]):
            raise KeyFormatError(
                f"a {self.kind.label} key has {len(PARAM_NAMES[self.kind])} parameters"
            )
        for value in (self.work_length, *self.params):
            if not 0 <= value < 2**63:
                raise KeyFormatError(f"value {value} is out of the range a key can hold")
        if not 0 <= self.checksum < 2**32:
            raise KeyFormatError("checksum must be a 32-bit unsigned integer")
        if self.kind is Kind.MODEL:
            segment_tokens, token_count, codec = self.params
            if segment_tokens < 1:
                raise KeyFormatError("corrupt key: segment length 0")
            if token_count > self.work_length or (token_count == 0) != (self.work_length == 0):
                raise KeyFormatError("corrupt key: token count does not fit the work length")
            if codec < 1:
                raise KeyFormatError("corrupt key: codec version 0")
        if self.kind in (Kind.STORED, Kind.CLASSICAL) and self.blob_id != bytes(BLOB_ID_SIZE):
            raise KeyFormatError(
                f"corrupt key: a {self.kind.label} key names no blob (its blob id is all zeros)"
            )
        if self.kind is Kind.CLASSICAL and self.params[0] not in CLASSICAL_METHODS:
            raise KeyFormatError(
                f"key uses classical method {self.params[0]}, unknown to this inert",
                hint="a newer inert may decode it: pip install -U inert",
            )
        if self.kind.is_share:
            index, count = self.params
            if count < 2:
                raise KeyFormatError(f"a share set needs at least 2 shares, this key says {count}")
            if index >= count:
                raise KeyFormatError(f"share index {index} is not below the share count {count}")

    def param(self, name: str) -> int:
        return self.params[PARAM_NAMES[self.kind].index(name)]

    @property
    def payload_length(self) -> int | None:
        """Pad, share and stored payloads are the work's length, byte for byte; a model's or
        a classical one's varies."""
        if self.kind is Kind.SEED_SHARE:
            return SEED_SIZE
        return None if self.kind in (Kind.MODEL, Kind.CLASSICAL) else self.work_length

    @property
    def segment_count(self) -> int:
        segment_tokens, token_count, _ = self.params
        return -(-token_count // segment_tokens)

    @property
    def blob_id_hex(self) -> str:
        return self.blob_id.hex()

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                MAGIC,
                bytes([VERSION, self.kind]),
                self.blob_id,
                *(encode_uvarint(v) for v in (self.work_length, *self.params)),
                struct.pack("<I", self.checksum),
            ]
        )

    def with_checksum(self, checksum: int, out: BinaryIO, header_start: int) -> KeyHeader:
        """Patch the checksum into a header already written at `header_start` of the seekable `out`.

        Writers stream the work once, so they learn its CRC only after writing the payload.
        """
        end = out.tell()
        out.seek(header_start + len(self.to_bytes()) - CHECKSUM_SIZE)
        out.write(struct.pack("<I", checksum))
        out.seek(end)
        return replace(self, checksum=checksum)


# ---------------------------------------------------------------------------- varints


def encode_uvarint(value: int) -> bytes:
    if not 0 <= value < 2**63:
        raise ValueError(f"uvarint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise KeyFormatError(f"truncated key: it ends inside the {what}")
    return data


def _read_uvarint(stream: BinaryIO, what: str) -> int:
    value = 0
    for i in range(MAX_VARINT_BYTES):
        byte = _read_exact(stream, 1, what)[0]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise KeyFormatError(f"corrupt key: the {what} is not in minimal varint form")
            return value
    raise KeyFormatError(f"corrupt key: the {what} is longer than {MAX_VARINT_BYTES} bytes")


# ---------------------------------------------------------------------------- reader


def read_header(stream: BinaryIO) -> KeyHeader:
    """Read and validate a header, leaving `stream` at the first payload byte."""
    magic = stream.read(len(MAGIC))
    if magic != MAGIC:
        if len(magic) < len(MAGIC) and MAGIC.startswith(magic):
            raise KeyFormatError(
                "truncated key: it ends inside the magic bytes"
                if magic
                else "empty file: not an inert key"
            )
        raise KeyFormatError("not an inert key (wrong magic bytes)")
    version = _read_exact(stream, 1, "version")[0]
    if version != VERSION:
        raise KeyFormatError(
            f"key format version {version} is not supported (this inert reads version {VERSION})",
            hint="a newer inert may read it: pip install -U inert",
        )
    kind_byte = _read_exact(stream, 1, "blob kind")[0]
    try:
        kind = Kind(kind_byte)
    except ValueError:
        raise KeyFormatError(f"corrupt key: unknown blob kind {kind_byte}") from None
    blob_id = _read_exact(stream, BLOB_ID_SIZE, "blob id")
    work_length = _read_uvarint(stream, "work length")
    params = tuple(_read_uvarint(stream, name) for name in PARAM_NAMES[kind])
    (checksum,) = struct.unpack("<I", _read_exact(stream, CHECKSUM_SIZE, "checksum"))
    return KeyHeader(kind, blob_id, work_length, params, checksum)


def parse_key(data: bytes) -> tuple[KeyHeader, memoryview]:
    """Parse a whole key held in memory: its header and its payload, exact length enforced."""
    import io

    stream = io.BytesIO(data)
    header = read_header(stream)
    payload = memoryview(data)[stream.tell() :]
    if header.kind is Kind.MODEL and header.params[2] in STREAM_CODECS:
        check_stream(payload)
    elif header.kind is Kind.MODEL:
        unpack_segments(header, payload)
    elif header.kind is Kind.CLASSICAL:
        pass  # as long as the method's stream: decompressing it checks it
    else:
        check_payload_length(header, len(payload))
    return header, payload


# ---------------------------------------------------------------------------- model payloads


STREAM_CODECS = (3, 4, 5, 6)  # model codecs whose payload is one stream of inert's range coder


def check_stream(payload: bytes | memoryview) -> bytes:
    """A codec 3/4 payload, the coder's bytes: its writer drops trailing zero bytes (a decoder
    reads zeros past the end), so one that ends in a zero byte is not a key inert wrote."""
    if payload[-1:] == b"\0":
        raise KeyFormatError("corrupt key: the payload ends with a zero byte (not canonical)")
    return bytes(payload)


def pack_segments(segments: list[np.ndarray]) -> bytes:
    """Model payload: each segment's length in 32-bit words, then all the words, little-endian."""
    lengths = b"".join(encode_uvarint(len(words)) for words in segments)
    body = np.concatenate(segments).astype("<u4").tobytes() if segments else b""
    return lengths + body


def unpack_segments(header: KeyHeader, payload: bytes | memoryview) -> list[np.ndarray]:
    """The words (uint32) of each segment of a model key; exact length enforced."""
    import io

    stream = io.BytesIO(payload)
    lengths = [_read_uvarint(stream, "segment lengths") for _ in range(header.segment_count)]
    body = memoryview(payload)[stream.tell() :]
    check_payload_length(header, len(body), 4 * sum(lengths))
    words = np.frombuffer(body, dtype="<u4").astype(np.uint32)
    bounds = np.cumsum([0, *lengths])
    return [words[a:b] for a, b in itertools.pairwise(bounds)]


def check_payload_length(header: KeyHeader, actual: int, expected: int | None = None) -> None:
    expected = header.payload_length if expected is None else expected
    assert expected is not None
    if actual < expected:
        raise KeyFormatError(f"truncated key: payload has {actual} of {expected} bytes")
    if actual > expected:
        raise KeyFormatError(
            f"corrupt key: {actual - expected} bytes of trailing garbage after the payload"
        )
