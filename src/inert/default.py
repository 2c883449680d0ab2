"""The default blob: a small model trained by this project, shipped inside the package.

Used whenever no --blob is given, so `inert encode notes.txt` works on a fresh install
with nothing to download. Its training recipe and id are in docs/DEFAULT_BLOB.md.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from .errors import InertError
from .store import Blob, open_blob

NAME = "default"  # `--blob default` names it explicitly


def default_path() -> Path:
    return Path(str(resources.files("inert") / "blobs" / "default.blob"))


@cache
def default_blob() -> Blob:
    path = default_path()
    if not path.is_file():
        raise InertError("this installation has no default blob", hint="pass --blob PATH")
    return open_blob(path)
