"""`inert scan`: a corpus against a model, one row per work, resumable, locally or on Ray."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inert import scan
from inert.errors import InertError

CORPUS = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()
INERT = Path(sys.executable).with_name("inert")


def rows(path: Path) -> list[dict]:
    """The rows of a scan's output by id, without the one column that varies: the time."""
    table = pq.read_table(path).sort_by("id").drop(["elapsed_s"])
    return table.to_pylist()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        (folder / f"w{i}.txt").write_bytes(CORPUS[i * 100 : i * 100 + 200 + 60 * i])
    (folder / "sub" / "repeat.txt").write_bytes(CORPUS * 3)  # recalled from its own start
    (folder / "empty").write_bytes(b"")
    return folder


def test_a_folder_gives_one_row_per_work(corpus: Path, tmp_path: Path, tiny_blob: Path) -> None:
    out = tmp_path / "rows.parquet"
    summary = scan.scan(corpus, str(tiny_blob), out, windows=tmp_path / "w.parquet", workers=2)
    assert (summary.added, summary.kept, summary.errors) == (7, 0, 0)
    table = pq.read_table(out)
    assert table.schema.names == [name for name, _ in scan.COLUMNS]
    got = {r["id"]: r for r in table.to_pylist()}
    assert sorted(got) == ["empty", "sub/repeat.txt", *(f"w{i}.txt" for i in range(5))]
    repeat = got["sub/repeat.txt"]
    assert repeat["bytes"] == 3 * len(CORPUS) and repeat["pad_bits"] == 8 * 3 * len(CORPUS)
    assert repeat["held_bits"] == pytest.approx(repeat["classical_bits"] - repeat["key_bits"])
    assert repeat["repeat_bits"] > 0 and repeat["error"] == ""
    assert got["empty"]["tokens"] == 0 and got["empty"]["error"] == ""
    assert not (tmp_path / "rows.parquet.parts").exists()
    windows = {r["id"]: r["log2p"] for r in pq.read_table(tmp_path / "w.parquet").to_pylist()}
    assert len(windows["sub/repeat.txt"]) == repeat["tokens"] - scan.WINDOW + 1
    assert max(windows["sub/repeat.txt"]) == pytest.approx(repeat["max_extraction_log2p"], abs=1e-3)


def test_bad_records_are_reported_in_their_rows(tmp_path: Path, tiny_blob: Path) -> None:
    source = tmp_path / "works.jsonl"
    lines = [{"id": "a", "text": "hello there"}, "not json", {"id": "b", "body": "x"}]
    lines.append({"id": "c", "text": CORPUS.decode()})
    source.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    out = tmp_path / "rows.parquet"
    summary = scan.scan(source, str(tiny_blob), out, workers=1)
    assert summary.errors == 2
    errors = {r["id"]: r["error"] for r in rows(out)}
    assert errors["a"] == errors["c"] == ""
    assert "not a JSON record" in errors["line 2"] and "'text'" in errors["line 3"]


def test_parquet_sources_and_resumed_scans(tmp_path: Path, tiny_blob: Path) -> None:
    source = tmp_path / "works.parquet"
    texts = [CORPUS[i * 50 : i * 50 + 150].decode("utf-8", "replace") for i in range(4)]
    pq.write_table(pa.table({"key": ["p", "q", "r", "s"], "body": texts}), source)
    out = tmp_path / "rows.parquet"
    first = scan.scan(source, str(tiny_blob), out, workers=1, id_field="key", text_field="body")
    again = scan.scan(source, str(tiny_blob), out, workers=1, id_field="key", text_field="body")
    assert (first.added, again.added, again.kept) == (4, 0, 4)
    assert [r["id"] for r in rows(out)] == ["p", "q", "r", "s"]
    with pytest.raises(InertError, match="no column 'text'"):
        scan.scan(source, str(tiny_blob), tmp_path / "other.parquet")


def test_a_killed_scan_resumes_without_losing_or_repeating_rows(
    tmp_path: Path, tiny_blob: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        (folder / f"{i:03d}.txt").write_bytes(CORPUS[(i * 7) % 400 :][:150])
    out = tmp_path / "rows.parquet"
    args = [str(INERT), "scan", str(folder), "-b", str(tiny_blob), "-o", str(out), "-j", "2", "-q"]
    run = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = tmp_path / "rows.parquet.parts"
    deadline = time.monotonic() + 120
    while not list(parts.glob("part-*.parquet")) and run.poll() is None:  # the first part
        assert time.monotonic() < deadline, "no part was written"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)  # the driver dies; its workers see their pipe close
    run.wait()
    assert not out.exists() or run.returncode == 0
    done = scan.Output(out, None).done
    assert len(done) > 0
    resumed = subprocess.run(args, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()
    ids = [r["id"] for r in rows(out)]
    assert ids == sorted(f"{i:03d}.txt" for i in range(300))  # each work once


def test_one_scan_at_a_time_writes_an_output(tmp_path: Path, corpus: Path, tiny_blob: Path) -> None:
    out = tmp_path / "rows.parquet"
    with scan._exclusive(out), pytest.raises(InertError, match="another scan"):
        scan.scan(corpus, str(tiny_blob), out)


def test_ray_gives_the_rows_of_the_process_pool(
    corpus: Path, tmp_path: Path, tiny_blob: Path
) -> None:
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    scan.scan(corpus, str(tiny_blob), local, workers=2)
    scan.scan(corpus, str(tiny_blob), on_ray, workers=2, ray="local")
    assert rows(on_ray) == rows(local)


def test_the_command_draws_a_heatmap(inert, corpus: Path, tmp_path: Path, tiny_blob: Path) -> None:
    result = inert("scan", corpus, "-b", tiny_blob, "-o", "rows.parquet", "--plot", "map.png")
    assert result.returncode == 0, result.stderr.decode()
    assert "7 works scanned" in result.stderr.decode()
    assert (tmp_path / "map.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "rows.windows.parquet").exists()
    again = inert("scan", corpus, "-b", tiny_blob, "-o", "rows.parquet")
    assert "0 works scanned, 7 already there" in again.stderr.decode()
