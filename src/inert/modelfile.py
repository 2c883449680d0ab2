"""Model blobs: one safetensors file <-> config, vocabulary, int8 weights and tables.

Layout (docs/FORMAT.md, "Model blobs"): one metadata entry `inert`, a JSON object with
`format` = "inert-model/1", `config` (ModelConfig's fields) and `tokenizer` (a Hugging Face
tokenizer JSON, as a string) — one entry because safetensors writes several in random
order, and a blob's bytes (hence its id) must depend only on its content; tensors, for every matrix W (out, in): `NAME.q` int8 (out, in) and `NAME.scale`
float32 (out,) with W ~= q * scale[:, None]; norm gains float32 (dim,); rotary tables
`rope.cos`, `rope.sin` float32 (max_seq_len, head_dim/2).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from .errors import InertError
from .store import MODEL_FORMAT
from .streams import atomic_output
from .tokens import Vocabulary

FORMAT = MODEL_FORMAT


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer of the Llama family. Every field changes the probabilities."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int  # < n_heads: grouped-query attention
    hidden_dim: int  # MLP width
    max_seq_len: int  # longest context; key segments are at most this many tokens
    bos_token_id: int  # starts every segment's context; never coded itself
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    activation: str = "silu"  # "silu" = SwiGLU (Llama), "gelu_tanh" = GeGLU (Gemma)
    tied_embeddings: bool = True  # the output head reuses the embedding matrix

    def __post_init__(self) -> None:
        problems = []
        if (
            min(
                self.vocab_size,
                self.dim,
                self.n_layers,
                self.n_heads,
                self.n_kv_heads,
                self.hidden_dim,
            )
            < 1
        ):
            problems.append("sizes must be positive")
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            problems.append("dim must split into heads of even size")
        if self.n_heads % self.n_kv_heads:
            problems.append("n_heads must be a multiple of n_kv_heads")
        if self.activation not in ("silu", "gelu_tanh"):
            problems.append(f"unknown activation {self.activation!r}")
        if self.vocab_size > 1 << 20:
            problems.append("vocab_size above 2**20 does not fit the 24-bit frequency tables")
        if not 0 <= self.bos_token_id < self.vocab_size:
            problems.append("bos_token_id is outside the vocabulary")
        if self.max_seq_len < 2:
            problems.append("max_seq_len must be at least 2")
        if problems:
            raise InertError(f"invalid model config: {'; '.join(problems)}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        if unknown := set(data) - known:
            raise InertError(
                f"model config has unknown fields {sorted(unknown)}: made by a newer inert?"
            )
        return cls(**data)

    def matrices(self) -> dict[str, tuple[int, int]]:
        """Name -> (out, in) of every quantized matrix."""
        d, hd, h = self.dim, self.head_dim, self.hidden_dim
        shapes = {"embed": (self.vocab_size, d)}
        for i in range(self.n_layers):
            shapes |= {
                f"layers.{i}.wq": (self.n_heads * hd, d),
                f"layers.{i}.wk": (self.n_kv_heads * hd, d),
                f"layers.{i}.wv": (self.n_kv_heads * hd, d),
                f"layers.{i}.wo": (d, self.n_heads * hd),
                f"layers.{i}.w_gate": (h, d),
                f"layers.{i}.w_up": (h, d),
                f"layers.{i}.w_down": (d, h),
            }
        if not self.tied_embeddings:
            shapes["output"] = (self.vocab_size, d)
        return shapes

    def gains(self) -> list[str]:
        return [
            *(f"layers.{i}.{n}" for i in range(self.n_layers) for n in ("attn_norm", "mlp_norm")),
            "norm",
        ]

    def parameter_count(self) -> int:
        return sum(a * b for a, b in self.matrices().values()) + self.dim * len(self.gains())


@dataclass
class Model:
    config: ModelConfig
    vocab: Vocabulary
    tensors: dict[str, np.ndarray]  # as stored: int8 .q, float32 .scale, gains, rope tables


# ---------------------------------------------------------------------------- writing


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output row: w (out, in) ~= q * scale[:, None]."""
    w = np.asarray(w, dtype=np.float64)
    scale = (np.max(np.abs(w), axis=1) / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float64)
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def rope_tables(config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (max_seq_len, head_dim/2) float32, computed once here and frozen in the blob."""
    half = config.head_dim // 2
    inv_freq = config.rope_theta ** (-np.arange(half, dtype=np.float64) / half)
    angles = np.arange(config.max_seq_len, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def model_bytes(config: ModelConfig, tokenizer_json: str, weights: dict[str, np.ndarray]) -> bytes:
    """Serialize float weights (matrices (out, in), gains (dim,)) into a model blob."""
    vocab = Vocabulary(tokenizer_json)
    if len(vocab) != config.vocab_size:
        raise InertError(f"tokenizer has {len(vocab)} tokens, config says {config.vocab_size}")
    tensors: dict[str, np.ndarray] = {}
    for name, shape in config.matrices().items():
        w = np.asarray(weights[name])
        if w.shape != shape:
            raise InertError(f"weight {name} has shape {w.shape}, expected {shape}")
        tensors[f"{name}.q"], tensors[f"{name}.scale"] = quantize_rows(w)
    for name in config.gains():
        tensors[name] = np.asarray(weights[name], dtype=np.float32).reshape(config.dim)
    tensors["rope.cos"], tensors["rope.sin"] = rope_tables(config)
    described = {"format": FORMAT, "config": asdict(config), "tokenizer": tokenizer_json}
    metadata = {"inert": json.dumps(described, sort_keys=True)}
    return save(tensors, metadata=metadata)


def write_model(
    path: str,
    config: ModelConfig,
    tokenizer_json: str,
    weights: dict[str, np.ndarray],
    force: bool = False,
) -> None:
    data = model_bytes(config, tokenizer_json, weights)
    with atomic_output(path, force=force) as out:
        out.write(data)


# ---------------------------------------------------------------------------- reading


def read_model(path: str | Path) -> Model:
    try:
        with safe_open(str(path), framework="np") as f:
            described = json.loads((f.metadata() or {}).get("inert", "{}"))
            if described.get("format") != FORMAT:
                raise InertError(f"{path} is not an inert model blob ({FORMAT})")
            config = ModelConfig.from_json(json.dumps(described["config"]))
            vocab = Vocabulary(described["tokenizer"])
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - not a dict
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        raise InertError(f"model blob {path} is damaged or unreadable: {e}") from None
    _check(config, vocab, tensors, path)
    return Model(config, vocab, tensors)


def _check(
    config: ModelConfig, vocab: Vocabulary, tensors: dict[str, np.ndarray], path: object
) -> None:
    expected: dict[str, tuple[tuple[int, ...], type]] = {}
    for name, shape in config.matrices().items():
        expected[f"{name}.q"] = (shape, np.int8)
        expected[f"{name}.scale"] = ((shape[0],), np.float32)
    for name in config.gains():
        expected[name] = ((config.dim,), np.float32)
    for name in ("rope.cos", "rope.sin"):
        expected[name] = ((config.max_seq_len, config.head_dim // 2), np.float32)
    for name, (shape, dtype) in expected.items():
        t = tensors.get(name)
        if t is None or t.shape != shape or t.dtype != dtype:
            raise InertError(f"model blob {path} is damaged: tensor {name} is missing or malformed")
    if len(vocab) != config.vocab_size:
        raise InertError(f"model blob {path} is damaged: vocabulary size does not match its config")
