"""Works -> their size under classical compressors: the anchors inert is measured against."""

from __future__ import annotations

import bz2
import lzma
from collections.abc import Callable

import brotli
import pyppmd
import zstandard


def xz(work: bytes) -> bytes:
    """xz -9e, its dictionary no larger than the work: the same size, far less memory."""
    dict_size = max(4096, min(len(work), 64 << 20))
    lzma2 = {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size}
    return lzma.compress(work, format=lzma.FORMAT_XZ, filters=[lzma2])


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "xz -9e": xz,
    "zstd -19": lambda d: zstandard.ZstdCompressor(level=19).compress(d),
    "brotli -11": lambda d: brotli.compress(d, quality=11),
    "bzip2 -9": lambda d: bz2.compress(d, 9),
    "ppmd -o6": lambda d: pyppmd.compress(d, max_order=6, mem_size=16 << 20),
}


def sizes(work: bytes) -> dict[str, int]:
    """Compressed size in bytes of `work` under each classical compressor."""
    return {name: len(compress(work)) for name, compress in COMPRESSORS.items()}


def best(work: bytes) -> tuple[str, int]:
    """The classical compressor that makes `work` smallest, and that size."""
    name, size = min(sizes(work).items(), key=lambda item: item[1])
    return name, size


# ---------------------------------------------------------------------------- classical keys
# A key of kind "classical" holds one of these payloads (docs/FORMAT.md, kind 6): the work
# compressed as the anchors do it, without their containers (inert's header names the
# method and holds the length and CRC-32), so a key is never larger than the best of them.


def _lzma2_filters(work_length: int) -> list[dict]:
    dict_size = max(4096, min(work_length, 64 << 20))  # as xz(): the decoder derives it
    return [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size}]


def _unlzma2(payload: bytes, work_length: int) -> bytes:
    out = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_lzma2_filters(work_length))
    return out.decompress(payload, max_length=work_length + 1)


def _unzstd(payload: bytes, work_length: int) -> bytes:
    reader = zstandard.ZstdDecompressor().decompressobj()
    return reader.decompress(payload)[: work_length + 1]


def _unbrotli(payload: bytes, work_length: int) -> bytes:
    return brotli.Decompressor().process(payload, output_buffer_limit=work_length + 1)


def _unbzip2(payload: bytes, work_length: int) -> bytes:
    return bz2.BZ2Decompressor().decompress(payload, max_length=work_length + 1)


PPMD = {"max_order": 6, "mem_size": 16 << 20}

# method id (written into the key) -> (name, compress, decompress(payload, work length))
METHODS: dict[int, tuple[str, Callable[[bytes], bytes], Callable[[bytes, int], bytes]]] = {
    1: (
        "lzma2 (xz -9e)",
        lambda d: lzma.compress(d, lzma.FORMAT_RAW, filters=_lzma2_filters(len(d))),
        _unlzma2,
    ),
    2: (
        "zstd -19",
        lambda d: zstandard.ZstdCompressor(level=19, write_content_size=False).compress(d),
        _unzstd,
    ),
    3: ("brotli -11", lambda d: brotli.compress(d, quality=11), _unbrotli),
    4: ("bzip2 -9", lambda d: bz2.compress(d, 9), _unbzip2),
    5: (
        "ppmd -o6",
        lambda d: pyppmd.compress(d, **PPMD),
        lambda p, n: pyppmd.decompress(p, **PPMD),
    ),
}


def smallest(work: bytes) -> tuple[int, bytes]:
    """The method whose payload for `work` is smallest (the first, on ties), and the payload."""
    payloads = {method: compress(work) for method, (_, compress, _) in METHODS.items()}
    method = min(payloads, key=lambda m: len(payloads[m]))
    return method, payloads[method]


def decompress(method: int, payload: bytes, work_length: int) -> bytes:
    """The work of a classical payload; at most work_length + 1 bytes (a longer result is
    cut: the caller's length check rejects it). Raises ValueError if it does not decode."""
    try:
        return METHODS[method][2](payload, work_length)
    except (lzma.LZMAError, zstandard.ZstdError, brotli.error, OSError, EOFError) as e:
        raise ValueError(str(e)) from None
    except Exception as e:  # pyppmd raises its own and plain ones
        raise ValueError(str(e) or type(e).__name__) from None


def probe_ratio(work: bytes) -> float:
    """zstd -1's output over the work's size: a few milliseconds per MB tell incompressible
    data (>= 0.97: random or already compressed) before a model runs over it."""
    if not work:
        return 1.0
    return len(zstandard.ZstdCompressor(level=1).compress(work)) / len(work)


# bytes no text holds (C0 controls but tab, newline, vertical tab, form feed, return and
# escape; DEL): a work with more than 1 % of them is binary, for which a text model only
# costs time (an ELF executable: 1.6x the best classical key)
_BINARY = bytes([*range(0, 9), *range(14, 27), *range(28, 32), 127])


def looks_binary(work: bytes) -> bool:
    if not work:
        return False
    sample = work[: 1 << 20]
    return len(sample) - len(sample.translate(None, _BINARY)) > len(sample) // 100
