"""Byte sources -> their XOR (and copies) -> output files, with the CRC-32 of the work.

The one loop behind pad encode/decode and share split/join:

    encode   work ^ pad          -> key payload         checksum of the work (source 0)
    decode   key ^ pad           -> work                checksum of the XOR
    split    work ^ k1 ^ ... kk  -> last share           checksum of the work
             (--full: ri -> share i as well)
    join     s1 ^ ... ^ sn       -> work                checksum of the XOR
             (a seed share's keystream is XORed in place: AES-CTR encrypts the buffer)

Constant memory: four slots of one buffer per stream, reused for the whole work. The
checksum and each output file's writes run on helper threads (zlib, OpenSSL and the
kernel release the GIL), so reading, XOR, hashing and writing overlap on a multi-core
machine; a slot is refilled only after every job that reads it has finished. Outputs go
to the device with O_DIRECT where the file system allows it (see _Sink).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Protocol

import numpy as np

from .errors import InertError
from .streams import CHUNK, Progress

SLOTS = 4  # slot k%4 is filled while earlier chunks are hashed and written (2 measured slower)
BUFFER_BUDGET = 64 << 20  # total bytes of buffers; the chunk shrinks when there are many streams
WRITEBACK_LAG = 16 << 20  # bytes of an output left in the page cache before writeback starts


class Source(Protocol):
    def fill(self, buffer: memoryview, /) -> None:
        """Write exactly len(buffer) next bytes of the source into buffer."""


class Keystream(Protocol):
    def xor_into(self, buffer: memoryview, /) -> None:
        """XOR the next len(buffer) bytes of the keystream into buffer, in place."""


class FileSource:
    """Exactly `length` bytes of a binary stream; ending early raises `error`."""

    def __init__(
        self, stream: BinaryIO, length: int, name: str, error: type[InertError] = InertError
    ):
        self.stream, self.length, self.name, self.error = stream, length, name, error
        self.done = 0

    def fill(self, buffer: memoryview) -> None:
        filled = 0
        while filled < len(buffer):
            n = self.stream.readinto(buffer[filled:])
            if not n:
                raise self.error(
                    f"{self.name} ended early: {self.done + filled} of {self.length} bytes"
                )
            filled += n
        self.done += filled


ALIGN = 4096  # O_DIRECT needs buffer, file offset and length aligned to the logical block


def aligned_empty(size: int) -> np.ndarray:
    """An uninitialised uint8 buffer whose first byte is ALIGN-aligned (O_DIRECT can write it)."""
    raw = np.empty(size + ALIGN, np.uint8)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip : skip + size]


class _Sink:
    """An output file written around the page cache where the file system allows it.

    Buffered writes cost more CPU than anything else in these loops (the kernel copies
    every byte into freshly allocated cache pages: 0.4-0.8 s of CPU per GiB on the
    reference machine) and the fsync before the rename then waits for all of it.
    O_DIRECT hands aligned blocks straight to the device: measured 0.33 s and 0.05 s of
    CPU per GiB, durable on return. The output's bytes pass through an aligned staging
    buffer (the key header is already in the file, so payload chunks are not aligned);
    the last partial block goes through the ordinary file. Where O_DIRECT is refused
    (tmpfs, pipes, other systems), the writes are buffered and posix_fadvise(DONTNEED)
    starts writeback every WRITEBACK_LAG bytes, so the final fsync has little to wait for.
    """

    def __init__(self, file: BinaryIO, chunk: int) -> None:
        self.file = file
        self.fd: int | None = None  # the file's own descriptor, when it is a regular file
        self.direct: int | None = None  # a second descriptor on it, opened with O_DIRECT
        self.synced_to = 0
        try:
            fd = file.fileno()
            if stat.S_ISREG(os.fstat(fd).st_mode):
                self.fd = fd
        except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
            return
        if self.fd is None or not hasattr(os, "O_DIRECT"):
            return
        file.flush()
        written = file.tell()  # the key header, already in the file
        self.position = written - written % ALIGN  # file offset of staging[0]
        try:
            self.direct = os.open(f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_DIRECT)
            head = os.pread(self.fd, written - self.position, self.position)
        except OSError:
            self._close_direct()
            return
        self.staging = aligned_empty(chunk + 2 * ALIGN)
        self.staging[: len(head)] = np.frombuffer(head, np.uint8)
        self.filled = len(head)

    def write(self, data: np.ndarray) -> None:
        if self.direct is not None:
            self._write_direct(data)
            return
        self.file.write(data)
        if self.fd is None or not hasattr(os, "posix_fadvise"):
            return
        settled = self.file.tell() - WRITEBACK_LAG
        if settled - self.synced_to >= WRITEBACK_LAG:
            self.file.flush()
            os.posix_fadvise(
                self.fd, self.synced_to, settled - self.synced_to, os.POSIX_FADV_DONTNEED
            )
            self.synced_to = settled

    @property
    def lead(self) -> int:
        """Bytes staged before the first payload byte: payload chunks that start this many
        bytes short of a whole chunk end on block boundaries and go straight to the device."""
        return self.filled if self.direct is not None else 0

    def _write_direct(self, data: np.ndarray) -> None:
        if self.filled == 0 and data.ctypes.data % ALIGN == 0:  # aligned: no staging copy
            whole = len(data) - len(data) % ALIGN
            if whole and not self._pwrite_direct(data[:whole]):
                self.write(data[whole:])
                return
            data = data[whole:]
        while len(data):
            take = min(len(data), len(self.staging) - self.filled)
            self.staging[self.filled : self.filled + take] = data[:take]
            self.filled += take
            data = data[take:]
            whole = self.filled - self.filled % ALIGN
            if not whole:
                continue
            if not self._pwrite_direct(self.staging[:whole], staged=True):
                self.write(data)
                return
            rest = self.filled - whole
            self.staging[:rest] = self.staging[whole : self.filled]
            self.filled = rest

    def _pwrite_direct(self, block: np.ndarray, staged: bool = False) -> bool:
        """Write aligned bytes at the current position; False if it fell back to buffered I/O."""
        try:
            _pwrite_all(self.direct, block, self.position)
        except OSError as e:
            if e.errno != errno.EINVAL:  # disk full and the like: the caller reports it
                raise
            if not staged:  # the block is not in the staging buffer: write it the old way
                assert self.fd is not None
                _pwrite_all(self.fd, self.staging[: self.filled], self.position)
                self.position += self.filled
                self.filled = 0
                _pwrite_all(self.fd, block, self.position)
                self.position += len(block)
            self._fall_back()  # opened, but the file system will not write direct after all
            return False
        self.position += len(block)
        return True

    def _fall_back(self) -> None:
        """Continue with buffered writes: flush what is staged through the ordinary file."""
        assert self.fd is not None
        _pwrite_all(self.fd, self.staging[: self.filled], self.position)
        self._close_direct()
        self.file.seek(self.position + self.filled)

    def finish(self) -> None:
        """Write the staged tail; leave the file object at the end of what was written."""
        if self.direct is not None:
            self._fall_back()

    def _close_direct(self) -> None:
        if self.direct is not None:
            os.close(self.direct)
            self.direct = None


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view, offset)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[n:], offset + n


class _Jobs:
    """One helper thread running jobs in submission order; remembers which chunk each job reads."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: deque[tuple[int, Future[None]]] = deque()

    def submit(self, chunk: int, fn: Callable[..., object], *args: object) -> None:
        self.pending.append((chunk, self.pool.submit(fn, *args)))

    def finish_through(self, chunk: int) -> None:
        """Wait for every job of chunks <= chunk; re-raises a job's exception (e.g. disk full)."""
        while self.pending and self.pending[0][0] <= chunk:
            self.pending.popleft()[1].result()

    def close(self) -> None:
        for _, future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


