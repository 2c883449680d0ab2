"""The default blob: a small model trained by this project, shipped inside the package.

Used whenever no --blob is given, so `inert encode notes.txt` works on a fresh install
with nothing to download. Its training recipe and id are in docs/DEFAULT_BLOB.md. Earlier
default blobs ship too, as blobs/<id>.blob, so keys made with them still decode.
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


def shipped_blob(blob_id: bytes) -> Blob | None:
    """The default blob or an earlier one that shipped with inert, by id; None if neither."""
    if default_path().is_file() and default_blob().id == blob_id:
        return default_blob()
    path = Path(str(resources.files("inert") / "blobs" / f"{blob_id.hex()}.blob"))
    if not path.is_file():
        return None
    blob = open_blob(path)
    return blob if blob.id == blob_id else None
