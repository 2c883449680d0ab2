"""The library: the same policy as the command, callable from a program."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

import inert
from inert.errors import InertError
from inert.keyfile import Kind, parse_key
from inert.store import Store

CORPUS = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes() * 4  # 2,676 bytes


def test_pad_keys_get_fresh_pad_bytes_each_time(pad_path: Path) -> None:
    store = Store()
    store.add(pad_path)
    works = [CORPUS[i * 500 : (i + 1) * 500] for i in range(6)]
    keys = [inert.encode(w, pad_path) for w in works]
    ranges = sorted(
        (parse_key(k)[0].param("offset"), len(w)) for k, w in zip(keys, works, strict=True)
    )
    for (a, n), (b, _) in itertools.pairwise(ranges):
        assert a + n <= b  # no two keys share a pad byte
    assert [inert.decode(k) for k in keys] == works  # the store knows the pad


def test_a_failed_pad_encode_gives_its_range_back(pad_path: Path) -> None:
    with pytest.raises(InertError, match="ended early"):  # a work shorter than promised
        inert.encode_to(io.BytesIO(CORPUS[:10]), 1000, io.BytesIO(), pad_path)
    assert Store().pad_uses(inert.open_blob(pad_path).id) == []


def test_model_keys_round_trip_through_streams(tiny_blob: Path) -> None:
    out = io.BytesIO()
    inert.encode_to(io.BytesIO(CORPUS[:2000]), 2000, out, tiny_blob)
    work = io.BytesIO()
    header = inert.decode_to(io.BytesIO(out.getvalue()), work, tiny_blob)
    assert work.getvalue() == CORPUS[:2000] and header.work_length == 2000


def test_decode_names_a_missing_blob(tiny_blob: Path) -> None:
    key = inert.encode(CORPUS[:300], tiny_blob, codec=3)
    if parse_key(key)[0].kind is Kind.MODEL:
        with pytest.raises(InertError, match="not in the store"):
            inert.decode(key)
    assert inert.decode(key, tiny_blob) == CORPUS[:300]


def test_explain_reports_what_the_command_reports(tiny_blob: Path) -> None:
    work = CORPUS[:1500]
    report = inert.explain(work, tiny_blob, reference="pad")
    totals = report.totals
    assert totals["bytes"] == 1500 and totals["reference_bits"] == 8 * 1500
    assert totals["held_bits"] == pytest.approx(totals["reference_bits"] - totals["key_bits"])
    classical = inert.explain(work, tiny_blob)
    assert classical.reference_name.startswith("classical: ")
    assert classical.totals["key_bits"] == totals["key_bits"]
    rows: list[tuple[int, int]] = []
    inert.explain(work, tiny_blob, on_rows=lambda book, a, b, ref: rows.append((a, b)))
    assert rows[0][0] == 0 and rows[-1][1] == totals["tokens"]
    out = io.BytesIO()
    report.write_json(out)
    assert b'"inert-explain/1"' in out.getvalue()


def test_explain_refuses_a_pad(pad_path: Path) -> None:
    with pytest.raises(InertError, match="holds nothing"):
        inert.explain(b"text", pad_path)
