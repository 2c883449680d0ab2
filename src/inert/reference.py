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
        self.bias = {n: t[n].astype(np.float64) for n in c.biases()}
        self.cos = [t[f"rope.{r}.cos"].astype(np.float64) for r in range(len(c.rope_thetas))]
        self.sin = [t[f"rope.{r}.sin"].astype(np.float64) for r in range(len(c.rope_thetas))]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return (
            x
            / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.config.norm_eps)
            * self.gain[name]
        )

    def _rope(self, x: np.ndarray, table: int) -> np.ndarray:
        half = x.shape[-1] // 2
        cos, sin = self.cos[table][: x.shape[0], None, :], self.sin[table][: x.shape[0], None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)

    def _project(self, h: np.ndarray, i: int, which: str, heads: int) -> np.ndarray:
        c, spec = self.config, self.config.layers[i]
        y = h @ self.w[f"layers.{i}.w{which}"].T
        if spec.qkv_bias:
            y = y + self.bias[f"layers.{i}.b{which}"]
        y = y.reshape(len(h), heads, c.head_dim)
        return self._norm(y, f"layers.{i}.{which}_norm") if spec.qk_norm and which != "v" else y

    def log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """(T, V) natural-log probabilities of the next token after each of tokens (T,)."""
        c = self.config
        T, group = len(tokens), c.n_heads // c.n_kv_heads
        x = self.w["embed"][tokens] * c.embed_scale
        position = np.arange(T)
        for i in range(c.n_layers):
            spec = c.layers[i]
            hidden = position[None, :] > position[:, None]  # (T, S): keys after the query
            if spec.window:
                hidden |= position[None, :] <= position[:, None] - spec.window
            mask = np.where(hidden, -np.inf, 0.0)
            h = self._norm(x, f"layers.{i}.attn_norm")
            q = self._rope(self._project(h, i, "q", c.n_heads), spec.rope)
            k = self._rope(self._project(h, i, "k", c.n_kv_heads), spec.rope)
            v = self._project(h, i, "v", c.n_kv_heads)
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # (T, H, hd)
            scores = np.einsum("thd,shd->hts", q, k) * c.attn_scale + mask
            p = np.exp(scores - scores.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out = np.einsum("hts,shd->thd", p, v).reshape(T, c.n_heads * c.head_dim)
            out = out @ self.w[f"layers.{i}.wo"].T
            x = x + (self._norm(out, f"layers.{i}.post_attn_norm") if spec.post_norms else out)
            h = self._norm(x, f"layers.{i}.mlp_norm")
            gate, up = h @ self.w[f"layers.{i}.w_gate"].T, h @ self.w[f"layers.{i}.w_up"].T
            if c.activation == "silu":
                act = gate / (1 + np.exp(-gate))
            else:
                act = 0.5 * gate * (1 + np.tanh(0.7978845608028654 * (gate + 0.044715 * gate**3)))
            out = (act * up) @ self.w[f"layers.{i}.w_down"].T
            x = x + (self._norm(out, f"layers.{i}.post_mlp_norm") if spec.post_norms else out)
        logits = self._norm(x, "norm") @ self.w["output"].T
        if c.logit_softcap:
            logits = c.logit_softcap * np.tanh(logits / c.logit_softcap)
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