def xor_streams(
    sources: Sequence[Source],
    length: int,
    out: BinaryIO,
    copies: Sequence[tuple[int, BinaryIO]] = (),
    checksum_source: int | None = None,
    progress: Progress | None = None,
    keystreams: Sequence[Keystream] = (),
) -> int:
    """Write XOR(sources, keystreams) to `out` and source i to each (i, file) in `copies`.

    A keystream is XORed in place (a cipher encrypting the buffer: one pass, no keystream
    buffer). Returns the CRC-32 of sources[checksum_source], or of the output when it is None.
    """
    chunk = min(CHUNK, max(64 << 10, BUFFER_BUDGET // (SLOTS * (len(sources) + 1))))
    # slots[s][i]: (chunk,) uint8 buffer of source i; xors[s]: (chunk,) uint8 XOR of the sources
    slots = [[aligned_empty(chunk) for _ in sources] for _ in range(SLOTS)]
    xors = [aligned_empty(chunk) for _ in range(SLOTS)]
    crc = [0]

    def hash_chunk(data: np.ndarray) -> None:
        crc[0] = zlib.crc32(data, crc[0])

    sinks = [_Sink(out, chunk), *(_Sink(file, chunk) for _, file in copies)]
    hasher, writers = _Jobs(), [_Jobs() for _ in sinks]  # one writer per file: writes overlap
    jobs = [hasher, *writers]
    lead = sinks[0].lead  # the first chunk is shorter by it, so the others start on a block
    starts = [0, *range(chunk - lead, length, chunk)] if lead else range(0, length, chunk)
    try:
        for k, start in enumerate(s for s in starts if s < length):
            n = min(chunk - lead if k == 0 else chunk, length - start)
            for job in jobs:  # slot k % SLOTS is free again once chunk k - SLOTS is done
                job.finish_through(k - SLOTS)
            buffers = [b[:n] for b in slots[k % SLOTS]]
            x = xors[k % SLOTS][:n]
            for source, buffer in zip(sources, buffers, strict=True):
                source.fill(memoryview(buffer))
            if checksum_source is not None:
                hasher.submit(k, hash_chunk, buffers[checksum_source])
            if len(buffers) > 1:
                np.bitwise_xor(buffers[0], buffers[1], out=x)
            elif buffers:
                np.copyto(x, buffers[0])
            else:  # keystreams alone (a share set of seeds only)
                x.fill(0)
            for buffer in buffers[2:]:
                np.bitwise_xor(x, buffer, out=x)
            for keystream in keystreams:
                keystream.xor_into(memoryview(x))
            if checksum_source is None:
                hasher.submit(k, hash_chunk, x)
            writers[0].submit(k, sinks[0].write, x)
            for (i, _), sink, writer in zip(copies, sinks[1:], writers[1:], strict=True):
                writer.submit(k, sink.write, buffers[i])
            if progress:
                progress(n)
        for sink, writer in zip(sinks, writers, strict=True):
            writer.submit(2**62, sink.finish)
        for job in jobs:
            job.finish_through(2**63)  # every chunk
    finally:
        for job in jobs:
            job.close()
        for sink in sinks:
            sink._close_direct()
    return crc[0]
