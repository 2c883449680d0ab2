"""The integer engine: frequency tables identical however the work is evaluated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inert import exact
from inert.architecture import LayerSpec
from inert.engine import FREQ_TOTAL, Engine, logits_to_frequencies
from inert.modelfile import read_model
from inert.reference import ReferenceModel

TEXT = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()


def inputs(tiny, n: int = 60) -> np.ndarray:
    tokens = tiny.model.vocab.tokenize(TEXT)[:n]
    return np.concatenate([[tiny.model.config.bos_token_id], tokens[:-1]])


def test_tables_are_valid_distributions(tiny) -> None:
    x = inputs(tiny)[None]
    freq = tiny.engine.frequencies(x, tiny.engine.new_cache(1, x.shape[1]))
    assert freq.dtype == np.int64 and freq.shape == (1, x.shape[1], tiny.model.config.vocab_size)
    assert np.all(freq.sum(-1) == FREQ_TOTAL) and freq.min() >= 1


def test_prefill_equals_token_by_token(tiny) -> None:
    x = inputs(tiny)[None]
    e = tiny.engine
    prefill = e.frequencies(x, e.new_cache(1, x.shape[1]))
    cache = e.new_cache(1, x.shape[1])
    steps = np.concatenate(
        [e.frequencies(x[:, i : i + 1], cache) for i in range(x.shape[1])], axis=1
    )
    assert np.array_equal(prefill, steps)
    # and in uneven chunks
    cache = e.new_cache(1, x.shape[1])
    chunks = np.concatenate(
        [e.frequencies(x[:, a:b], cache) for a, b in [(0, 7), (7, 8), (8, 60)]], axis=1
    )
    assert np.array_equal(prefill, chunks)


def test_batch_of_16_equals_each_alone(tiny) -> None:
    e = tiny.engine
    rng = np.random.default_rng(0)
    batch = rng.integers(0, tiny.model.config.vocab_size, size=(16, 40))
    together = e.frequencies(batch, e.new_cache(16, 40))
    for i in range(16):
        alone = e.frequencies(batch[i : i + 1], e.new_cache(1, 40))
        assert np.array_equal(together[i], alone[0])


def test_engine_threads_do_not_change_a_bit(tiny) -> None:
    from inert.engine import Engine

    batch = np.random.default_rng(3).integers(0, tiny.model.config.vocab_size, size=(5, 60))
    tables = []
    for threads in (1, 2, 3, 8):
        e = Engine(tiny.model, threads)
        cache = e.new_cache(5, 60)
        first = e.frequencies(batch[:, :33], cache)  # prefill, then steps on the threads' views
        rest = [e.frequencies(batch[:, i : i + 1], cache) for i in range(33, 60)]
        tables.append(np.concatenate([first, *rest], axis=1))
        assert cache.length == 60
    assert all(np.array_equal(tables[0], t) for t in tables[1:])


FINGERPRINT = """
import hashlib, sys
import numpy as np
import pytest
sys.path.insert(0, {tests!r})
from tinymodel import tiny_model_bytes
from inert import codec
from inert.store import open_blob
open({blob!r}, "wb").write(tiny_model_bytes(seed=0, dim=128, hidden_dim=384, n_heads=8, n_kv_heads=4, max_seq_len=128))
e = codec.load_model(open_blob({blob!r}), threads={threads}).engine
x = np.random.default_rng(5).integers(0, e.config.vocab_size, size=(4, 128))
print(hashlib.sha256(e.frequencies(x, e.new_cache(4, 128)).tobytes()).hexdigest())
"""


def test_thread_count_does_not_change_a_bit(tmp_path: Path) -> None:
    digests = set()
    for threads in ("1", "2"):
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }
        script = FINGERPRINT.format(
            tests=str(Path(__file__).parent),
            blob=str(tmp_path / f"m{threads}.blob"),
            threads=threads,
        )
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_engine_costs_little_against_the_float64_reference(tiny) -> None:
    tokens = tiny.model.vocab.tokenize(TEXT)[:200]
    ref_bits = ReferenceModel(tiny.model).cross_entropy_bits(tokens, 64)
    from inert.codec import CodecSettings, encode_tokens

    _, ideal = encode_tokens(tiny.engine, tokens, CodecSettings(segment_tokens=64, codec=1))
    assert abs(ideal / ref_bits - 1) < 0.01


def test_frequencies_put_the_rounding_leftover_on_the_top_token() -> None:
    logits = np.array([[0.0, 5.0, 1.0, 5.0]])
    freq = logits_to_frequencies(logits)
    assert freq.sum() == FREQ_TOTAL and freq[0, 1] >= freq[0, 3]
    assert logits_to_frequencies(np.array([[0.0, -1e9]]))[0, 1] == 1


@pytest.mark.parametrize("codec", [1, 2])
def test_frequency_tables_are_valid_for_every_codec(codec: int) -> None:
    rng = np.random.default_rng(4)
    logits = np.concatenate([rng.normal(0, s, size=(50, 4096)) for s in (0.01, 3.0, 30.0)])
    freq = logits_to_frequencies(logits, codec)
    assert np.all(freq.sum(axis=1) == FREQ_TOTAL) and freq.min() >= 1
    assert logits_to_frequencies(np.array([[0.0, 5.0, 1.0, 5.0]]), codec)[0].argmax() == 1
    # codec 2's table-driven softmax stays within rounding of codec 1's polynomial one
    p1, p2 = logits_to_frequencies(logits, 1), freq
    big = p1 > 20_000  # where flooring to integers matters little
    assert np.all(np.abs(np.log(p2[big] / p1[big])) < 0.002)


@pytest.mark.parametrize("codec", [1, 2])
def test_the_compiled_frequencies_are_numpy_s(codec: int) -> None:
    """The kernel's softmax makes numpy's tables to the last unit: logits of every spread
    (mass near the floor of one, ties for the top, hopeless tokens), small vocabularies and
    Gemma's 262,144."""
    from inert import engine, exact

    if exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")
    rng = np.random.default_rng(codec)
    for vocab in (2, 3, 4096, 262_144):
        for spread in (0.01, 1.0, 3.0, 30.0, 3000.0):
            logits = rng.normal(0, spread, size=(3, vocab))
            logits[1, : vocab // 2] = logits[1].max()  # many tokens tie for the top
            logits[2, -1] = -1e9
            expected = engine.ROW_FREQUENCIES[codec](logits)
            assert np.array_equal(engine.row_frequencies(logits, codec), expected)


def test_the_torch_backend_makes_the_default_blob_s_tables_and_keys() -> None:
    """The shipped blob on torch (CPU here; CUDA where there is one) codes the same keys,
    codec 1 and 2, from the same tables."""
    from inert import codec
    from inert.default import default_blob

    pytest.importorskip("torch")
    numpy_model = codec.load_model(default_blob(), 2, backend="numpy")
    torch_model = codec.load_model(default_blob(), 2, backend="torch", device="cpu")
    tokens = numpy_model.model.vocab.tokenize(TEXT)[:200].reshape(4, 50)
    for version in (1, 2):
        expected = numpy_model.engine.frequencies(
            tokens, numpy_model.engine.new_cache(4, 50), version
        )
        got = torch_model.engine.frequencies(tokens, torch_model.engine.new_cache(4, 50), version)
        assert np.array_equal(got, expected)
        settings = codec.CodecSettings(codec=version)
        key = codec.model_key(TEXT[:3000], torch_model, settings)[0]
        assert key == codec.model_key(TEXT[:3000], numpy_model, settings)[0]
        assert codec.decode_work(key, torch_model) == TEXT[:3000]


# every variation of the architecture the one-token kernels implement: grouped heads, q/k/v
# biases (Qwen2), q/k norms, sliding windows, two rotary tables, post-norms, GeGLU and a
# soft cap (Gemma 3)
FAMILY_SHAPES = {
    "llama": {},
    "qwen2": {"family": "qwen2", "layers": (LayerSpec(qkv_bias=True), LayerSpec(qkv_bias=True))},
    "gemma3": {
        "family": "gemma3",
        "activation": "gelu_tanh",
        "rope_thetas": (10000.0, 1e6),
        "embed_scale": 5.6,
        "logit_softcap": 30.0,
        "layers": (
            LayerSpec(window=8, qk_norm=True, post_norms=True),
            LayerSpec(rope=1, qk_norm=True, post_norms=True),
        ),
    },
}


@pytest.mark.parametrize("family", FAMILY_SHAPES)
def test_the_compiled_one_token_steps_are_numpy_s(family: str, tmp_path: Path, monkeypatch) -> None:
    """Lockstep decoding's one-token steps (the compiled attention over the paired cache, on
    each vector path, and the MLP activation) make numpy's tables to the bit, and the
    prefill's, in every family; an odd context length too."""
    if exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")
    from tinymodel import tiny_model_bytes

    path = tmp_path / f"{family}.blob"
    path.write_bytes(tiny_model_bytes(seed=4, max_seq_len=40, **FAMILY_SHAPES[family]))
    model = read_model(path)
    n = 39
    batch = np.random.default_rng(2).integers(0, model.config.vocab_size, size=(3, n))

    def steps(engine: Engine) -> np.ndarray:
        cache = engine.new_cache(3, n)
        first = engine.frequencies(batch[:, :5], cache, codec=3)
        rest = [engine.frequencies(batch[:, i : i + 1], cache, codec=3) for i in range(5, n)]
        return np.concatenate([first, *rest], axis=1)

    compiled = steps(Engine(model))
    narrower = []  # AVX-512 without VNNI, and plain C: products and attention alike
    try:
        for path in (2, 0):
            if exact.KERNELS.set_path(path) == path:
                narrower.append(steps(Engine(model)))
    finally:
        exact.KERNELS.set_path(-1)
    prefill = Engine(model).frequencies(batch, Engine(model).new_cache(3, n), codec=3)
    monkeypatch.setattr(exact, "KERNELS", None)
    numpy_steps = steps(Engine(model))
    assert np.array_equal(compiled, numpy_steps)
    assert all(np.array_equal(tables, numpy_steps) for tables in narrower)
    assert np.array_equal(compiled, prefill)
