"""Run a function in a forked child process, for work that would otherwise queue on one core.

explain's outputs (JSON, HTML, PNG) are written once the ledger is done, when the model's
threads are idle; in one process they would run one after another under the GIL. A forked
child sees the parent's memory as it was (copy-on-write: nothing is pickled or copied) and
writes to the output files the parent opened, through the descriptors it inherits; the
parent waits for it, then verifies and publishes the outputs as usual.

Where os.fork is missing or unsafe (not Linux), the function simply runs in the caller.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable

from .errors import InertError

FORKS = sys.platform == "linux" and hasattr(os, "fork")
MESSAGE_LIMIT = 4000  # bytes of the child's error message passed back


class Aside:
    """One function running in a child process (or run in the caller, where there is no fork).

    Aside(fn, *args) forks and runs fn(*args) at once. Aside.ready(fn, prepare) forks now,
    runs prepare() in the child (a slow import, say, while the parent's threads are busy
    but a core is free now and then) and fn(*args) once the parent sends args with run():
    fork before any thread starts, and the arguments arrive pickled.
    """

    def __init__(self, fn: Callable[..., object], *args: object) -> None:
        self.pid: int | None = None
        self._later: Callable[..., object] | None = None
        self._args: int | None = None  # a ready helper's pipe for its arguments
        if not FORKS:
            fn(*args)
            return
        self._fork(lambda: fn(*args))

    @classmethod
    def ready(cls, fn: Callable[..., object], prepare: Callable[[], object]) -> Aside:
        helper = cls.__new__(cls)
        helper.pid, helper._later, helper._args = None, fn, None
        if FORKS:
            args_read, args_write = os.pipe()

            def child() -> None:
                os.close(args_write)
                prepare()
                with os.fdopen(args_read, "rb") as pipe:
                    data = pipe.read()
                if data:  # the parent sent the arguments (it closes the pipe unsent on failure)
                    fn(*pickle.loads(data))

            helper._fork(child)
            os.close(args_read)
            helper._args = args_write
        return helper

    def run(self, *args: object) -> None:
        """Give a ready helper its arguments: it runs fn(*args) now."""
        assert self._later is not None, "run() is for helpers made with Aside.ready"
        if self._args is None:
            self._later(*args)
            return
        pipe, self._args = os.fdopen(self._args, "wb"), None
        try:
            with pipe:
                pipe.write(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL))
        except BrokenPipeError:
            pass  # the child has failed already: wait() says why

    def _fork(self, child: Callable[[], None]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run, report a failure through the pipe, never return
            status = 1
            try:
                os.close(read_end)
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent cleans up
                child()
                status = 0
            except BaseException as e:  # every failure goes to the parent
                message = str(e) if isinstance(e, InertError) else traceback.format_exc()
                os.write(write_end, message.encode(errors="replace")[:MESSAGE_LIMIT])
            finally:
                os._exit(status)  # no atexit handlers, no parent's cleanup run twice
        os.close(write_end)
        self.pid, self._messages = pid, read_end

    def _close_args(self) -> None:
        """A ready helper never given its arguments ends without running fn."""
        if self._args is not None:
            os.close(self._args)
            self._args = None

    def wait(self) -> None:
        """Wait for the child; raise its error if it failed."""
        self._close_args()
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        with os.fdopen(self._messages, "rb") as messages:
            message = messages.read().decode(errors="replace").strip()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise InertError(message or f"a helper process failed (wait status {status})")

    def cancel(self) -> None:
        """Stop the child, if it still runs (the caller is failing anyway)."""
        self._close_args()
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            os.close(self._messages)
            self.pid = None
