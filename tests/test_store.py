"""The blob store: content-addressed, found by id, and it remembers which pad bytes were used."""

from __future__ import annotations

import itertools
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


def test_pad_uses_are_remembered_and_released() -> None:
    store = Store()
    blob_id = bytes(range(8))
    assert store.pad_uses(blob_id) == []
    assert store.reserve_pad_range(blob_id, 5, lambda used: 10) == (10, [])
    assert store.reserve_pad_range(blob_id, 7, lambda used: 100) == (100, [(10, 5)])
    assert Store().pad_uses(blob_id) == [(10, 5), (100, 7)]
    store.release_pad_range(blob_id, 10, 5)
    assert Store().pad_uses(blob_id) == [(100, 7)]


def test_a_refused_choice_records_nothing() -> None:
    def refuse(used: list) -> int:
        raise InertError("no room")

    store = Store()
    with pytest.raises(InertError, match="no room"):
        store.reserve_pad_range(bytes(8), 5, refuse)
    assert store.pad_uses(bytes(8)) == []


def _reserve_many(root: str, count: int) -> list[int]:
    """In a separate process: reserve `count` ranges of 100 bytes in a 1,000,000-byte pad."""
    from inert.pad import choose_offset

    store = Store(Path(root))
    return [
        store.reserve_pad_range(bytes(8), 100, lambda used: choose_offset(1_000_000, 100, used))[0]
        for _ in range(count)
    ]


def test_reservations_from_many_processes_never_overlap(store_root: Path) -> None:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(8) as pool:
        offsets = [
            o for run in pool.starmap(_reserve_many, [(str(store_root), 10)] * 8) for o in run
        ]
    ranges = sorted(Store().pad_uses(bytes(8)))
    assert len(ranges) == 80 and sorted(offsets) == [o for o, _ in ranges]
    for (a, n), (b, _) in itertools.pairwise(ranges):
        assert a + n <= b, f"ranges at {a} and {b} overlap"


def test_a_damaged_pad_use_record_is_refused_not_ignored(store_root: Path) -> None:
    store = Store()
    store.reserve_pad_range(bytes(8), 5, lambda used: 10)
    with open(store.pad_uses_dir / bytes(8).hex(), "a") as f:
        f.write("12 x\n")
    with pytest.raises(InertError, match="damaged at line 2"):
        store.pad_uses(bytes(8))


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


def test_a_stored_blob_that_changed_is_refused(pad_path: Path) -> None:
    store = Store()
    blob, _ = store.add(pad_path)
    assert store.identify(blob.path).sha256 == blob.sha256
    blob.path.chmod(0o644)
    with open(blob.path, "ab") as f:  # a byte appended inside the store
        f.write(b"!")
    for find in (lambda: store.identify(blob.path), lambda: store.resolve(blob.id_hex)):
        with pytest.raises(
            InertError, match=f"blob {blob.sha256.hex()[:16]} in the store is damaged"
        ):
            find()


def test_damaged_hash_cache_is_ignored(store_root: Path, pad_path: Path) -> None:
    store_root.mkdir(parents=True)
    (store_root / "hashes.json").write_text("{not json")
    assert Store().identify(pad_path).sha256 == open_blob(pad_path).sha256
