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


def test_a_ready_child_prepares_at_once_and_runs_with_the_arguments_sent_later(
    tmp_path: Path, forks: bool
) -> None:
    with atomic_output(str(tmp_path / "out"), force=False) as out:
        helper = Aside.ready(lambda data: write_and_flush(out, data), prepare=lambda: None)
        helper.run(b"sent later: " + bytes(range(256)))
        helper.wait()
    assert (tmp_path / "out").read_bytes() == b"sent later: " + bytes(range(256))


def test_a_ready_child_never_given_its_arguments_ends_without_running(
    tmp_path: Path, forks: bool
) -> None:
    with atomic_output(str(tmp_path / "out"), force=False) as out:
        helper = Aside.ready(lambda data: write_and_flush(out, data), prepare=lambda: None)
        helper.wait()
    assert (tmp_path / "out").read_bytes() == b""


def test_a_failing_preparation_is_reported() -> None:
    if not aside.FORKS:
        pytest.skip("no fork on this system")
    helper = Aside.ready(lambda: None, prepare=lambda: fail("matplotlib is missing"))
    helper.run()
    with pytest.raises(InertError, match="matplotlib is missing"):
        helper.wait()
