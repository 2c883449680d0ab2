"""The ledger's arithmetic: token bits add up to the key, spans tile the work, ranks agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inert import codec
from inert.keyfile import parse_key
from inert.ledger import build_ledger, pad_reference, report

TEXT = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()


@pytest.mark.parametrize("version", [1, 2])
def test_key_bits_per_token_sum_to_the_payload(tiny, version: int) -> None:
    settings = codec.CodecSettings(segment_tokens=32, codec=version)
    work = TEXT * 2  # the second copy: the work's own repeats, for codec 2
    ledger = build_ledger(work, tiny, settings)
    key, _ = codec.model_key(work, tiny, settings)
    _, payload = parse_key(key)
    assert abs(ledger.total_key_bits - 8 * len(payload)) < 1e-6
    assert np.all(ledger.flush_bits >= 0) and np.count_nonzero(ledger.flush_bits) == -(
        -len(ledger.bits) // 32
    )
    totals = report(ledger, "pad", pad_reference(ledger))["totals"]
    # reference = held by the blob + supplied by the work's repeats + the key's coded bits
    coded = totals["key_bits"] - ledger.flush_bits.sum()
    parts = totals["blob_held_bits"] + totals["repeat_bits"] + coded
    assert abs(parts - totals["reference_bits"]) < 1e-6
    if version == 1:
        assert np.array_equal(ledger.coded_bits, ledger.bits) and totals["repeat_bits"] == 0
    else:  # the second copy costs far less than the blob alone would charge
        half = len(ledger.bits) // 2
        assert ledger.coded_bits[half:].sum() < 0.8 * ledger.bits[half:].sum()


@pytest.mark.parametrize("version", [3, 4, 5])
def test_one_stream_codecs_key_bits_sum_to_the_payload(tiny, version: int) -> None:
    settings = codec.CodecSettings(segment_tokens=32, codec=version)
    work = TEXT * 2
    ledger = build_ledger(work, tiny, settings)
    key, stats = codec.model_key(work, tiny, settings)
    assert abs(ledger.total_key_bits - 8 * len(parse_key(key)[1])) < 1e-6
    assert abs(ledger.coded_bits.sum() - stats.ideal_bits) < 1e-6  # the very intervals coded
    assert np.count_nonzero(ledger.flush_bits) <= 1  # one flush, on the last token
    if version > 3:  # the second copy costs far less than the blob alone would charge
        half = len(ledger.bits) // 2
        assert ledger.coded_bits[half:].sum() < 0.8 * ledger.bits[half:].sum()


def test_spans_tile_the_work(tiny) -> None:
    ledger = build_ledger(TEXT, tiny)
    assert ledger.starts[0] == 0 and ledger.ends[-1] == len(TEXT)
    assert np.array_equal(ledger.starts[1:], ledger.ends[:-1])
    pieces = b"".join(TEXT[a:b] for a, b in zip(ledger.starts, ledger.ends, strict=True))
    assert pieces == TEXT


def test_ranks_and_alternatives_agree(tiny) -> None:
    ledger = build_ledger(TEXT, tiny, top_k=5)
    first_choice = ledger.ranks == 1
    assert np.array_equal(ledger.top_ids[first_choice, 0], ledger.token_ids[first_choice])
    assert np.all(np.diff(ledger.top_bits, axis=1) >= 0)  # best first
    assert np.all(ledger.bits >= ledger.top_bits[:, 0] - 1e-12)
    # every rank is 1 + the tokens the blob found strictly more likely, counted in full here
    settings = codec.CodecSettings(segment_tokens=ledger.segment_tokens)
    for tables in codec.coded_tables(tiny.engine, ledger.token_ids, settings):
        freq, start = tables.freq, tables.first
        end = start + len(freq)
        chosen = freq[np.arange(len(freq)), ledger.token_ids[start:end]]
        expected = 1 + np.sum(freq > chosen[:, None], axis=1)
        assert np.array_equal(ledger.ranks[start:end], expected)
    assert ledger.ranks.max() > 5  # the count over the whole vocabulary was needed too


def fake_ledger(bits: list[float]):  # a Ledger whose costs the test chooses
    from inert.ledger import Ledger

    n = len(bits)
    starts = np.arange(n, dtype=np.int64)
    return Ledger(
        b"x" * n,
        np.zeros(n, np.int64),
        starts,
        starts + 1,
        np.array(bits, float),
        np.array(bits, float),
        np.zeros(n),
        np.ones(n, np.int64),
        np.zeros((n, 1), np.int64),
        np.zeros((n, 1)),
        64,
        [b"x"],
    )


def test_recalled_span_is_found_and_a_new_paragraph_is_not() -> None:
    from inert.ledger import RecallRule, recalled_spans

    bits = [9.0] * 20 + [0.01] * 40 + [7.0] * 30 + [0.02] * 10 + [0.0] * 35
    spans = recalled_spans(fake_ledger(bits), RecallRule(min_tokens=32, max_mean_bits=0.1))
    assert [(s.first, s.last) for s in spans] == [(20, 59), (90, 134)]


def test_extraction_probability_of_windows() -> None:
    from inert.ledger import extraction_log2_probabilities

    logp = extraction_log2_probabilities(fake_ledger([1.0] * 60), window=50)
    assert logp.shape == (11,) and np.allclose(logp, -50.0)


def test_lines_and_paragraphs_partition_the_bits(tiny) -> None:
    from inert.ledger import group_bits

    ledger = build_ledger(TEXT, tiny)
    for separator in (b"\n", b"\n\n"):
        groups = group_bits(ledger, separator)
        assert groups[0][0] == 0 and groups[-1][1] == len(TEXT)
        assert abs(sum(g[2] for g in groups) - ledger.total_key_bits) < 1e-6
        assert abs(sum(g[3] for g in groups) - 8 * len(TEXT)) < 1e-6


def test_top_tokens_are_best_first_with_ties_to_the_lower_id() -> None:
    from inert.ledger import top_tokens

    freq = np.array([[5, 9, 9, 1, 9, 2], [1, 1, 1, 1, 1, 1], [0, 3, 7, 7, 1, 8]])
    assert top_tokens(freq, 3).tolist() == [[1, 2, 4], [0, 1, 2], [5, 2, 3]]
    rng = np.random.default_rng(0)
    many = rng.integers(0, 5, size=(200, 50))
    expected = np.argsort(-many, axis=1, kind="stable")[:, :4]
    assert np.array_equal(top_tokens(many, 4), expected)
    # a real vocabulary's width takes the block search: heavy tails, ties inside and across blocks
    wide = (rng.pareto(1.0, size=(300, 4096)) * 50).astype(np.int64) + 1
    wide[:20] = rng.integers(1, 4, size=(20, 4096))  # ties at the cutoff everywhere
    wide[20:40, ::97] = 10**6  # the best tokens tie, spread over many blocks
    expected = np.argsort(-wide, axis=1, kind="stable")[:, :5]
    assert np.array_equal(top_tokens(wide, 5), expected)


def test_json_streamed_segment_by_segment_is_the_json_written_at_the_end(tiny) -> None:
    """explain's JSON child gets each segment's rows as they are done: same bytes."""
    import io

    from inert.ledger import rows, spread_by_bytes, stream_json, write_json

    work = TEXT + "é — 😀 \x00\n".encode() + TEXT[:500]
    messages: list[tuple] = []

    def send(book, a: int, b: int) -> None:
        reference = spread_by_bytes(book, 1234.5)  # as -r classical spreads a size
        messages.append(("rows", book.segment_tokens, rows(book, a, b), reference[a:b]))

    settings = codec.CodecSettings(segment_tokens=16)
    ledger = build_ledger(work, tiny, settings, on_rows=send)
    assert len(messages) == -(-len(ledger.bits) // 16) > 3  # one message per segment
    result = report(ledger, "classical: test", spread_by_bytes(ledger, 1234.5))
    whole, streamed = io.BytesIO(), io.BytesIO()
    write_json(result, whole)
    head = {k: v for k, v in result.items() if k != "tokens"}
    stream_json(streamed, work, ledger.token_bytes, iter([*messages, ("end", head)]))
    assert streamed.getvalue() == whole.getvalue()


def test_json_records_are_byte_for_byte_what_json_dumps_writes(tiny) -> None:
    import json

    from inert.ledger import TokenRecords

    work = TEXT + 'quotes " and \\ back\\slash, tab\t, é, 😀, \x01\n'.encode() + b"\xff\xfe"
    ledger = build_ledger(work, tiny)
    records = TokenRecords(ledger, pad_reference(ledger))
    expected = ", ".join(json.dumps(r, ensure_ascii=False) for r in records)
    assert ", ".join(records.json_text()) == expected
    assert [r["text"] for r in json.loads(f"[{expected}]")][-1].endswith("\ufffd")
