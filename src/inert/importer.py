"""Hugging Face checkpoints and GGUF files -> ModelConfig, tokenizer and float weights -> a blob.

`inert blob import SOURCE -o MODEL.blob`. SOURCE is a Hugging Face model directory
(config.json, *.safetensors, tokenizer.json) or a GGUF file. Families: Llama (SmolLM2,
Llama 3), Qwen2/2.5 and Gemma 3. Weights are read with `safetensors` and with `gguf`, whose
`quants` module dequantises every GGUF block type; a GGUF's tokenizer is rebuilt from its
metadata by transformers' GGUF conversion. Each matrix is then re-quantised to int8 per
output row like any blob (modelfile.py); norm gains are stored as the factor applied
(Gemma's 1 + w).

The conventions that differ between the two sources, checked against transformers'
readers of both:
- llama.cpp stores a Llama GGUF's q and k rows permuted for its interleaved rotary pairs;
  they are permuted back to the rotate-half order of Hugging Face and the engine.
- llama.cpp stores Gemma's norm weights as 1 + w, Hugging Face as w.
- a Gemma 3 GGUF says neither which layers slide nor the local rotary base: llama.cpp fixes
  them (every sixth layer global, base 10,000), and so does this reader.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .architecture import LayerSpec, ModelConfig
from .errors import InertError
from .modelfile import inverse_frequencies

Log = Callable[[str], None]
Weight = np.ndarray | Callable[[], np.ndarray]  # read when the blob writer asks for it

ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh"}


@dataclass
class Imported:
    config: ModelConfig
    tokenizer_json: str
    weights: dict[str, Weight]  # matrices (out, in), gains, biases, rope.R.inv_freq
    source: dict  # what was found: format, family, tensor types


def import_model(source: str | Path, log: Log = lambda _: None) -> Imported:
    path = Path(source)
    if path.is_dir():
        return import_hugging_face(path, log)
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) == b"GGUF":
                return import_gguf(path, log)
        raise InertError(f"{path} is neither a Hugging Face model folder nor a GGUF file")
    raise InertError(f"cannot read {path}: no such file or folder")


# ---------------------------------------------------------------------------- shared


def family_of(model_type: str) -> str:
    families = {"llama": "llama", "qwen2": "qwen2", "gemma3": "gemma3", "gemma3_text": "gemma3"}
    if model_type not in families:
        raise InertError(
            f"unsupported architecture {model_type!r}: inert imports llama, qwen2 and gemma3"
        )
    return families[model_type]


def layer_specs(family: str, n_layers: int, window: int, sliding: list[bool]) -> tuple:
    """Per layer: Qwen2's q/k/v biases; Gemma 3's q/k norms, post norms, windows and tables."""
    if family == "qwen2":
        return tuple(LayerSpec(qkv_bias=True) for _ in range(n_layers))
    if family == "gemma3":
        return tuple(
            LayerSpec(
                window=window if sliding[i] else 0,
                rope=1 if sliding[i] else 0,  # table 0 global, table 1 local
                qk_norm=True,
                post_norms=True,
            )
            for i in range(n_layers)
        )
    return tuple(LayerSpec() for _ in range(n_layers))


def scaled_frequencies(config: ModelConfig, theta: float, scaling: dict | None) -> np.ndarray:
    """Rotary frequencies with a Hugging Face `rope_scaling` applied (none, linear, llama3)."""
    inv_freq = inverse_frequencies(config, theta)
    kind = (scaling or {}).get("rope_type") or (scaling or {}).get("type") or "default"
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":
        factor, low, high = (
            float(scaling[k]) for k in ("factor", "low_freq_factor", "high_freq_factor")
        )
        original = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        smooth = (original / wavelen - low) / (high - low)
        scaled = np.where(wavelen > original / low, inv_freq / factor, inv_freq)
        middle = (wavelen <= original / low) & (wavelen >= original / high)
        return np.where(middle, (1 - smooth) * inv_freq / factor + smooth * inv_freq, scaled)
    raise InertError(f"unsupported rotary scaling {kind!r} (inert knows linear and llama3)")


def require(found: dict[str, np.ndarray], config: ModelConfig) -> dict[str, np.ndarray]:
    expected = [*config.matrices(), *config.gains(), *config.biases()]
    if missing := [name for name in expected if name not in found]:
        raise InertError(
            f"the checkpoint lacks {len(missing)} tensors inert needs, e.g. {missing[0]}"
        )
    return found


# ---------------------------------------------------------------------------- Hugging Face


def import_hugging_face(folder: Path, log: Log) -> Imported:
    try:
        hf = json.loads((folder / "config.json").read_text())
        tokenizer_json = (folder / "tokenizer.json").read_text()
    except OSError as e:
        raise InertError(
            f"cannot read the model folder {folder}: {e.strerror}: {e.filename}"
        ) from None
    if hf.get("model_type") == "gemma3" and "text_config" in hf:  # the multimodal wrapper
        hf = {**hf["text_config"], "model_type": "gemma3_text"}
    family = family_of(hf.get("model_type", "?"))
    activation = hf.get("hidden_act") or hf.get("hidden_activation") or "silu"
    if activation not in ACTIVATIONS:
        raise InertError(f"unsupported activation {activation!r}")
    n_layers, dim, heads = hf["num_hidden_layers"], hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or dim // heads
    rope = hf.get("rope_parameters") or {}
    per_type = rope if "full_attention" in rope else {}
    global_rope = per_type.get("full_attention") or rope or hf.get("rope_scaling") or {}
    theta = float(hf.get("rope_theta") or global_rope.get("rope_theta") or 10000.0)
    local_theta = float(
        hf.get("rope_local_base_freq")
        or (per_type.get("sliding_attention") or {}).get("rope_theta")
        or 10000.0
    )
    types = hf.get("layer_types") or [
        "sliding_attention" if (i + 1) % hf.get("sliding_window_pattern", 6) else "full_attention"
        for i in range(n_layers)
    ]
    sliding = [family == "gemma3" and t == "sliding_attention" for t in types]
    config = ModelConfig(
        vocab_size=hf["vocab_size"],
        dim=dim,
        n_layers=n_layers,
        n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads,
        hidden_dim=hf["intermediate_size"],
        max_seq_len=hf.get("max_position_embeddings", 2048),
        bos_token_id=hf.get("bos_token_id") or 0,
        rope_theta=theta,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        activation=ACTIVATIONS[activation],
        tied_embeddings=bool(hf.get("tie_word_embeddings", family != "llama")),
        family=family,
        head_dim=head_dim,
        layers=layer_specs(family, n_layers, hf.get("sliding_window") or 0, sliding),
        rope_thetas=(theta, local_theta) if family == "gemma3" else (theta,),
        embed_scale=float(np.float32(math.sqrt(dim))) if family == "gemma3" else 1.0,
        attn_scale=hf["query_pre_attn_scalar"] ** -0.5 if family == "gemma3" else 0.0,
        logit_softcap=float(hf.get("final_logit_softcapping") or 0.0),
    )
    log(f"{family}: {n_layers} layers, dim {dim}, vocabulary {config.vocab_size:,}")
    weights: dict[str, Weight] = {}
    types_found: Counter[str] = Counter()
    for name, dtype, read in safetensors_tensors(folder):
        types_found[dtype] += 1
        if (ours := hf_name(name, family)) is None:
            continue
        if family == "gemma3" and ours in config.gains():
            read = (lambda r: lambda: 1.0 + r())(read)  # Gemma's RMSNorm multiplies by 1 + w
        weights[ours] = read
    weights["rope.0.inv_freq"] = scaled_frequencies(config, theta, global_rope or None)
    if family == "gemma3":
        weights["rope.1.inv_freq"] = inverse_frequencies(config, local_theta)
    source = {"format": "hugging face", "family": family, "tensor types": dict(types_found)}
    return Imported(config, tokenizer_json, require(weights, config), source)


HF_LAYER_NAMES = {
    "self_attn.q_proj.weight": "wq",
    "self_attn.k_proj.weight": "wk",
    "self_attn.v_proj.weight": "wv",
    "self_attn.o_proj.weight": "wo",
    "self_attn.q_proj.bias": "bq",
    "self_attn.k_proj.bias": "bk",
    "self_attn.v_proj.bias": "bv",
    "self_attn.q_norm.weight": "q_norm",
    "self_attn.k_norm.weight": "k_norm",
    "mlp.gate_proj.weight": "w_gate",
    "mlp.up_proj.weight": "w_up",
    "mlp.down_proj.weight": "w_down",
    "input_layernorm.weight": "attn_norm",
    "pre_feedforward_layernorm.weight": "mlp_norm",
    "post_feedforward_layernorm.weight": "post_mlp_norm",
}


def hf_name(name: str, family: str) -> str | None:
    """A Hugging Face tensor name -> inert's, or None for tensors inert does not use."""
    name = name.removeprefix("model.language_model.").removeprefix("language_model.")
    # Gemma's post_attention_layernorm follows attention; the others' precedes the MLP
    after_attention = "post_attn_norm" if family == "gemma3" else "mlp_norm"
    layer_names = HF_LAYER_NAMES | {"post_attention_layernorm.weight": after_attention}
    return rename(name.removeprefix("model."), HF_TOP_NAMES, "layers.", layer_names)


