"""Run a function in a forked child process, for work that would otherwise queue on one core.

explain writes three outputs (JSON, HTML, PNG) besides running the model; in one process they
would run one after another under the GIL once the ledger is done. A forked child sees the
parent's memory as it was at the fork (copy-on-write: nothing is copied up front) and writes
to the output files the parent opened, through the descriptors it inherits; what the parent
learns later (the ledger's rows, the report) reaches it pickled through a pipe. The parent
waits for it, then verifies and publishes the outputs as usual, or kills it on failure.

Where os.fork is missing or unsafe (not Linux), the function simply runs in the caller.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import BinaryIO

from .errors import InertError

FORKS = sys.platform == "linux" and hasattr(os, "fork")
MESSAGE_LIMIT = 4000  # bytes of the child's error message passed back
_PARENT_ENDS: set[int] = set()  # the parent's ends of live helpers' pipes (children close them)


class Aside:
    """One function running in a child process (or run in the caller, where there is no fork).

    Aside(fn, *args) forks and runs fn(*args) at once. Aside.ready(fn, prepare) forks now
    (before any thread starts: fork copies only the calling thread) and runs prepare() in
    the child — a slow import, say, on the CPU time the parent's threads leave over — then
    fn(messages): an iterator over the objects the parent send()s, pickled through a pipe
    by a sender thread (the parent never waits for the child), until close().
    """

    def __init__(self, fn: Callable[..., object], *args: object) -> None:
        self.pid: int | None = None
        self._outbox: queue.SimpleQueue | None = None  # a ready helper's messages to send
        if not FORKS:
            fn(*args)
            return
        self._fork(lambda: fn(*args))

    @classmethod
    def ready(
        cls, fn: Callable[[Iterator[object]], object], prepare: Callable[[], object]
    ) -> Aside:
        helper = cls.__new__(cls)
        helper.pid, helper._outbox = None, queue.SimpleQueue()
        if not FORKS:  # run inline at close(), over the messages kept until then
            helper._inline = fn
            return helper
        messages_read, messages_write = os.pipe()

        def child() -> None:
            os.close(messages_write)
            prepare()
            with os.fdopen(messages_read, "rb") as pipe:
                fn(_received(pipe))

        helper._fork(child)
        os.close(messages_read)
        _PARENT_ENDS.add(messages_write)
        helper._sender_fd = messages_write
        helper._sender = threading.Thread(
            target=_send, args=(helper._outbox, messages_write), daemon=True
        )
        return helper

    def send(self, message: object) -> None:
        """Pass an object to a ready helper's fn (it must pickle)."""
        assert self._outbox is not None, "send() is for helpers made with Aside.ready"
        self._outbox.put(message)
        self._start_sender()

    def _start_sender(self) -> None:
        """Threads start at the first message, so that every fork happens before them."""
        if self.pid is not None and not self._sender.is_alive() and not self._sender.ident:
            self._sender.start()

    def close(self) -> None:
        """No more messages: a ready helper's fn sees the end of its iterator."""
        outbox, self._outbox = self._outbox, None
        if outbox is None:
            return
        outbox.put(_END)
        if self.pid is None:  # no fork: run here
            self._inline(iter(outbox.get, _END))
        else:
            self._start_sender()
            self._sender.join()
            _PARENT_ENDS.discard(self._sender_fd)

    def _fork(self, child: Callable[[], None]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run, report a failure through the pipe, never return
            status = 1
            try:
                os.close(read_end)
                for fd in _PARENT_ENDS:  # other helpers' pipes: they must see their ends
                    os.close(fd)
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent cleans up
                if hasattr(signal, "pthread_sigmask"):  # forked while the parent held them back
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
                child()
                status = 0
            except BaseException as e:  # every failure goes to the parent
                message = str(e) if isinstance(e, InertError) else traceback.format_exc()
                os.write(write_end, message.encode(errors="replace")[:MESSAGE_LIMIT])
            finally:
                os._exit(status)  # no atexit handlers, no parent's cleanup run twice
        os.close(write_end)
        self.pid, self._errors = pid, read_end
        _PARENT_ENDS.add(read_end)

    def wait(self) -> None:
        """Wait for the child; raise its error if it failed."""
        self.close()
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        _PARENT_ENDS.discard(self._errors)
        with os.fdopen(self._errors, "rb") as messages:
            message = messages.read().decode(errors="replace").strip()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise InertError(message or f"a helper process failed (wait status {status})")

    def cancel(self) -> None:
        """Stop the child, if it still runs (the caller is failing anyway)."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            _PARENT_ENDS.discard(self._errors)
            os.close(self._errors)
            self.pid = None
        if self._outbox is not None and hasattr(self, "_sender"):
            if self._sender.ident is None:  # never started: nothing was sent
                os.close(self._sender_fd)
            else:  # the sender finds the pipe broken and stops
                self._outbox.put(_END)
                self._sender.join()
            _PARENT_ENDS.discard(self._sender_fd)
        self._outbox = None


_END = "end of messages"


def _send(outbox: queue.SimpleQueue, fd: int) -> None:
    """The sender thread: pickle each message into the pipe, in order, until _END."""
    pipe = os.fdopen(fd, "wb")
    try:
        for message in iter(outbox.get, _END):
            pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            pipe.flush()
        pipe.close()
    except BrokenPipeError:  # the child has failed: wait() says why
        for _ in iter(outbox.get, _END):
            pass
        with contextlib.suppress(OSError):
            pipe.close()  # closes the descriptor, whatever the buffer's fate


def _received(pipe: BinaryIO) -> Iterator[object]:
    while True:
        try:
            yield pickle.load(pipe)
        except EOFError:
            return
