"""The library: works <-> keys, and works -> reports, for programs and notebooks.

The policy the `inert` command follows lives here: which blob a key needs, which pad bytes a
pad key may use (fresh ones, recorded in the store before a byte is XORed), which key a
work gets (the smallest of the model's, a classical and a stored one), what a work is
compared with in a report. cli.py only parses arguments and presents results.

>>> import inert
>>> work = b"The quick brown fox jumps over the lazy dog.\\n"
>>> key = inert.encode(work)  # against the embedded default blob
>>> inert.decode(key) == work
True
>>> report = inert.explain(work, reference="pad")
>>> report.totals["bytes"], report.totals["tokens"] > 0
(45, True)
>>> report.totals["key_bits"] < report.totals["reference_bits"]  # the blob held some of it
True
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import pad
from .errors import InertError
from .keyfile import KeyHeader, Kind, check_payload_length, read_header
from .store import Blob, Store, check_blob

BlobRef = Blob | str | Path | None  # a Blob, a path, a store id, "default", or None: the default


def open_blob(ref: BlobRef = None, store: Store | None = None) -> Blob:
    """A blob by path or store id; "default" or None: the blob embedded in inert.

    >>> open_blob().kind.label
    'model'
    """
    from .default import NAME, default_blob

    if isinstance(ref, Blob):
        return ref
    if ref is None or (str(ref) == NAME and not os.path.exists(ref)):
        return default_blob()
    return (store or Store()).resolve(str(ref))


def blob_of_key(header: KeyHeader, ref: BlobRef = None, store: Store | None = None) -> Blob:
    """The blob a key names: `ref` if given, else the store's, else one shipped with inert."""
    from .default import shipped_blob

    if ref is not None:
        return open_blob(ref, store)
    store = store or Store()
    path = store.find(header.blob_id)
    if path is None and (shipped := shipped_blob(header.blob_id)):
        return shipped
    if path is None:
        raise InertError(
            f"blob {header.blob_id_hex} is not in the store ({store.blobs})",
            hint="pass it with --blob PATH, or add it once with: inert blob add PATH",
        )
    return store.identify(path)


# ---------------------------------------------------------------------------- encode


def encode(
    work: bytes,
    blob: BlobRef = None,
    *,
    codec: int | None = None,
    threads: int = 0,
    store: Store | None = None,
) -> bytes:
    """The key of `work` against `blob` (default: the embedded model).

    A model blob gives the smallest of the model's key, a classical one and a stored one
    (`codec`: the model codec, default the blob's best). A pad blob gives work XOR fresh pad
    bytes, reserved in the store as `inert encode` reserves them, so two keys never share
    pad bytes (which would leak the XOR of their works).
    """
    out = io.BytesIO()
    encode_to(io.BytesIO(work), len(work), out, blob, codec=codec, threads=threads, store=store)
    return out.getvalue()


def encode_to(
    work: BinaryIO,
    length: int,
    out: BinaryIO,
    blob: BlobRef = None,
    *,
    codec: int | None = None,
    threads: int = 0,
    store: Store | None = None,
    progress: Callable[[int], None] | None = None,
) -> Blob:
    """encode(), streaming: `length` bytes of `work` -> the key, written to the seekable
    `out`. Pad keys stream in constant memory; a model reads the whole work. Returns the
    blob used."""
    blob = open_blob(blob, store)
    if blob.kind is Kind.MODEL:
        from . import codec as model_codec

        loaded = model_codec.load_model(blob, threads)
        settings = model_codec.default_settings(loaded, length)
        if codec is not None:
            settings = replace(settings, codec=codec)
        data = work.read(length + 1)
        if len(data) != length:
            raise InertError(f"the work has {len(data)} bytes, not {length}")
        out.write(model_codec.encode_work(data, loaded, settings, progress)[0])
        return blob
    store = store or Store()
    offset, _ = reserve_pad_range(blob, length, store=store)
    try:
        pad.encode_stream(work, length, blob, offset, out, progress)
    except BaseException:  # the key never left this call: its pad bytes may serve another
        store.release_pad_range(blob.id, offset, length)
        raise
    return blob


def reserve_pad_range(
    blob: Blob, length: int, offset: int | None = None, store: Store | None = None
) -> tuple[int, bool]:
    """Pad bytes for a key of `length` bytes: a random range no key made here used (or the
    range at `offset`), recorded in the store under its lock before a byte is XORed.
    Returns the offset and whether that range overlaps one used before (only possible
    with an explicit offset). Give it back with Store.release_pad_range if the key is never
    written."""
    pad.check_random(blob)

    def choose(uses: list[tuple[int, int]]) -> int:
        if offset is None:
            return pad.choose_offset(blob.size, length, uses)
        if offset + length > blob.size:
            raise InertError(
                f"offset {offset} + work length {length} runs past the pad's {blob.size} bytes"
            )
        return offset

    chosen, uses = (store or Store()).reserve_pad_range(blob.id, length, choose)
    return chosen, offset is not None and pad.overlaps(chosen, length, uses)


# ---------------------------------------------------------------------------- decode