HF_TOP_NAMES = {"embed_tokens.weight": "embed", "norm.weight": "norm", "lm_head.weight": "output"}


def rename(name: str, top: dict[str, str], prefix: str, layer_names: dict[str, str]) -> str | None:
    """`top` names as they are; PREFIX.L.REST as layers.L.<layer_names[REST]>; else None."""
    if name in top:
        return top[name]
    if not name.startswith(prefix):
        return None
    _, index, rest = name.split(".", 2)
    ours = layer_names.get(rest)
    return f"layers.{index}.{ours}" if ours else None


def safetensors_tensors(folder: Path) -> Iterator[tuple[str, str, Callable[[], np.ndarray]]]:
    """(name, dtype, its reader) of every tensor in the folder's safetensors files: the blob
    writer reads one float matrix at a time."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InertError(f"{folder} holds no .safetensors weights")
    for file in files:
        with safe_open(str(file), framework="np") as f:
            names = [(name, f.get_slice(name).get_dtype()) for name in f.keys()]  # noqa: SIM118
        for name, dtype in names:
            if dtype not in ("BF16", "F32", "F16", "F64"):
                raise InertError(f"unsupported tensor type {dtype} ({name} in {file.name})")
            yield (
                name,
                dtype,
                (lambda file=file, name=name, dtype=dtype: read_tensor(file, name, dtype)),
            )


def read_tensor(file: Path, name: str, dtype: str) -> np.ndarray:
    from safetensors import safe_open

    if dtype == "BF16":  # numpy has no bfloat16: widen its bits to float32
        return bfloat16_tensor(file, name)
    with safe_open(str(file), framework="np") as f:
        return f.get_tensor(name).astype(np.float32)


def bfloat16_tensor(file: Path, name: str) -> np.ndarray:
    """A BF16 tensor as float32: its 16 bits are the high half of a float32's."""
    with open(file, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(size))[name]
        begin, end = entry["data_offsets"]
        f.seek(8 + size + begin)
        raw = np.frombuffer(f.read(end - begin), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


# ---------------------------------------------------------------------------- GGUF


GGUF_LAYER_NAMES = {
    "attn_q.weight": "wq",
    "attn_k.weight": "wk",
    "attn_v.weight": "wv",
    "attn_output.weight": "wo",
    "attn_q.bias": "bq",
    "attn_k.bias": "bk",
    "attn_v.bias": "bv",
    "attn_q_norm.weight": "q_norm",
    "attn_k_norm.weight": "k_norm",
    "ffn_gate.weight": "w_gate",
    "ffn_up.weight": "w_up",
    "ffn_down.weight": "w_down",
    "attn_norm.weight": "attn_norm",
    "post_attention_norm.weight": "post_attn_norm",
    "post_ffw_norm.weight": "post_mlp_norm",
    "ffn_norm.weight": "mlp_norm",
}


GGUF_TOP_NAMES = {
    "token_embd.weight": "embed",
    "output_norm.weight": "norm",
    "output.weight": "output",
}


def gguf_name(name: str) -> str | None:
    return rename(name, GGUF_TOP_NAMES, "blk.", GGUF_LAYER_NAMES)


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's permutation of Llama q/k rows (interleaved pairs -> rotate-half)."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def import_gguf(path: Path, log: Log) -> Imported:
    try:
        import gguf
        from gguf.quants import dequantize
    except ImportError:
        raise InertError(
            "importing GGUF files needs gguf", hint="pip install 'inert[import]'"
        ) from None
    reader = gguf.GGUFReader(str(path))

    def field(key: str, default: object = None) -> object:
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = str(field("general.architecture", "?"))
    family = family_of(arch)
    n_layers = int(field(f"{arch}.block_count"))
    dim, heads = int(field(f"{arch}.embedding_length")), int(field(f"{arch}.attention.head_count"))
    head_dim = int(field(f"{arch}.attention.key_length", dim // heads))
    theta = float(field(f"{arch}.rope.freq_base", 10000.0))
    window = int(field(f"{arch}.attention.sliding_window", 0)) if family == "gemma3" else 0
    sliding = [family == "gemma3" and (i + 1) % 6 != 0 for i in range(n_layers)]
    tokens = reader.fields["tokenizer.ggml.tokens"]
    tensors = {t.name: t for t in reader.tensors}
    config = ModelConfig(
        vocab_size=len(tokens.data),
        dim=dim,
        n_layers=n_layers,
        n_heads=heads,
        n_kv_heads=int(field(f"{arch}.attention.head_count_kv", heads)),
        hidden_dim=int(field(f"{arch}.feed_forward_length")),
        max_seq_len=int(field(f"{arch}.context_length", 2048)),
        bos_token_id=int(field("tokenizer.ggml.bos_token_id", 0)),
        rope_theta=theta,
        norm_eps=float(np.float32(field(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6))),
        activation="gelu_tanh" if family == "gemma3" else "silu",
        tied_embeddings="output.weight" not in tensors,
        family=family,
        head_dim=head_dim,
        layers=layer_specs(family, n_layers, window, sliding),
        rope_thetas=(theta, 10000.0) if family == "gemma3" else (theta,),
        embed_scale=float(np.float32(math.sqrt(dim))) if family == "gemma3" else 1.0,
        attn_scale=1.0 / math.sqrt(head_dim) if family == "gemma3" else 0.0,
        logit_softcap=float(field(f"{arch}.final_logit_softcapping", 0.0)),
    )
    scaling = None  # llama.cpp writes linear scaling as a type and a factor
    if (kind := field(f"{arch}.rope.scaling.type")) not in (None, "none"):
        scaling = {"type": kind, "factor": field(f"{arch}.rope.scaling.factor", 1.0)}
    types_found = Counter(t.tensor_type.name for t in reader.tensors)
    log(
        f"{family}: {n_layers} layers, dim {dim}, vocabulary {config.vocab_size:,}; tensors "
        + ", ".join(f"{n} {kind}" for kind, n in types_found.most_common())
    )

    def reader_of(i: int, name: str, ours: str) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            tensor = tensors[name]
            try:
                w = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
            except NotImplementedError:
                raise InertError(
                    f"unsupported GGUF tensor type {tensor.tensor_type.name} ({name})"
                ) from None
            if family == "llama" and ours.endswith((".wq", ".wk")):
                w = unpermute(w, heads if ours.endswith(".wq") else config.n_kv_heads)
            log(f"  {i + 1}/{len(tensors)} {name} {tensor.tensor_type.name}")
            return w

        return read

    weights: dict[str, Weight] = {}
    for i, name in enumerate(tensors):
        if (ours := gguf_name(name)) is not None:
            weights[ours] = reader_of(i, name, ours)
    weights["rope.0.inv_freq"] = scaled_frequencies(config, theta, scaling)
    if family == "gemma3":
        weights["rope.1.inv_freq"] = inverse_frequencies(config, 10000.0)
    source = {"format": "gguf", "family": family, "tensor types": dict(types_found)}
    tokenizer = gguf_tokenizer(path, config.vocab_size)
    return Imported(config, tokenizer, require(weights, config), source)


def gguf_tokenizer(path: Path, vocab_size: int) -> str:
    """The GGUF's tokenizer as a Hugging Face tokenizer JSON, by transformers' conversion.

    The conversion may add special tokens the file does not list (an <unk>, a <pad>) after
    its vocabulary; the model has no row for them, so they are left out.
    """
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            convert_gguf_tokenizer,
            get_gguf_tokenizer,
        )
    except ImportError:
        raise InertError(
            "reading a GGUF's tokenizer needs transformers", hint="pip install 'inert[import]'"
        ) from None
    architecture, tokenizer_dict, _ = get_gguf_tokenizer(str(path))
    try:
        tokenizer, _ = convert_gguf_tokenizer(architecture, tokenizer_dict)
    except (KeyError, ValueError, NotImplementedError) as e:
        raise InertError(f"unsupported GGUF tokenizer in {path.name}: {e}") from None
    spec = json.loads(tokenizer.to_str())
    spec["added_tokens"] = [t for t in spec.get("added_tokens", []) if t["id"] < vocab_size]
    return json.dumps(spec, ensure_ascii=False)
