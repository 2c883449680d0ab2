"""Blobs and the local blob store: a path or an id -> a verified blob file.

A blob is immutable and content-addressed: its id is SHA-256 of its bytes, and keys name
it by the first 8 bytes of that hash. The store is a folder of blobs named by their full
hash, so `inert decode KEY` can find the blob a key names without being told where it is:

    $INERT_STORE, else $XDG_DATA_HOME/inert, else ~/.local/share/inert
        blobs/<sha256 hex>        the blobs themselves, read-only
        pad-uses/<id hex>         ranges of a pad already used for keys on this machine
        pad-uses/<id hex>.lock    held while a range is chosen and recorded (flock)
        hashes.json               SHA-256 of blob files outside the store, by path and stat

Hashing a 64 GiB pad for every key would take a minute, so a file's hash is remembered
with its device, inode, size, mtime and ctime (as git's index does) and reused while
all five are unchanged; ctime cannot be set back by any user, so a rewrite is noticed.
Blobs in the store are held to the same rule: one whose file changed is hashed again and
refused if it no longer matches its name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
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


# `format` in the `inert` metadata entry of a model blob: every version this inert reads
MODEL_FORMATS = ("inert-model/1", "inert-model/2")


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
        return Kind.MODEL if described["format"] in MODEL_FORMATS else Kind.PAD
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

    def add(
        self, path: str | Path, check: Callable[[Blob], object] | None = None
    ) -> tuple[Blob, bool]:
        """Copy a blob into the store, if check(blob) accepts it (by not raising);
        returns it and whether it was new."""
        blob = open_blob(path)
        if check:
            check(blob)
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
        self._remember(target, blob.sha256)  # hashed as it was copied: no re-hash on first use
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
        """open_blob(path), with the hash remembered for unchanged files.

        A blob in the store is named by its hash; if its file changed since it was last
        hashed (a byte appended or flipped), it is hashed again and refused on a mismatch.
        """
        path = Path(path)
        try:
            st = path.stat()
        except OSError as e:
            raise InertError(f"cannot read blob {path}: {e.strerror or e}") from None
        where = str(path.resolve())
        hashes = self._read_hashes()
        if where in hashes and hashes[where][:5] == _stamp(st):
            blob = Blob(path, bytes.fromhex(hashes[where][5]), st.st_size, sniff_kind(path))
        else:
            blob = open_blob(path)
            hashes[where] = [*_stamp(st), blob.sha256.hex()]
            self._write_hashes(hashes)
        stored = path.parent == self.blobs and re.fullmatch(r"[0-9a-f]{64}", path.name)
        if stored and blob.sha256.hex() != path.name:
            raise InertError(
                f"blob {path.name[:16]} in the store is damaged: its file ({path}) no longer "
                f"hashes to its id (it now hashes to {blob.id_hex})",
                hint=f"remove it (rm -f {path}) and add the blob again: inert blob add PATH",
            )
        return blob

    def _remember(self, path: Path, sha256: bytes) -> None:
        hashes = self._read_hashes()
        hashes[str(path.resolve())] = [*_stamp(path.stat()), sha256.hex()]
        self._write_hashes(hashes)

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
        return self.identify(matches[0].path)

    # ------------------------------------------------------------------ pad uses

    # Every encode with a pad reads the used ranges, picks a free one and records it; two
    # encodes at once must not both pick from the same picture, so the three steps run
    # under an exclusive lock on the pad's lock file (flock: released if the process dies).

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
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise InertError(
                    f"the pad-use record {path} is damaged at line {number}: {line[:40]!r}",
                    hint="mend or remove that line; until then no range of this pad is handed out",
                )
            uses.append((int(fields[0]), int(fields[1])))
        return uses

    @contextlib.contextmanager
    def _pad_lock(self, blob_id: bytes) -> Iterator[None]:
        try:
            self.pad_uses_dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.pad_uses_dir / f"{blob_id.hex()}.lock", "a")  # noqa: SIM115
        except OSError as e:
            raise InertError(
                f"cannot record pad use in {self.pad_uses_dir}: {e.strerror or e}"
            ) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # waits for another encode of this pad
            yield

    def reserve_pad_range(
        self, blob_id: bytes, length: int, choose: Callable[[list[tuple[int, int]]], int]
    ) -> tuple[int, list[tuple[int, int]]]:
        """Record a range of `length` bytes as used, atomically across processes.

        choose(used ranges) -> offset picks it (or raises); returns the offset and the
        ranges that were used before. The record is on disk before this returns.
        """
        with self._pad_lock(blob_id):
            uses = self.pad_uses(blob_id)
            offset = choose(uses)
            try:
                with open(self.pad_uses_dir / blob_id.hex(), "a") as f:
                    f.write(f"{offset} {length}\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise InertError(
                    f"cannot record pad use in {self.pad_uses_dir}: {e.strerror or e}"
                ) from None
        return offset, uses

    def release_pad_range(self, blob_id: bytes, offset: int, length: int) -> None:
        """Forget one recorded range again: for a key that never left this process."""
        path = self.pad_uses_dir / blob_id.hex()
        with self._pad_lock(blob_id):
            lines = path.read_text().splitlines(keepends=True)
            lines.remove(f"{offset} {length}\n")
            fd, tmp = tempfile.mkstemp(dir=self.pad_uses_dir, prefix=".pad-uses.")
            with os.fdopen(fd, "w") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
