"""Tiny model blobs for tests: a byte-level BPE tokenizer trained here and seeded random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inert.modelfile import ModelConfig, model_bytes
from inert.tokens import train_tokenizer

CORPUS = (Path(__file__).parent / "golden" / "corpus.txt").read_text()


def tiny_model_bytes(seed: int = 0, vocab: int = 320, **overrides: object) -> bytes:
    tokenizer_json = train_tokenizer([CORPUS], vocab)
    settings: dict = dict(
        dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64, max_seq_len=64, bos_token_id=0
    )
    settings |= overrides
    from inert.tokens import Vocabulary

    config = ModelConfig(vocab_size=len(Vocabulary(tokenizer_json)), **settings)
    rng = np.random.default_rng(seed)
    weights = {name: rng.normal(0, 1.5 / np.sqrt(s[1]), s) for name, s in config.matrices().items()}
    weights |= {name: 1 + rng.normal(0, 0.2, n) for name, n in config.gains().items()}
    weights |= {name: rng.normal(0, 0.2, n) for name, n in config.biases().items()}
    return model_bytes(config, tokenizer_json, weights)
