"""Shared fixtures: an isolated blob store per test, pads, and the real `inert` executable."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

INERT = Path(sys.executable).with_name("inert")  # the console script pip installed


@pytest.fixture(autouse=True)
def store_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty store: nothing leaks between tests or into ~/.local."""
    root = tmp_path / "store"
    monkeypatch.setenv("INERT_STORE", str(root))
    return root


@pytest.fixture
def pad_path(tmp_path: Path) -> Path:
    path = tmp_path / "test.pad"
    path.write_bytes(os.urandom(1 << 16))
    return path


@pytest.fixture
def inert_exe() -> Path:
    return INERT


Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def inert(tmp_path: Path) -> Run:
    """Run the installed `inert` command as a user would, in the test's folder."""

    def run(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(INERT), *map(str, args)],
            input=stdin,
            capture_output=True,
            cwd=tmp_path,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )

    return run


@pytest.fixture(scope="session")
def tiny_blob(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model blob made here: trained tokenizer, seeded random weights."""
    from tinymodel import tiny_model_bytes

    path = tmp_path_factory.mktemp("models") / "tiny.blob"
    path.write_bytes(tiny_model_bytes(seed=0))
    return path


@pytest.fixture(scope="session")
def tiny(tiny_blob: Path):
    from inert import codec
    from inert.store import open_blob

    return codec.load_model(open_blob(tiny_blob))
