"""Paths -> input streams, and output streams that appear only once they are verified.

Outputs are written to a temporary file beside the target and renamed into place only
when the caller's block finishes without error; standard output is spooled the same way
and copied out only at the end, so no caller ever emits unverified bytes.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import errno
import os
import re
import select
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Literal

from .errors import InertError

CHUNK = 4 << 20  # 4 MiB: numpy XOR and the kernel's copies run at full speed; RSS stays flat
# (1, 4 and 16 MiB measured the same on a 1 GiB split)
STDIO = "-"

Progress = Callable[[int], None]  # called with the number of bytes just processed

# What an output may show a terminal: "binary" never (without --force), "text" always,
# "work" only if it turns out to be plain text (a decoded work can be either; it is checked
# once verified, before a byte is shown).
Content = Literal["binary", "text", "work"]


def size_text(n: int) -> str:
    """4096 -> '4.0 KiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


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


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte to `fd`, also when it is non-blocking (short writes, EAGAIN).

    A pipe set O_NONBLOCK by whoever made it (containers with PYTHONUNBUFFERED=1 hand
    Python such a stdout) takes 64 KiB and refuses the rest until the reader catches up;
    Python's unbuffered stdout reports that as a short count that is easy to ignore.
    """
    view = memoryview(data)
    while len(view):
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])  # wait until the reader has made room
            continue
        view = view[n:]


# control characters but \b \t \n \v \f \r (ESC among them: it starts escape sequences)
_CONTROL = re.compile(rb"[\x00-\x07\x0e-\x1f\x7f]")


def is_plain_text(stream: BinaryIO) -> bool:
    """Valid UTF-8 without control characters (escape sequences would drive the terminal)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            if _CONTROL.search(chunk):
                return False
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _fallocate() -> Callable[[int, int, int, int], int] | None:
    """Linux fallocate(2), which fails where a file system cannot preallocate instead of
    emulating it by writing zeros as posix_fallocate does."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.fallocate64
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return fn


FALLOC_FL_KEEP_SIZE = 1  # claim the blocks, leave the file's length to the writes


def reserve_space(file: BinaryIO, size: int, path: str) -> None:
    """Refuse at once an output its file system cannot hold, and claim the space before writing.

    Without this, a pad of 1000 TiB is written until the disk is full (for everyone on the
    machine) before the failure shows. statvfs says what is free now; fallocate claims it
    where the file system supports that, so a disk filled meanwhile by others fails here too.
    """
    fd = file.fileno()
    st = os.fstatvfs(fd)
    free = st.f_bavail * st.f_frsize
    short = InertError(
        f"not enough space for {path}: it needs {size_text(size)}, "
        f"its file system has {size_text(free)} free; nothing was written"
    )
    if size > free:
        raise short
    fallocate = _fallocate()
    if fallocate is None or size == 0:
        return
    if fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size) != 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise short
        # EOPNOTSUPP, ENOSYS, EINVAL...: the file system cannot preallocate; statvfs said it fits


# ---------------------------------------------------------------------------- writing


class AtomicOutput:
    """One output file: a temporary file until sync() and publish(), then the target, or nothing."""

    def __init__(
        self,
        path: str,
        *,
        force: bool,
        content: Content = "binary",
        private: bool = False,
        size: int | None = None,
    ) -> None:
        self.path = path
        self.force = force
        self.content = content
        self.private = private  # secrets (pads) stay 0600; other outputs get the umask's mode
        self.terminal = path == STDIO and _is_terminal(sys.stdout)
        if path == STDIO:
            if content == "binary" and self.terminal and not force:
                raise _terminal_refusal()
            self.file: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 - closed by publish/discard
        else:
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
        if size is not None:
            try:
                reserve_space(self.file, size, "stdout's spool" if path == STDIO else path)
            except BaseException:
                self.discard()
                raise

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

    def check_terminal(self) -> None:
        """A work bound for a terminal goes there only if it is plain text (or --force)."""
        if self.terminal and self.content == "work" and not self.force:
            self.file.seek(0)
            if not is_plain_text(self.file):
                raise _terminal_refusal()

    def publish(self) -> None:
        """Move the synced output into place (or copy it to stdout, every byte)."""
        try:
            if self.path == STDIO:
                self.file.seek(0)
                sys.stdout.flush()
                fd = sys.stdout.fileno()
                for chunk in iter(lambda: self.file.read(CHUNK), b""):
                    write_all(fd, chunk)
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
        except BrokenPipeError:  # the reader left: the command reports it (exit 141)
            self.discard()
            raise
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
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block: a handler raising between two steps of it
    (a file made, the file recorded) cannot leave the first without the second."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _is_terminal(stream: object) -> bool:
    try:
        return stream.isatty()  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def _terminal_refusal() -> InertError:
    return InertError(
        "refusing to write binary data to a terminal",
        hint="redirect the output, pass -o FILE, or add --force",
    )


@contextlib.contextmanager
def atomic_outputs(
    paths: Sequence[str],
    *,
    force: bool,
    content: Content = "binary",
    private: bool = False,
    sizes: Sequence[int | None] | None = None,
    inputs: Sequence[str] = (),
    before_publish: Callable[[], None] | None = None,
) -> Iterator[list[BinaryIO]]:
    """Yield writable files; all of them appear at their paths if the block succeeds, none if not.

    `sizes`: the exact size of each output where known, claimed before anything is written.
    `inputs`: files the command reads, none of which may be an output. `before_publish` runs
    once every output is verified, just before the first byte can leave the process.
    """
    if len(set(paths)) != len(paths):
        raise InertError("the same output path is given twice")
    check_distinct(paths, inputs)
    outputs: list[AtomicOutput] = []
    try:
        for path, size in zip(paths, sizes or [None] * len(paths), strict=True):
            with signals_deferred():  # no temporary file exists unknown to the clean-up below
                outputs.append(
                    AtomicOutput(path, force=force, content=content, private=private, size=size)
                )
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
            output.check_terminal()
        if before_publish:
            before_publish()
        for output in outputs:
            output.publish()
    except BaseException:
        for output in outputs:
            output.discard()
        raise


@contextlib.contextmanager
def atomic_output(
    path: str,
    *,
    force: bool,
    content: Content = "binary",
    private: bool = False,
    size: int | None = None,
    inputs: Sequence[str] = (),
    before_publish: Callable[[], None] | None = None,
) -> Iterator[BinaryIO]:
    with atomic_outputs(
        [path],
        force=force,
        content=content,
        private=private,
        sizes=[size],
        inputs=inputs,
        before_publish=before_publish,
    ) as (file,):
        yield file


def check_distinct(outputs: Sequence[str], inputs: Sequence[str]) -> None:
    """Refuse an output that is one of the inputs: `-o PAD --force` would replace the pad."""
    seen = {}
    for path in inputs:
        with contextlib.suppress(OSError, ValueError):
            if path != STDIO:
                st = os.stat(path)
                seen[(st.st_dev, st.st_ino)] = path
    for path in outputs:
        if path == STDIO:
            continue
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        if (st.st_dev, st.st_ino) in seen:
            raise InertError(
                f"the output {path} is also an input ({seen[st.st_dev, st.st_ino]}): "
                "writing it would destroy what is being read",
                hint="pass another -o FILE",
            )


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _write_error(path: str, e: OSError) -> InertError:
    if e.errno == errno.ENOSPC:
        return InertError(f"no space left on the device while writing {path}; nothing was written")
    return InertError(f"cannot write {path}: {e.strerror or e}")
