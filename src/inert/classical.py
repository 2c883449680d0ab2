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
