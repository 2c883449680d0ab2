"""Blobs and the local blob store: a path or an id -> a verified blob file.

A blob is immutable and content-addressed: its id is SHA-256 of its bytes, and keys name
it by the first 8 bytes of that hash. The store is a folder of blobs named by their full
hash, so `inert decode KEY` can find the blob a key names without being told where it is:

    $INERT_STORE, else $XDG_DATA_HOME/inert, else ~/.local/share/inert
        blobs/<sha256 hex>        the blobs themselves, read-only
        pad-uses/<id hex>         ranges of a pad already used for keys on this machine
        hashes.json               SHA-256 of blob files outside the store, by path and stat

Hashing a 64 GiB pad for every key would take a minute, so a file's hash is remembered
with its device, inode, size, mtime and ctime (as git's index does) and reused while
all five are unchanged; ctime cannot be set back by any user, so a rewrite is noticed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InertError
from .keyfile import BLOB_ID_SIZE, KeyHeader, Kind
from .streams import CHUNK, atomic_output


@dataclass(frozen=True)
class Blob:
    path: Path
    sha256: bytes  # (32,) hash of the whole file: the blob's identity
    size: int
    kind: Kind

    @property
    def id(self) -> bytes:
        return self.sha256[:BLOB_ID_SIZE]  # what keys carry

    @property
    def id_hex(self) -> str:
        return self.id.hex()


MODEL_FORMAT = "inert-model/1"  # `format` in the `inert` metadata entry of a model blob


def sniff_kind(path: str | Path) -> Kind:
    """MODEL for a safetensors file carrying inert's model metadata; any other file is a pad."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= 100 << 20:
                return Kind.PAD
            header = json.loads(f.read(size))
    except (OSError, ValueError):
        return Kind.PAD
    try:
        described = json.loads(header["__metadata__"]["inert"])
        return Kind.MODEL if described["format"] == MODEL_FORMAT else Kind.PAD
    except (TypeError, KeyError, ValueError):
        return Kind.PAD


def check_blob(header: KeyHeader, blob: Blob) -> None:
    """A key names its blob by id: refuse any other blob before producing a byte."""
    if header.blob_id != blob.id:
        raise InertError(
            f"wrong blob: the key was made with blob {header.blob_id_hex}, but {blob.path} is blob {blob.id_hex}",
            hint=f"pass the blob whose id starts with {header.blob_id_hex}",
        )


def open_blob(path: str | Path) -> Blob:
    """Hash a blob file (SHA-256 runs at ~1.6 GB/s here, so no cache is needed)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if not os.path.isfile(path):
                raise InertError(f"cannot read blob {path}: not a regular file")
            digest = hashlib.file_digest(f, "sha256").digest()
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise InertError(f"cannot read blob {path}: {e.strerror or e}") from None
    return Blob(path, digest, size, sniff_kind(path))


def default_root() -> Path:
    if root := os.environ.get("INERT_STORE"):
        return Path(root)
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data_home) / "inert"


class Store:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()
        self.blobs = self.root / "blobs"
        self.pad_uses_dir = self.root / "pad-uses"

    # ------------------------------------------------------------------ blobs

    def add(self, path: str | Path) -> tuple[Blob, bool]:
        """Copy a blob into the store; returns it and whether it was new."""
        blob = open_blob(path)
        target = self.blobs / blob.sha256.hex()
        if target.exists():
            return Blob(target, blob.sha256, blob.size, blob.kind), False
        self.blobs.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as src, atomic_output(str(target), force=False) as dst:
            digest = hashlib.sha256()
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                dst.write(chunk)
            if digest.digest() != blob.sha256:
                raise InertError(f"{path} changed while it was being added to the store")
        target.chmod(0o444)
        return Blob(target, blob.sha256, blob.size, blob.kind), True

    def find(self, blob_id: bytes) -> Path | None:
        """The stored blob whose hash starts with `blob_id`, or None."""
        if not self.blobs.is_dir():
            return None
        prefix = blob_id.hex()
        matches = sorted(p for p in self.blobs.iterdir() if p.name.startswith(prefix))
        return matches[0] if matches else None

    def list(self) -> list[Blob]:
        if not self.blobs.is_dir():
            return []
        return [
            Blob(p, bytes.fromhex(p.name), p.stat().st_size, sniff_kind(p))
            for p in sorted(self.blobs.iterdir())
            if re.fullmatch(r"[0-9a-f]{64}", p.name)
        ]

    def identify(self, path: str | Path) -> Blob:
        """open_blob(path), with the hash remembered for unchanged files."""
        path = Path(path)
        try:
            st = path.stat()
        except OSError as e:
            raise InertError(f"cannot read blob {path}: {e.strerror or e}") from None
        if path.parent == self.blobs and re.fullmatch(r"[0-9a-f]{64}", path.name):
            return Blob(
                path, bytes.fromhex(path.name), st.st_size, sniff_kind(path)
            )  # named by hash
        stamp = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        where = str(path.resolve())
        hashes = self._read_hashes()
        if where in hashes and hashes[where][:5] == stamp:
            return Blob(path, bytes.fromhex(hashes[where][5]), st.st_size, sniff_kind(path))
        blob = open_blob(path)
        hashes[where] = [*stamp, blob.sha256.hex()]
        self._write_hashes(hashes)
        return blob

    def _read_hashes(self) -> dict[str, list]:
        try:
            return json.loads((self.root / "hashes.json").read_text())
        except (OSError, ValueError):
            return {}  # a missing or damaged cache only costs a re-hash

    def _write_hashes(self, hashes: dict[str, list]) -> None:
        with contextlib.suppress(OSError):  # an unwritable store only costs re-hashing later
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".hashes.")
            with os.fdopen(fd, "w") as f:
                json.dump(hashes, f)
            os.replace(tmp, self.root / "hashes.json")

    def resolve(self, ref: str) -> Blob:
        """A blob named by a file path, or by a hex id prefix of at least 8 digits from the store."""
        if os.path.exists(ref) or not re.fullmatch(r"[0-9a-fA-F]{8,64}", ref):
            return self.identify(ref)
        matches = [b for b in self.list() if b.sha256.hex().startswith(ref.lower())]
        if not matches:
            raise InertError(
                f"no blob with id {ref} in the store ({self.root})",
                hint="list the store with: inert blob list",
            )
        if len(matches) > 1:
            raise InertError(
                f"blob id {ref} is ambiguous in the store", hint="give more hex digits"
            )
        return matches[0]

    # ------------------------------------------------------------------ pad uses

    def pad_uses(self, blob_id: bytes) -> list[tuple[int, int]]:
        """(offset, length) of every pad range this machine has used for a key."""
        path = self.pad_uses_dir / blob_id.hex()
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise InertError(f"cannot read the pad-use record {path}: {e.strerror}") from None
        uses = []
        for line in text.splitlines():
            offset, length = (int(x) for x in line.split())
            uses.append((offset, length))
        return uses

    def record_pad_use(self, blob_id: bytes, offset: int, length: int) -> None:
        self.pad_uses_dir.mkdir(parents=True, exist_ok=True)
        with open(self.pad_uses_dir / blob_id.hex(), "a") as f:
            f.write(f"{offset} {length}\n")