def decode(
    key: bytes, blob: BlobRef = None, *, threads: int = 0, store: Store | None = None
) -> bytes:
    """The work of `key`; `blob` by default is the one the key names (store, or shipped)."""
    out = io.BytesIO()
    decode_to(io.BytesIO(key), out, blob, threads=threads, store=store, length=len(key))
    return out.getvalue()


def decode_to(
    key: BinaryIO,
    out: BinaryIO,
    blob: BlobRef = None,
    *,
    threads: int = 0,
    store: Store | None = None,
    length: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> KeyHeader:
    """decode(), streaming: the key read from `key` (`length` bytes, if known, checks a
    pad's payload length up front) -> the work, written to `out` as it is decoded. Raises
    before writing anything if the key or blob is wrong, after (the caller discards the
    output) if the checksum does not match."""
    from . import codec

    header = read_header(key)
    if header.kind.is_share:
        raise InertError(
            f"this is share {header.param('index') + 1} of {header.param('count')}",
            hint="restore shares with inert.shares.join or: inert join SHARE... -o WORK",
        )
    if length is not None and header.kind in (Kind.PAD, Kind.STORED):
        check_payload_length(header, length - key.tell())
    if header.kind is Kind.STORED:
        codec.decode_stored(key, header, out)
        return header
    if header.kind is Kind.CLASSICAL:
        codec.decode_classical(key, header, out)
        return header
    found = blob_of_key(header, blob, store)
    check_blob(header, found)
    if header.kind is Kind.MODEL:
        codec.decode_key(key, header, codec.load_model(found, threads), out, progress=progress)
    else:
        pad.decode_stream(key, header, found, out, progress)
    return header


# ---------------------------------------------------------------------------- explain


@dataclass
class Report:
    """What `inert explain` shows of one work: `result` is the `--json` document
    (docs/EXPLAIN.md; its "tokens" made as they are read), `ledger` the per-token arrays."""

    result: dict
    ledger: object  # ledger.Ledger
    reference_name: str
    reference_bits: np.ndarray = field(repr=False)  # (T,) float64

    @property
    def totals(self) -> dict:
        return self.result["totals"]

    def write_json(self, out: BinaryIO) -> None:
        from .ledger import write_json

        write_json(self.result, out)

    def html(self) -> str:
        from .html import render

        return render(self.result, self.ledger.work)  # type: ignore[attr-defined]


def explain(
    work: bytes,
    blob: BlobRef = None,
    *,
    reference: str | BlobRef = "classical",
    codec: int | None = None,
    segment_tokens: int | None = None,
    recall_tokens: int = 32,
    recall_bits: float = 0.1,
    threads: int = 0,
    store: Store | None = None,
    on_rows: Callable | None = None,
) -> Report:
    """Where does `work` live: its ledger against the model `blob`, compared with
    `reference` — "classical" (the best classical compressor), "pad" (8 bits per byte) or
    a second model blob. on_rows(ledger, a, b, reference_bits) is called as tokens a..b-1
    become final (not with a model reference, whose bits come at the end)."""
    from . import codec as model_codec
    from . import ledger

    blob = open_blob(blob, store)
    if blob.kind is not Kind.MODEL:
        raise InertError(
            f"{blob.path} is a pad; it holds nothing of any work", hint="explain needs a model blob"
        )
    other = None if reference in ("pad", "classical") else open_blob(reference, store)
    if other is not None and other.kind is not Kind.MODEL:
        raise InertError("a reference must be pad, classical or a model blob")
    loaded = model_codec.load_model(blob, threads)
    settings = model_codec.default_settings(loaded, len(work))
    if codec is not None:
        settings = replace(settings, codec=codec)
    if segment_tokens is not None:
        settings = replace(settings, segment_tokens=segment_tokens)
    with ThreadPoolExecutor(1) as aside:  # the compressors run while the model does
        from .classical import best

        classical = aside.submit(best, work) if reference == "classical" else None
        known: list[tuple[str, np.ndarray]] = []  # made once: at the first rows or the end

        def reference_bits(book: ledger.Ledger) -> tuple[str, np.ndarray]:
            if not known and classical is None:
                known.append(("pad (8 bits per byte)", ledger.pad_reference(book)))
            elif not known:
                compressor, size = classical.result()
                known.append((f"classical: {compressor}", ledger.spread_by_bytes(book, 8.0 * size)))
            return known[0]

        def rows(book: ledger.Ledger, a: int, b: int) -> None:
            assert on_rows is not None
            on_rows(book, a, b, reference_bits(book)[1][a:b])

        streaming = on_rows is not None and other is None
        book = ledger.build_ledger(work, loaded, settings, on_rows=rows if streaming else None)
        if other is None:
            name, ref_bits = reference_bits(book)
        else:
            other_book = ledger.build_ledger(work, model_codec.load_model(other, threads), settings)
            name, ref_bits = f"model {other.id_hex}", ledger.blob_reference(book, other_book)
    rule = ledger.RecallRule(recall_tokens, recall_bits)
    result = ledger.report(book, name, ref_bits, rule)
    result["blob"] = {"id": blob.id_hex, "path": str(blob.path)}
    return Report(result, book, name, ref_bits)
