"""Tokens -> integer frequency tables, bit-identical on every machine (numpy backend).

A Llama-family forward pass built only from the operations in exact.py: int8 weights with
float32 row scales, 16-bit per-token activations, exact integer matrix products in float64
BLAS, integer sums, elementwise IEEE arithmetic in a fixed order, and the blob's rotary
tables. The same tokens give the same frequencies whether they are evaluated all at once
(prefill) or one at a time with the KV cache, alone or in a batch, on any thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import exact
from .modelfile import Model

FREQ_BITS = 24
FREQ_TOTAL = 1 << FREQ_BITS  # every frequency row sums to this; the coder's precision
EXP_ONE = 2.0**30  # fixed-point 1.0 for the softmax numerators of the output distribution


@dataclass
class Cache:
    """Keys and values of every layer for a batch of sequences: (B, max_len, n_kv, head_dim)."""

    k: list[np.ndarray]  # int16-valued float64 (B, L, n_kv, hd)
    k_scale: list[np.ndarray]  # (B, L, n_kv)
    v: list[np.ndarray]
    v_scale: list[np.ndarray]
    length: int = 0  # positions filled so far


class Engine:
    def __init__(self, model: Model) -> None:
        self.config = c = model.config
        t = model.tensors
        # (out, in) int8-valued float64 matrices and their (out,) float64 row scales
        self.w = {
            name: t[f"{name}.q"].astype(np.float64) for name in c.matrices() if name != "embed"
        }
        self.w_scale = {name: t[f"{name}.scale"].astype(np.float64) for name in c.matrices()}
        self.embed_q = t["embed.q"]  # (V, d) int8, rows gathered per token
        if c.tied_embeddings:
            self.w["output"] = self.embed_q.astype(np.float64)
            self.w_scale["output"] = self.w_scale["embed"]
        self.gain = {name: t[name].astype(np.float64) for name in c.gains()}
        self.cos = t["rope.cos"].astype(np.float64)  # (max_seq_len, hd/2)
        self.sin = t["rope.sin"].astype(np.float64)
        self.inv_sqrt_hd = 1.0 / np.sqrt(float(c.head_dim))
        self.act = exact.silu if c.activation == "silu" else exact.gelu_tanh

    def new_cache(self, batch: int, max_len: int) -> Cache:
        c = self.config
        if max_len > c.max_seq_len:
            raise ValueError(f"context of {max_len} tokens exceeds the model's {c.max_seq_len}")
        shape = (batch, max_len, c.n_kv_heads, c.head_dim)
        n = c.n_layers
        return Cache(
            [np.zeros(shape) for _ in range(n)],
            [np.zeros(shape[:3]) for _ in range(n)],
            [np.zeros(shape) for _ in range(n)],
            [np.zeros(shape[:3]) for _ in range(n)],
        )

    # ------------------------------------------------------------------ forward

    def linear(self, x: np.ndarray, name: str) -> np.ndarray:
        q, scale = exact.quantize(x)
        return exact.matmul_q(q, scale, self.w[name], self.w_scale[name])

    def rope(self, x: np.ndarray, start: int) -> np.ndarray:
        """Rotate (B, T, H, hd) by position, in the rotate-half convention (Hugging Face Llama)."""
        half = x.shape[-1] // 2
        cos = self.cos[start : start + x.shape[1], None, :]  # (T, 1, hd/2)
        sin = self.sin[start : start + x.shape[1], None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)

    def attention(self, x: np.ndarray, layer: int, cache: Cache) -> np.ndarray:
        c = self.config
        B, T, _ = x.shape
        hd, n_kv, group = c.head_dim, c.n_kv_heads, c.n_heads // c.n_kv_heads
        start, end = cache.length, cache.length + T
        q = self.rope(self.linear(x, f"layers.{layer}.wq").reshape(B, T, c.n_heads, hd), start)
        k = self.rope(self.linear(x, f"layers.{layer}.wk").reshape(B, T, n_kv, hd), start)
        v = self.linear(x, f"layers.{layer}.wv").reshape(B, T, n_kv, hd)
        qq, qs = exact.quantize(q)  # (B, T, H, hd), (B, T, H)
        cache.k[layer][:, start:end], cache.k_scale[layer][:, start:end] = exact.quantize(k)
        cache.v[layer][:, start:end], cache.v_scale[layer][:, start:end] = exact.quantize(v)
        kq = cache.k[layer][:, :end].transpose(0, 2, 3, 1)  # (B, n_kv, hd, S)
        ks = cache.k_scale[layer][:, :end].transpose(0, 2, 1)  # (B, n_kv, S)
        vq = cache.v[layer][:, :end].transpose(0, 2, 1, 3)  # (B, n_kv, S, hd)
        vs = cache.v_scale[layer][:, :end].transpose(0, 2, 1)  # (B, n_kv, S)

        qg = qq.reshape(B, T, n_kv, group, hd).transpose(0, 2, 3, 1, 4)  # (B, n_kv, g, T, hd)
        qsg = qs.reshape(B, T, n_kv, group).transpose(0, 2, 3, 1)  # (B, n_kv, g, T)
        scores = qg @ kq[:, :, None]  # (B, n_kv, g, T, S) exact integers < 2**38
        scores = ((scores * qsg[..., None]) * ks[:, :, None, None, :]) * self.inv_sqrt_hd
        visible = np.arange(end)[None, :] <= np.arange(start, end)[:, None]  # (T, S) causal
        scores = np.where(visible, scores, -np.inf)
        top = np.max(scores, axis=-1, keepdims=True)
        weights = np.where(visible, np.rint(exact.exp(scores - top) * exact.PROB_ONE), 0.0)
        total = np.sum(weights, axis=-1, keepdims=True)  # exact: integers < 2**53
        wq, wscale = exact.quantize(weights * vs[:, :, None, None, :])  # 16-bit probabilities
        out = wq @ vq[:, :, None]  # (B, n_kv, g, T, hd) exact integers < 2**46
        out = (out * wscale[..., None]) / total
        out = out.transpose(0, 3, 1, 2, 4).reshape(B, T, c.n_heads * hd)
        return self.linear(out, f"layers.{layer}.wo")

    def mlp(self, x: np.ndarray, layer: int) -> np.ndarray:
        q, scale = exact.quantize(x)  # one quantization shared by gate and up
        gate = exact.matmul_q(
            q, scale, self.w[f"layers.{layer}.w_gate"], self.w_scale[f"layers.{layer}.w_gate"]
        )
        up = exact.matmul_q(
            q, scale, self.w[f"layers.{layer}.w_up"], self.w_scale[f"layers.{layer}.w_up"]
        )
        return self.linear(self.act(gate) * up, f"layers.{layer}.w_down")

    def forward(self, tokens: np.ndarray, cache: Cache) -> np.ndarray:
        """Logits (B, T, V) float64 for tokens (B, T) following the cache's positions."""
        c = self.config
        x = (
            self.embed_q[tokens].astype(np.float64) * self.w_scale["embed"][tokens][..., None]
        )  # (B, T, d)
        for layer in range(c.n_layers):
            h = exact.rms_norm(x, self.gain[f"layers.{layer}.attn_norm"], c.norm_eps)
            x = x + self.attention(h, layer, cache)
            h = exact.rms_norm(x, self.gain[f"layers.{layer}.mlp_norm"], c.norm_eps)
            x = x + self.mlp(h, layer)
        cache.length += tokens.shape[1]
        return self.linear(exact.rms_norm(x, self.gain["norm"], c.norm_eps), "output")

    def frequencies(self, tokens: np.ndarray, cache: Cache) -> np.ndarray:
        """(B, T, V) int64 frequency tables: rows sum to FREQ_TOTAL, every entry >= 1."""
        return logits_to_frequencies(self.forward(tokens, cache))


def logits_to_frequencies(logits: np.ndarray) -> np.ndarray:
    """Softmax in fixed point: (..., V) float64 -> (..., V) int64 summing to FREQ_TOTAL."""
    vocab = logits.shape[-1]
    top = np.max(logits, axis=-1, keepdims=True)
    mass = np.rint(exact.exp(logits - top) * EXP_ONE).astype(np.int64)  # (..., V) <= 2**30
    total = np.sum(mass, axis=-1, keepdims=True)  # exact, >= 2**30
    freq = mass * (FREQ_TOTAL - vocab) // total + 1  # < 2**54 before the division: exact
    leftover = FREQ_TOTAL - np.sum(freq, axis=-1, keepdims=True)  # >= 0
    top_token = np.argmax(mass, axis=-1)[..., None]  # the first most likely token takes the rest
    np.put_along_axis(freq, top_token, np.take_along_axis(freq, top_token, -1) + leftover, -1)
    return freq
