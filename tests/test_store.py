"""The blob store: content-addressed, found by id, and it remembers which pad bytes were used."""

from __future__ import annotations

from pathlib import Path

import pytest

from inert.errors import InertError
from inert.store import Store, open_blob


def test_add_is_content_addressed_and_idempotent(store_root: Path, pad_path: Path) -> None:
    store = Store()
    assert store.root == store_root
    blob, new = store.add(pad_path)
    assert new and blob.path.read_bytes() == pad_path.read_bytes()
    assert blob.path.name == open_blob(pad_path).sha256.hex()
    again, new_again = store.add(pad_path)
    assert not new_again and again.path == blob.path
    assert store.find(blob.id) == blob.path
    assert [b.sha256 for b in store.list()] == [blob.sha256]


def test_resolve_by_id_prefix(pad_path: Path) -> None:
    store = Store()
    blob, _ = store.add(pad_path)
    assert store.resolve(blob.sha256.hex()[:10]).sha256 == blob.sha256
    with pytest.raises(InertError, match="no blob with id"):
        store.resolve("00000000")


def test_pad_uses_are_remembered() -> None:
    store = Store()
    blob_id = bytes(range(8))
    assert store.pad_uses(blob_id) == []
    store.record_pad_use(blob_id, 10, 5)
    store.record_pad_use(blob_id, 100, 7)
    assert Store().pad_uses(blob_id) == [(10, 5), (100, 7)]


def test_missing_blob_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InertError, match="cannot read blob"):
        open_blob(tmp_path / "nope")


def test_hash_is_remembered_until_the_file_changes(pad_path: Path) -> None:
    store = Store()
    first = store.identify(pad_path)
    assert first.sha256 == open_blob(pad_path).sha256
    assert Store().identify(pad_path).sha256 == first.sha256  # from the cache
    data = bytearray(pad_path.read_bytes())
    data[0] ^= 1
    pad_path.write_bytes(bytes(data))  # same size, new content: ctime moves
    assert Store().identify(pad_path).sha256 == open_blob(pad_path).sha256 != first.sha256


def test_damaged_hash_cache_is_ignored(store_root: Path, pad_path: Path) -> None:
    store_root.mkdir(parents=True)
    (store_root / "hashes.json").write_text("{not json")
    assert Store().identify(pad_path).sha256 == open_blob(pad_path).sha256
