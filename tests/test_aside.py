"""Work run aside in a child process: its writes land, its failures reach the parent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO

import pytest

from inert import aside
from inert.aside import Aside
from inert.errors import InertError
from inert.streams import atomic_output


def write_and_flush(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


def fail(message: str) -> None:
    raise InertError(message)


def crash() -> None:
    raise ValueError("not an inert error")


@pytest.fixture(params=[True, False], ids=["forked", "inline"])
def forks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param and not aside.FORKS:
        pytest.skip("no fork on this system")
    monkeypatch.setattr(aside, "FORKS", request.param)
    return request.param


def test_a_child_writes_to_an_output_the_parent_publishes(tmp_path: Path, forks: bool) -> None:
    with atomic_output(str(tmp_path / "out"), force=False) as out:
        out.write(b"parent's header ")
        out.flush()
        helper = Aside(write_and_flush, out, b"child's bytes" * 1000)
        helper.wait()
    assert (tmp_path / "out").read_bytes() == b"parent's header " + b"child's bytes" * 1000


def test_a_failing_child_fails_the_parent_and_leaves_no_output(tmp_path: Path, forks: bool) -> None:
    with (
        pytest.raises(InertError, match="disk on fire"),
        atomic_output(str(tmp_path / "out"), force=False),
    ):
        Aside(fail, "disk on fire").wait()
    assert list(tmp_path.iterdir()) == []


def test_an_unexpected_error_in_a_child_comes_back_with_its_traceback() -> None:
    if not aside.FORKS:
        pytest.skip("no fork on this system")
    with pytest.raises(InertError, match="ValueError: not an inert error"):
        Aside(crash).wait()


def test_cancel_stops_a_child_that_is_still_running() -> None:
    if not aside.FORKS:
        pytest.skip("no fork on this system")
    start = time.perf_counter()
    helper = Aside(time.sleep, 30)
    helper.cancel()
    helper.wait()  # nothing left to wait for
    assert time.perf_counter() - start < 10


def write_all(out: BinaryIO, messages) -> None:
    for message in messages:
        write_and_flush(out, message)


def test_a_ready_child_prepares_at_once_and_writes_the_messages_sent_later(
    tmp_path: Path, forks: bool
) -> None:
    with atomic_output(str(tmp_path / "out"), force=False) as out:
        helper = Aside.ready(lambda messages: write_all(out, messages), prepare=lambda: None)
        for i in range(200):  # more than a pipe holds: the parent never waits for the child
            helper.send(bytes([i]) * 4000)
        helper.close()
        helper.wait()
    assert (tmp_path / "out").read_bytes() == b"".join(bytes([i]) * 4000 for i in range(200))


def test_ready_children_each_see_the_end_of_their_own_messages(tmp_path: Path, forks: bool) -> None:
    """A child forked later must not hold an earlier child's pipe open (it would never end)."""
    with (
        atomic_output(str(tmp_path / "a"), force=False) as a,
        atomic_output(str(tmp_path / "b"), force=False) as b,
    ):
        first = Aside.ready(lambda messages: write_all(a, messages), prepare=lambda: None)
        second = Aside.ready(lambda messages: write_all(b, messages), prepare=lambda: None)
        first.send(b"first")
        first.close()
        first.wait()  # would hang if the second child held the first one's pipe
        second.send(b"second")
        second.wait()
    assert (tmp_path / "a").read_bytes() == b"first"
    assert (tmp_path / "b").read_bytes() == b"second"


def test_a_ready_child_sent_nothing_ends_without_writing(tmp_path: Path, forks: bool) -> None:
    with atomic_output(str(tmp_path / "out"), force=False) as out:
        helper = Aside.ready(lambda messages: write_all(out, messages), prepare=lambda: None)
        helper.wait()
    assert (tmp_path / "out").read_bytes() == b""


def test_a_failing_preparation_is_reported() -> None:
    if not aside.FORKS:
        pytest.skip("no fork on this system")
    helper = Aside.ready(lambda messages: list(messages), prepare=lambda: fail("no matplotlib"))
    helper.send("anything")
    with pytest.raises(InertError, match="no matplotlib"):
        helper.wait()
