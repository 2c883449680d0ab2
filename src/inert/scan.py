"""A corpus -> one Parquet row per work: inert.explain over many works, locally or on Ray.

Sources: a folder (every file, its path the id), a JSONL file or a Parquet file (id and text
fields by name). Each row is computed by `row_of`, which calls inert.explain — the same
ledger as `inert explain` — in a worker that loaded the blob once: a local process pool, or
Ray Data actors. Rows reach the output in parts, each written whole (a temporary file,
renamed) to OUTPUT.parts/; the finished scan merges them into OUTPUT. A scan run again
skips every work already in OUTPUT or its parts, so an interrupted scan (Ctrl-C, a killed
worker or driver) loses at most the works in flight, and no work gets two rows.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import InertError

WINDOW = 50  # tokens per extraction window (Cooper et al.)
# a part is written every PART_ROWS rows or PART_SECONDS, whichever comes first: an
# interrupted scan loses none of the parts written
PART_ROWS = 64
PART_SECONDS = 5.0
# works handed to Ray Data at a time: the driver reads the source (the same reader, ids and
# per-record errors as the local pool) and never holds more than this many works
RAY_CHUNK = 1024

# (name, pyarrow type) of each column of a row, in order
COLUMNS = [
    ("id", "string"),
    ("bytes", "int64"),
    ("tokens", "int64"),
    ("key_bits", "float64"),  # what the model key spends (its payload)
    ("pad_bits", "float64"),  # 8 bits per byte
    ("classical_bits", "float64"),  # the best classical compressor's output
    ("classical", "string"),  # which one
    ("blob_bits", "float64"),  # Σ -log2 p under the blob alone
    ("held_bits", "float64"),  # classical bits - key bits
    ("held_fraction", "float64"),
    ("repeat_bits", "float64"),  # what the work's own repeats supplied
    ("longest_recall_tokens", "int64"),  # the longest recalled span (inert explain's rule)
    ("longest_recall_text", "string"),
    ("recalled_tokens", "int64"),  # in all recalled spans
    ("max_extraction_log2p", "float64"),  # the most probable 50-token window, log2 p
    ("max_extraction_at", "int64"),  # its first token
    ("windows_above_half", "float64"),  # fraction of 50-token windows with p > 0.5
    ("elapsed_s", "float64"),
    ("error", "string"),  # empty when fine
]
WINDOW_COLUMNS = [("id", "string"), ("log2p", "list<float32>")]  # every window of a work


def _schema(columns: list[tuple[str, str]]) -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    types["list<float32>"] = pa.list_(pa.float32())
    return pa.schema([(name, types[kind]) for name, kind in columns])


# ---------------------------------------------------------------------------- sources


@dataclass
class Work:
    id: str
    data: bytes
    error: str = ""  # the source could not give this work's bytes


def read_source(
    source: str | Path, id_field: str = "id", text_field: str = "text"
) -> Iterator[Work]:
    """The works of a folder, a .jsonl or a .parquet file, in a stable order."""
    path = Path(source)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            name = file.relative_to(path).as_posix()
            try:
                yield Work(name, file.read_bytes())
            except OSError as e:
                yield Work(name, b"", f"cannot read {name}: {e.strerror or e}")
    elif path.suffix == ".parquet":
        yield from _parquet_works(path, id_field, text_field)
    elif path.suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_works(path, id_field, text_field)
    elif path.exists():
        raise InertError(f"{path}: a scan reads a folder, a .jsonl or a .parquet file")
    else:
        raise InertError(f"{path}: no such file or folder")


def _jsonl_works(path: Path, id_field: str, text_field: str) -> Iterator[Work]:
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                text = record[text_field]
                work_id = str(record.get(id_field, f"line {number}"))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                yield Work(
                    f"line {number}", b"", f"not a JSON record with a {text_field!r} field ({e})"
                )
                continue
            if isinstance(text, str):
                yield Work(work_id, text.encode("utf-8", "surrogatepass"))
            else:
                yield Work(work_id, b"", f"its {text_field!r} field is not text")


def _parquet_works(path: Path, id_field: str, text_field: str) -> Iterator[Work]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow's errors for files that are not Parquet
        raise InertError(f"{path}: not a Parquet file ({e})") from None
    names = table.schema_arrow.names
    if text_field not in names:
        raise InertError(f"{path} has no column {text_field!r}", hint="name it with --text-field")
    columns = [text_field] + ([id_field] if id_field in names else [])
    row = 0
    for batch in table.iter_batches(columns=columns):
        texts = batch.column(text_field).to_pylist()
        ids = batch.column(id_field).to_pylist() if id_field in names else [None] * len(texts)
        for work_id, text in zip(ids, texts, strict=True):
            work_id = str(work_id) if work_id is not None else f"row {row}"
            row += 1
            if isinstance(text, str):
                yield Work(work_id, text.encode("utf-8", "surrogatepass"))
            elif isinstance(text, bytes):
                yield Work(work_id, text)
            else:
                yield Work(work_id, b"", f"its {text_field!r} value is not text")


# ---------------------------------------------------------------------------- rows


def row_of(work: Work, blob: Any, threads: int = 1) -> tuple[dict, np.ndarray]:
    """A work's row (COLUMNS) and its windows' log2 probabilities (W,) float32."""
    from . import api, ledger

    start = time.perf_counter()
    row: dict[str, Any] = {name: None for name, _ in COLUMNS}
    row.update(id=work.id, bytes=len(work.data), error=work.error)
    windows = np.zeros(0, dtype=np.float32)
    if work.error:
        row["elapsed_s"] = 0.0
        return row, windows
    try:
        report = api.explain(work.data, blob, reference="classical", threads=threads)
    except Exception as e:  # one work's failure is its row's, never the scan's
        message = str(e) if isinstance(e, InertError) else f"{type(e).__name__}: {e}"
        row.update(error=message, elapsed_s=time.perf_counter() - start)
        return row, windows
    t, spans = report.totals, report.result["recall"]["spans"]
    logp = ledger.extraction_log2_probabilities(report.ledger, WINDOW)  # type: ignore[arg-type]
    longest = max(spans, key=lambda s: s["tokens"], default=None)
    extraction = report.result["extraction"]
    row.update(
        tokens=t["tokens"],
        key_bits=t["key_bits"],
        pad_bits=8.0 * len(work.data),
        classical_bits=t["reference_bits"],
        classical=report.reference_name.removeprefix("classical: "),
        blob_bits=t["blob_bits"],
        held_bits=t["held_bits"],
        held_fraction=t["held_fraction"],
        repeat_bits=t["repeat_bits"],
        longest_recall_tokens=longest["tokens"] if longest else 0,
        longest_recall_text=longest["text"] if longest else "",
        recalled_tokens=sum(s["tokens"] for s in spans),
        max_extraction_log2p=extraction["max_log2_probability"],
        max_extraction_at=extraction["at_token"],
        windows_above_half=float(np.mean(logp > -1.0)) if len(logp) else 0.0,
        elapsed_s=time.perf_counter() - start,
    )
    return row, logp.astype(np.float32)


# ---------------------------------------------------------------------------- output


class Output:
    """OUTPUT and OUTPUT.parts/: which works are done, and rows written a part at a time."""

    def __init__(self, path: Path, windows: Path | None) -> None:
        self.path, self.windows = path, windows
        self.parts = path.with_name(path.name + ".parts")
        self.rows: list[dict] = []
        self.window_rows: list[dict] = []
        self.done = self._done_ids()
        self.flushed = time.monotonic()

    def _done_ids(self) -> set[str]:
        import pyarrow.parquet as pq

        files = [self.path] if self.path.exists() else []
        if self.parts.is_dir():
            files += sorted(self.parts.glob("part-*.parquet"))
        done: set[str] = set()
        for file in files:
            try:
                done.update(pq.read_table(file, columns=["id"]).column("id").to_pylist())
            except Exception as e:  # pyarrow: not a Parquet file, or not one of ours
                raise InertError(
                    f"{file} is not a scan's output ({e})", hint="move it away"
                ) from None
        return done

    def add(self, row: dict, windows: np.ndarray) -> None:
        self.rows.append(row)
        self.done.add(row["id"])
        if self.windows is not None:
            self.window_rows.append({"id": row["id"], "log2p": windows.tolist()})
        if len(self.rows) >= PART_ROWS or time.monotonic() - self.flushed > PART_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the rows so far as the next part (windows first: a row's windows are never
        missing once its row is written)."""
        if not self.rows:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        number = len(list(self.parts.glob("part-*.parquet")))
        if self.windows is not None:
            _write(self.parts / f"windows-{number:06d}.parquet", self.window_rows, WINDOW_COLUMNS)
        _write(self.parts / f"part-{number:06d}.parquet", self.rows, COLUMNS)
        self.rows, self.window_rows = [], []
        self.flushed = time.monotonic()

    def finish(self) -> None:
        """Merge OUTPUT and every part into OUTPUT (and the windows' file), then drop the parts."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.flush()
        if not self.parts.is_dir():
            if not self.path.exists():
                _write(self.path, [], COLUMNS)
            return
        merges = [(self.path, "part-*.parquet", COLUMNS)]
        if self.windows is not None:
            merges.append((self.windows, "windows-*.parquet", WINDOW_COLUMNS))
        for target, pattern, columns in merges:
            tables = [pq.read_table(target)] if target.exists() else []
            tables += [pq.read_table(p) for p in sorted(self.parts.glob(pattern))]
            merged = (
                pa.concat_tables([t.cast(_schema(columns)) for t in tables]) if tables else None
            )
            _write_table(target, merged if merged is not None else _table([], columns))
        for part in self.parts.iterdir():
            part.unlink()
        self.parts.rmdir()


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> Any:
    import pyarrow as pa

    schema = _schema(columns)
    return pa.Table.from_pylist(rows, schema=schema)


def _write(path: Path, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    _write_table(path, _table(rows, columns))


def _write_table(path: Path, table: Any) -> None:
    """Write a whole Parquet file or nothing: a temporary file, synced, then renamed."""
    import pyarrow.parquet as pq

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- runners

_WORKER: dict[str, Any] = {}


def _start_worker(blob_path: str) -> None:
    """Load the blob once per worker process (which dies with the scan that started it)."""
    from . import api, codec

    _die_with_parent()
    blob = api.open_blob(blob_path)
    codec.load_model(blob, 1)
    _WORKER["blob"] = blob


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a killed scan leaves no workers
    behind); elsewhere the pool's own shutdown has to do."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _work_in_worker(work: Work) -> tuple[dict, np.ndarray]:
    return row_of(work, _WORKER["blob"])


def run_local(
    works: Iterable[Work], blob_path: str, workers: int
) -> Iterator[tuple[dict, np.ndarray]]:
    """Rows as workers finish them: a pool of `workers` processes, at most 2 works each in
    flight (a corpus is never read whole into memory)."""
    from multiprocessing import get_context

    pending: set = set()
    context = get_context("spawn")  # a fresh interpreter: no inherited threads or locks
    with ProcessPoolExecutor(workers, context, _start_worker, (blob_path,)) as pool:
        for work in works:
            pending.add(pool.submit(_work_in_worker, work))
            if len(pending) >= 2 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in finished)


class _RayScanner:
    """A Ray Data actor: the blob loaded once, then a batch of works -> their rows."""

    def __init__(self, blob_path: str) -> None:
        _start_worker(blob_path)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows, windows = [], []
        for work_id, data, error in zip(batch["id"], batch["data"], batch["error"], strict=True):
            row, logp = row_of(Work(str(work_id), bytes(data), str(error)), _WORKER["blob"])
            rows.append(json.dumps(row))
            windows.append(logp.tobytes())
        return {"row": rows, "windows": windows}


def run_ray(
    works: Iterable[Work], blob_path: str, workers: int, address: str
) -> Iterator[tuple[dict, np.ndarray]]:
    """Rows from Ray Data: the works as a dataset, map_batches over `workers` actors that
    each load the blob once. `address`: "auto" (a running cluster), "local" (start one in
    this process) or a cluster's address."""
    try:
        import ray
    except ImportError:
        raise InertError("--ray needs Ray", hint="pip install 'inert[ray]'") from None
    started_here = not ray.is_initialized()
    try:
        ray.init(
            address=None if address == "local" else address,
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InertError(
            f"cannot reach a Ray cluster at {address!r}: {e}",
            hint="start one with: ray start --head",
        ) from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the CLI shows its own progress
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        works = iter(works)
        while chunk := list(itertools.islice(works, RAY_CHUNK)):  # the driver holds a chunk
            items = [{"id": w.id, "data": w.data, "error": w.error} for w in chunk]
            dataset = ray.data.from_items(items).map_batches(
                _RayScanner,
                fn_constructor_kwargs={"blob_path": blob_path},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
            )
            for record in dataset.iter_rows():
                row, windows = json.loads(record["row"]), record["windows"]
                yield row, np.frombuffer(windows, dtype=np.float32)
    finally:
        if started_here:  # this process's connection (and a local instance) ends with the scan
            ray.shutdown()


def count_source(source: str | Path) -> int | None:
    """How many works a source holds, when that is cheap to know (for a progress bar)."""
    path = Path(source)
    if path.is_dir():
        return sum(1 for p in path.rglob("*") if p.is_file())
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception:  # read_source says what is wrong with it
            return None
    if path.suffix in (".jsonl", ".ndjson"):
        with open(path, "rb") as lines:
            return sum(1 for line in lines if line.strip())
    return None


@contextmanager
def _exclusive(output: Path) -> Iterator[None]:
    """One scan at a time writes an output (a second would give works two rows)."""
    lock = output.with_name(f".{output.name}.lock")
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InertError(f"another scan is writing {output}") from None
        yield


def scan(
    source: str | Path,
    blob_path: str,
    output: str | Path,
    *,
    windows: str | Path | None = None,
    workers: int = 0,
    ray: str | None = None,
    id_field: str = "id",
    text_field: str = "text",
    on_row: Callable[[dict], None] | None = None,
) -> Summary:
    """Scan every work of `source` not yet in `output`."""
    with _exclusive(Path(output)):
        return _scan(
            source, blob_path, Path(output), windows, workers, ray, id_field, text_field, on_row
        )


def _scan(
    source: str | Path,
    blob_path: str,
    output: Path,
    windows: str | Path | None,
    workers: int,
    ray: str | None,
    id_field: str,
    text_field: str,
    on_row: Callable[[dict], None] | None,
) -> Summary:
    out = Output(output, Path(windows) if windows else None)
    kept = len(out.done)
    todo = (w for w in read_source(source, id_field, text_field) if w.id not in out.done)
    workers = workers or os.cpu_count() or 1
    seen: set[str] = set()

    def once(works: Iterable[Work]) -> Iterator[Work]:  # a source that repeats an id
        for work in works:
            if work.id in seen:
                raise InertError(f"the source holds two works with the id {work.id!r}")
            seen.add(work.id)
            yield work

    if ray:
        rows = run_ray(once(todo), blob_path, workers, ray)
    else:
        rows = run_local(once(todo), blob_path, workers)
    added = errors = 0
    try:
        for row, logp in rows:
            out.add(row, logp)
            added += 1
            errors += bool(row["error"])
            if on_row:
                on_row(row)
    except BrokenProcessPool:
        raise InertError(
            f"a scan worker died (killed, or out of memory); the {added} rows done are kept",
            hint="run the same scan again: it resumes where this one stopped",
        ) from None
    finally:  # Ctrl-C, a dead worker: what is done is kept, a part at a time
        out.flush()
    out.finish()
    return Summary(added, kept, errors)


@dataclass
class Summary:
    added: int  # rows this scan wrote
    kept: int  # rows that were there before
    errors: int  # of the rows added, those whose work could not be explained


# ---------------------------------------------------------------------------- heatmap


def heatmap(windows: str | Path, image: BinaryIO, columns: int = 1000) -> None:
    """Each work's windows' extraction probabilities as one row of an image (Cooper et al.):
    position along the work left to right, probability 0 (dark) to 1 (bright)."""
    import pyarrow.parquet as pq

    from .plot import pyplot

    table = pq.read_table(windows).sort_by("id")
    series = [np.exp2(np.asarray(v, dtype=np.float64)) for v in table.column("log2p").to_pylist()]
    width = min(columns, max((len(s) for s in series), default=1)) or 1
    grid = np.full((max(len(series), 1), width), np.nan)
    for i, s in enumerate(series):
        if len(s):  # each work resampled to the width by the maximum of each bin
            edges = np.linspace(0, len(s), width + 1).astype(int)
            grid[i] = [s[a : max(b, a + 1)].max() for a, b in itertools.pairwise(edges)]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.12 * len(series)), layout="constrained")
    shown = ax.imshow(grid, aspect="auto", interpolation="nearest", vmin=0, vmax=1, cmap="magma")
    ax.set_xlabel(f"position in the work ({WINDOW}-token windows, each row scaled to the width)")
    ax.set_ylabel("work")
    ax.set_yticks(range(len(series)), table.column("id").to_pylist(), fontsize=6)
    fig.colorbar(shown, label="extraction probability")
    fig.savefig(image, format="png", dpi=150)
    plt.close(fig)
