"""What a model blob's network is: ModelConfig and its per-layer LayerSpec -> tensor names and shapes.

One description read by every user of the architecture: the exact engine (engine.py), the
float64 reference (reference.py), the blob writer and reader (modelfile.py) and the
importers (importer.py). A decoder-only transformer of the Llama family, with the
variations that Qwen2 and Gemma 3 add, each named per layer:

    x = embed[t] * embed_scale
    per layer:   h = attention(rms_norm(x, attn_norm))       q/k biases, q/k norms, window, rope table
                 x = x + (rms_norm(h, post_attn_norm) if post_norms else h)
                 h = mlp(rms_norm(x, mlp_norm))              SwiGLU or GeGLU
                 x = x + (rms_norm(h, post_mlp_norm) if post_norms else h)
    logits = output(rms_norm(x, norm)), soft-capped when logit_softcap > 0

Every field changes the probabilities, so every field is written into the blob.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from .errors import InertError

FAMILIES = ("llama", "qwen2", "gemma3")  # descriptive: the arithmetic follows the fields


@dataclass(frozen=True)
class LayerSpec:
    """How one layer departs from the plain Llama layer (the defaults)."""

    window: int = 0  # > 0: a query sees only the last `window` positions, itself included
    rope: int = 0  # index of the rotary table (ModelConfig.rope_thetas) its q and k read
    qk_norm: bool = False  # RMSNorm over each head of q and of k before rotation (Gemma 3)
    qkv_bias: bool = False  # biases added to the q, k and v projections (Qwen2)
    post_norms: bool = False  # RMSNorm of the attention and MLP outputs (Gemma 3)


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer. Every field changes the probabilities."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int  # < n_heads: grouped-query attention
    hidden_dim: int  # MLP width
    max_seq_len: int  # longest context; key segments are at most this many tokens
    bos_token_id: int  # starts every segment's context; never coded itself
    rope_theta: float = 10000.0  # the first rotary table's base (all of it in inert-model/1)
    norm_eps: float = 1e-5
    activation: str = "silu"  # "silu" = SwiGLU (Llama), "gelu_tanh" = GeGLU (Gemma)
    tied_embeddings: bool = True  # the output head reuses the embedding matrix
    # inert-model/2; left out (inert-model/1 blobs), each takes the value v1 derives:
    family: str = "llama"
    head_dim: int = 0  # 0 -> dim // n_heads
    layers: tuple[LayerSpec, ...] = ()  # one per layer; () -> every layer a plain Llama layer
    rope_thetas: tuple[float, ...] = ()  # the rotary tables' bases; () -> (rope_theta,)
    embed_scale: float = 1.0  # embeddings are multiplied by it (Gemma: sqrt(dim))
    attn_scale: float = 0.0  # scores are multiplied by it; 0 -> 1/sqrt(head_dim)
    logit_softcap: float = 0.0  # > 0: logits = cap * tanh(logits / cap) (Gemma 2)

    def __post_init__(self) -> None:
        derived = {
            "head_dim": self.head_dim or (self.dim // self.n_heads if self.n_heads else 0),
            "layers": tuple(self.layers) or tuple(LayerSpec() for _ in range(self.n_layers)),
            "rope_thetas": tuple(self.rope_thetas) or (self.rope_theta,),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here
        if not self.attn_scale and self.head_dim > 0:
            object.__setattr__(self, "attn_scale", 1.0 / math.sqrt(float(self.head_dim)))
        problems = []
        if min(self.vocab_size, self.dim, self.n_layers, self.n_heads, self.n_kv_heads) < 1:
            problems.append("sizes must be positive")
        if self.hidden_dim < 1:
            problems.append("sizes must be positive")
        if self.head_dim < 1 or self.head_dim % 2:
            problems.append("heads must be of even size (rotary pairs)")
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
        if len(self.layers) != self.n_layers:
            problems.append(f"{len(self.layers)} layer descriptions for {self.n_layers} layers")
        tables = len(self.rope_thetas)
        if any(spec.rope >= tables or spec.rope < 0 or spec.window < 0 for spec in self.layers):
            problems.append("a layer names a rotary table that does not exist, or a bad window")
        if problems:
            raise InertError(f"invalid model config: {'; '.join(problems)}")

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

    def gains(self) -> dict[str, int]:
        """Name -> length of every RMSNorm gain (stored as the factor applied: Gemma's 1 + w)."""
        out = {}
        for i in range(self.n_layers):
            spec = self.layers[i]
            out |= {f"layers.{i}.attn_norm": self.dim, f"layers.{i}.mlp_norm": self.dim}
            if spec.post_norms:
                out |= {
                    f"layers.{i}.post_attn_norm": self.dim,
                    f"layers.{i}.post_mlp_norm": self.dim,
                }
            if spec.qk_norm:
                out |= {f"layers.{i}.q_norm": self.head_dim, f"layers.{i}.k_norm": self.head_dim}
        out["norm"] = self.dim
        return out

    def biases(self) -> dict[str, int]:
        """Name -> length of every projection bias (float32)."""
        hd, out = self.head_dim, {}
        for i in range(self.n_layers):
            if self.layers[i].qkv_bias:
                out |= {
                    f"layers.{i}.bq": self.n_heads * hd,
                    f"layers.{i}.bk": self.n_kv_heads * hd,
                    f"layers.{i}.bv": self.n_kv_heads * hd,
                }
        return out

    def parameter_count(self) -> int:
        return (
            sum(a * b for a, b in self.matrices().values())
            + sum(self.gains().values())
            + sum(self.biases().values())
        )

    def attention_pattern(self) -> str:
        """'18 global' or '15 sliding (window 512), 3 global at 5, 11, 17'."""
        sliding = [i for i in range(self.n_layers) if self.layers[i].window]
        if not sliding:
            return f"{self.n_layers} global"
        rest = [str(i) for i in range(self.n_layers) if not self.layers[i].window]
        windows = sorted({self.layers[i].window for i in sliding})
        text = f"{len(sliding)} sliding (window {', '.join(map(str, windows))})"
        return text + (f", {len(rest)} global at {', '.join(rest)}" if rest else "")

    # ------------------------------------------------------------------ JSON

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
        if "layers" in data:
            data["layers"] = tuple(LayerSpec(**spec) for spec in data["layers"])
        if "rope_thetas" in data:
            data["rope_thetas"] = tuple(data["rope_thetas"])
        return cls(**data)
