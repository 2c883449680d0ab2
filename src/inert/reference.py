"""Tokens -> log-probabilities in plain float64: the yardstick for what exactness costs.

The same dequantized weights as the engine (W = q * scale) but no activation quantization,
libm exp and ordinary softmax. Tests and benchmarks compare its cross-entropy with the
integer engine's; nothing on the coding path uses it, since its results may differ in the
last bits between machines.
"""

from __future__ import annotations

import numpy as np

from .modelfile import Model


class ReferenceModel:
    def __init__(self, model: Model) -> None:
        self.config = c = model.config
        t = model.tensors
        self.w = {
            n: t[f"{n}.q"].astype(np.float64) * t[f"{n}.scale"].astype(np.float64)[:, None]
            for n in c.matrices()
        }
        if c.tied_embeddings:
            self.w["output"] = self.w["embed"]
        self.gain = {n: t[n].astype(np.float64) for n in c.gains()}
        self.cos = t["rope.cos"].astype(np.float64)
        self.sin = t["rope.sin"].astype(np.float64)

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return (
            x
            / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.config.norm_eps)
            * self.gain[name]
        )

    def _rope(self, x: np.ndarray) -> np.ndarray:
        half = x.shape[-1] // 2
        cos, sin = self.cos[: x.shape[0], None, :], self.sin[: x.shape[0], None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)

    def log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """(T, V) natural-log probabilities of the next token after each of tokens (T,)."""
        c = self.config
        T, hd, group = len(tokens), c.head_dim, c.n_heads // c.n_kv_heads
        x = self.w["embed"][tokens]
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        for i in range(c.n_layers):
            h = self._norm(x, f"layers.{i}.attn_norm")
            q = self._rope((h @ self.w[f"layers.{i}.wq"].T).reshape(T, c.n_heads, hd))
            k = self._rope((h @ self.w[f"layers.{i}.wk"].T).reshape(T, c.n_kv_heads, hd))
            v = (h @ self.w[f"layers.{i}.wv"].T).reshape(T, c.n_kv_heads, hd)
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # (T, H, hd)
            scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
            p = np.exp(scores - scores.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out = np.einsum("hts,shd->thd", p, v).reshape(T, c.dim)
            x = x + out @ self.w[f"layers.{i}.wo"].T
            h = self._norm(x, f"layers.{i}.mlp_norm")
            gate, up = h @ self.w[f"layers.{i}.w_gate"].T, h @ self.w[f"layers.{i}.w_up"].T
            if c.activation == "silu":
                act = gate / (1 + np.exp(-gate))
            else:
                act = 0.5 * gate * (1 + np.tanh(0.7978845608028654 * (gate + 0.044715 * gate**3)))
            x = x + (act * up) @ self.w[f"layers.{i}.w_down"].T
        logits = self._norm(x, "norm") @ self.w["output"].T
        logits -= logits.max(-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(-1, keepdims=True))

    def cross_entropy_bits(self, tokens: np.ndarray, segment_tokens: int) -> float:
        """Σ -log2 p of `tokens` coded in segments from BOS, as the codec does."""
        bos, total = self.config.bos_token_id, 0.0
        for start in range(0, len(tokens), segment_tokens):
            seg = tokens[start : start + segment_tokens]
            lp = self.log_probs(np.concatenate([[bos], seg[:-1]]))
            total -= float(lp[np.arange(len(seg)), seg].sum()) / np.log(2)
        return total
