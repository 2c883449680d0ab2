"""Paths -> input streams, and output streams that appear only once they are verified.

Outputs are written to a temporary file beside the target and renamed into place only
when the caller's block finishes without error; standard output is spooled the same way
and copied out only at the end, so no caller ever emits unverified bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from .errors import InertError

CHUNK = 4 << 20  # 4 MiB: numpy XOR and the kernel's copies run at full speed; RSS stays flat
# (1, 4 and 16 MiB measured the same on a 1 GiB split)
STDIO = "-"

Progress = Callable[[int], None]  # called with the number of bytes just processed


def expect_end(stream: BinaryIO, name: str, error: type[InertError] = InertError) -> None:
    if stream.read(1):
        raise error(f"{name} is longer than expected: trailing bytes after the last one read")


@contextlib.contextmanager
def open_input(path: str, name: str | None = None) -> Iterator[tuple[BinaryIO, int]]:
    """Open a file (or `-` for stdin) and yield it with its length in bytes.

    A pipe's length is unknown until its end, and keys state the length up front, so a
    non-seekable stdin is first spooled to an anonymous temporary file.
    """
    name = name or path
    if path == STDIO:
        stdin = sys.stdin.buffer
        if _seekable(stdin):
            yield stdin, os.fstat(stdin.fileno()).st_size - stdin.tell()
            return
        with tempfile.TemporaryFile() as spool:
            _copy(stdin, spool)
            length = spool.tell()
            spool.seek(0)
            yield spool, length
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise InertError(f"cannot read {name}: {e.strerror or e}") from None
    with stream:
        if not os.path.isfile(path):
            raise InertError(f"cannot read {name}: not a regular file")
        yield stream, os.fstat(stream.fileno()).st_size


def _seekable(stream: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _copy(src: BinaryIO, dst: BinaryIO) -> None:
    for chunk in iter(lambda: src.read(CHUNK), b""):
        dst.write(chunk)


# ---------------------------------------------------------------------------- writing


class AtomicOutput:
    """One output file: a temporary file until sync() and publish(), then the target, or nothing."""

    def __init__(
        self, path: str, *, force: bool, binary: bool = True, private: bool = False
    ) -> None:
        self.path = path
        self.force = force
        self.private = private  # secrets (pads) stay 0600; other outputs get the umask's mode
        if path == STDIO:
            if binary and sys.stdout.isatty() and not force:
                raise InertError(
                    "refusing to write binary data to a terminal",
                    hint="redirect the output, pass -o FILE, or add --force",
                )
            self.file: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 - closed by publish/discard
            return
        if os.path.lexists(path) and not force:
            raise InertError(f"{path} already exists", hint="add --force to overwrite it")
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, self._tmp = tempfile.mkstemp(
                dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".inert-tmp"
            )
        except OSError as e:
            raise InertError(f"cannot write {path}: {e.strerror or e}") from None
        self.file = os.fdopen(fd, "w+b")

    def sync(self) -> None:
        """Make the temporary file's bytes durable (a crash after the rename never shows a hole)."""
        try:
            self.file.flush()
            if self.path == STDIO:
                return
            if not self.private:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(self.file.fileno(), 0o666 & ~umask)
            os.fsync(self.file.fileno())
        except OSError as e:
            raise _write_error(self.path, e) from None

    def publish(self) -> None:
        """Move the synced output into place (or copy it to stdout)."""
        try:
            if self.path == STDIO:
                self.file.seek(0)
                _copy(self.file, sys.stdout.buffer)
                sys.stdout.buffer.flush()
                self.file.close()
                return
            self.file.close()
            if self.force:
                os.replace(self._tmp, self.path)
            else:
                os.link(self._tmp, self.path)  # fails rather than clobber a file made meanwhile
                os.unlink(self._tmp)
        except FileExistsError:
            self.discard()
            raise InertError(
                f"{self.path} already exists", hint="add --force to overwrite it"
            ) from None
        except OSError as e:
            self.discard()
            raise _write_error(self.path, e) from None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        if self.path != STDIO:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)


@contextlib.contextmanager
def atomic_outputs(
    paths: Sequence[str], *, force: bool, binary: bool = True, private: bool = False
) -> Iterator[list[BinaryIO]]:
    """Yield writable files; all of them appear at their paths if the block succeeds, none if not."""
    if len(set(paths)) != len(paths):
        raise InertError("the same output path is given twice")
    outputs: list[AtomicOutput] = []
    try:
        for path in paths:
            outputs.append(AtomicOutput(path, force=force, binary=binary, private=private))
        try:
            yield [o.file for o in outputs]
        except OSError as e:
            if e.errno in _WRITE_ERRNOS:
                raise _write_error(paths[0] if len(paths) == 1 else "the outputs", e) from None
            raise
        with ThreadPoolExecutor(max_workers=len(outputs)) as pool:  # fsyncs overlap
            for future in [pool.submit(output.sync) for output in outputs]:
                future.result()
        for output in outputs:
            output.publish()
    except BaseException:
        for output in outputs:
            output.discard()
        raise


@contextlib.contextmanager
def atomic_output(
    path: str, *, force: bool, binary: bool = True, private: bool = False
) -> Iterator[BinaryIO]:
    with atomic_outputs([path], force=force, binary=binary, private=private) as (file,):
        yield file


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _write_error(path: str, e: OSError) -> InertError:
    if e.errno == errno.ENOSPC:
        return InertError(f"no space left on the device while writing {path}; nothing was written")
    return InertError(f"cannot write {path}: {e.strerror or e}")
