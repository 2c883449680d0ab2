"""The ledger's arithmetic: token bits add up to the key, spans tile the work, ranks agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inert import codec
from inert.keyfile import parse_key
from inert.ledger import build_ledger

TEXT = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()


def test_key_bits_per_token_sum_to_the_payload(tiny) -> None:
    settings = codec.CodecSettings(segment_tokens=32)
    ledger = build_ledger(TEXT, tiny, settings)
    key, _ = codec.model_key(TEXT, tiny, settings)
    _, payload = parse_key(key)
    assert abs(ledger.total_key_bits - 8 * len(payload)) < 1e-6
    assert np.all(ledger.flush_bits >= 0) and np.count_nonzero(ledger.flush_bits) == -(
        -len(ledger.bits) // 32
    )


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
