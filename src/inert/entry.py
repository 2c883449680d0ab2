"""The `inert` console script: signal handlers first, then the CLI and its exit code.

The CLI's imports (click, rich, numpy) take a few tenths of a second; a Ctrl-C among them
must end with the same one line as a Ctrl-C later, not a traceback from inside an import.
So this module imports nothing heavy, installs the handlers, and only then imports the CLI.
After the first signal every further one is ignored, so the clean-up it started (outputs
discarded, helpers stopped, threads joined) runs to its end instead of breaking off with
"Exception ignored in: <generator ...>".
"""

from __future__ import annotations

import signal
import sys


class Terminated(Exception):
    """SIGTERM, raised in the main thread so that every output is discarded on the way out."""


INTERRUPTED = "inert: error: interrupted; no output was written\n"
TERMINATED = "inert: error: terminated; no output was written\n"


def stop(signum: int, frame: object) -> None:
    """The first SIGINT or SIGTERM raises in the main thread; later ones are ignored."""
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, signal.SIG_IGN)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


def install_handlers() -> None:
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    install_handlers()
    try:
        from .cli import main as run

        code = run()
    except KeyboardInterrupt:  # before the CLI could catch it: during its imports
        sys.stderr.write(INTERRUPTED)
        code = 130
    except Terminated:
        sys.stderr.write(TERMINATED)
        code = 143
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # nothing left to interrupt but the exit
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
