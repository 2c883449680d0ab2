"""Tokenization: any bytes round-trip; byte tokens where the tokenizer would alter text."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inert.tokens import Vocabulary

AWKWARD = [
    b"",
    b"a",
    b"\x00",
    b"\xff\xfe\xfd",
    "emoji 😀👍🏽 and ZWJ 👩‍👩‍👧".encode(),
    b"mixed\r\nnew\rlines\n\n",
    b"\xc3",  # truncated UTF-8
    "Ünïcode".encode() + b"\x80" + b" tail",
    b"<s> looks like a special token",
    b" " * 1000 + b"\t" * 10,
]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_any_bytes_round_trip(tiny, work: bytes) -> None:
    vocab = tiny.model.vocab
    ids = vocab.tokenize(work)
    assert ids.dtype == np.int64
    assert vocab.detokenize(ids) == work


def test_awkward_works_round_trip(tiny) -> None:
    for work in AWKWARD:
        assert tiny.model.vocab.detokenize(tiny.model.vocab.tokenize(work)) == work


def test_text_uses_merged_tokens(tiny) -> None:
    text = b"the quick brown fox jumps over the lazy dog"
    assert len(tiny.model.vocab.tokenize(text)) < 0.9 * len(text)  # a tiny vocabulary merges some


def test_long_work_is_cut_into_pieces_and_still_exact(tiny, monkeypatch) -> None:
    monkeypatch.setattr("inert.tokens.PIECE", 50)
    work = ("line of text number %d\n" * 40 % tuple(range(40))).encode() + b"x" * 500
    assert tiny.model.vocab.detokenize(tiny.model.vocab.tokenize(work)) == work


def test_normalising_tokenizer_falls_back_to_bytes(tiny) -> None:
    spec = json.loads(tiny.model.vocab.json)
    spec["normalizer"] = {"type": "NFKC"}  # would turn "ﬁ" into "fi" and "①" into "1"
    vocab = Vocabulary(json.dumps(spec))
    work = "the ﬁle ① is fine\nplain line\n".encode()
    ids = vocab.tokenize(work)
    assert vocab.detokenize(ids) == work
    plain = vocab.tokenize(b"plain line\n")
    assert len(plain) < len(b"plain line\n")  # unaffected lines keep merged tokens
