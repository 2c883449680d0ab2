"""Outputs appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from inert.errors import InertError
from inert.streams import atomic_outputs


def test_failed_block_leaves_no_file(tmp_path: Path) -> None:
    targets = [str(tmp_path / "a"), str(tmp_path / "b")]
    with pytest.raises(RuntimeError), atomic_outputs(targets, force=False) as outs:
        for out in outs:
            out.write(b"half")
        raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []


def test_interrupt_leaves_no_file(tmp_path: Path) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        atomic_outputs([str(tmp_path / "a")], force=False) as (out,),
    ):
        out.write(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_success_commits_all(tmp_path: Path) -> None:
    with atomic_outputs([str(tmp_path / "a"), str(tmp_path / "b")], force=False) as (a, b):
        a.write(b"A")
        b.write(b"B")
    assert (tmp_path / "a").read_bytes() == b"A" and (tmp_path / "b").read_bytes() == b"B"


def test_existing_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"keep")
    with (
        pytest.raises(InertError, match="already exists"),
        atomic_outputs([str(tmp_path / "a")], force=False),
    ):
        pytest.fail("the block must not run")
    assert (tmp_path / "a").read_bytes() == b"keep"


def test_short_input_is_reported() -> None:
    import io

    from inert.xor import FileSource

    with pytest.raises(InertError, match="the thing ended early: 3 of 10 bytes"):
        FileSource(io.BytesIO(b"abc"), 10, "the thing").fill(memoryview(bytearray(10)))
