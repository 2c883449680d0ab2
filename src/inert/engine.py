"""Tokens -> integer frequency tables, bit-identical on every machine and backend (numpy, torch).

The forward pass architecture.py describes (Llama, Qwen2, Gemma 3), built only from the
operations in exact.py: int8 weights with float32 row scales, 16-bit per-token activations,
exact integer matrix products, integer sums, elementwise IEEE arithmetic in a fixed order,
and the blob's rotary tables. The same tokens give the same frequencies whether they are
evaluated all at once (prefill) or one at a time with the KV cache, alone or in a batch, on
any thread count.

Memory: the int8 matrices are the blob's own memory-mapped pages, packed once for the
compiled kernels (exact.Packed: the same bytes reordered, each matrix's pages dropped as it
is packed), the rotary tables are widened a slice at a time, the KV cache holds the 16-bit
integers themselves, and (rows, V) tables are made a few rows at a time (SOFTMAX_BLOCK), so
a run needs about the blob's size plus its caches.

Speed: with the compiled kernels (_kernels.c) every operation of a step but a few
elementwise ones is one kernel call (products, attention, norms, the MLP's gate, the
tables), each in the numpy path's operations and order; tests compare the two, table for
table.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from types import ModuleType
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from . import exact
from .modelfile import Model

FREQ_BITS = 24
FREQ_TOTAL = 1 << FREQ_BITS  # codecs 1 and 2: every frequency row sums to this
# codec 3 codes with inert's own coder, at 2**31: with 262,144 tokens the floors of one per
# token cost 0.0002 bits per token, not 0.023 as at 2**24
FREQ_TOTALS = {1: FREQ_TOTAL, 2: FREQ_TOTAL, 3: 1 << 31}
EXP_ONE = 2.0**30  # fixed-point 1.0 for the softmax numerators of the output distribution
MLP_ROWS = 256  # rows through the MLP together: Gemma's (256, 2048) temporaries are 4 MiB
QUERY_BLOCK = 64  # attention rows evaluated together: keeps temporaries in cache, skips masked keys
# output rows made frequencies together: (rows, V) temporaries of about 2**17 entries stay in
# L2 (4x faster than whole tables); one row at a time for vocabularies of 131,072 and more
SOFTMAX_BLOCK = 1 << 17


# Parallel pieces must be worth a thread: SPLIT_ROWS token rows through the layers, or
# SPLIT_ENTRIES table entries made frequencies, each (fewer run as one, whose products still
# use every thread). Measured with the default blob: a one-token step of 13 lanes took
# 3.2 ms on one thread and 6.9 ms split over two; a 120-lane decode ran 14.4 KB/s split in
# two pieces of at least 32 rows, 11.3-12.8 KB/s with 64.
SPLIT_ROWS = 32
# without the compiled kernels, a KV cache up to this size is held in float64 (the default
# blob's 20 KB work: 23 MiB); a larger one (Gemma's, 256 lanes of the default blob) in
# int16, widened per product. The kernels read int16 pairs (Cache.paired) whatever the size
WIDE_CACHE_BYTES = 64 << 20
SPLIT_ENTRIES = 1 << 16
# table entries a thread of the compiled logits-to-frequencies must have to be worth starting
TABLE_ENTRIES = 1 << 14
# products of the compiled attention (lanes x positions x keys x query heads x head size) a
# kernel thread must have to be worth starting
ATTEND_WORK = 1 << 16

# logits made together: enough rows that the output matrix (V, d) is read once for several
# (8 for a 262,144-token vocabulary, 16 MiB of logits), then made frequencies as above
LOGIT_BLOCK = 1 << 21


def table_rows(vocab_size: int) -> int:
    """Rows of (rows, V) tables made, coded and dropped together: 16 MiB of int64 at most."""
    return max(1, LOGIT_BLOCK // vocab_size)


def softmax_rows(vocab_size: int) -> int:
    return max(1, SOFTMAX_BLOCK // vocab_size)


@dataclass
class Cache:
    """Quantized keys and values of every layer for a batch of B sequences of up to L tokens.

    Laid out for the products that read them: a (hd, S) or (S, hd) slice is a BLAS matrix
    once widened to float64 (the visible part, per product). `paired` (made where the
    compiled kernels run, and read and written only by their attention): int16 keys
    (B, n_kv, hd/2, L, 2), a key's dimensions 2d and 2d + 1 side by side, and values
    (B, n_kv, L/2, hd, 2), positions 2i and 2i + 1 side by side (L even), so that one
    16-bit multiply-add takes two products.
    """

    k: list[np.ndarray]  # int16, or int16 values in float64 (B, n_kv, hd, L)
    k_scale: list[np.ndarray]  # (B, n_kv, L)
    v: list[np.ndarray]  # int16, or int16 values in float64 (B, n_kv, L, hd)
    v_scale: list[np.ndarray]  # (B, n_kv, L)
    length: int = 0  # positions filled so far
    paired: bool = False

    def rows(self, a: int, b: int) -> Cache:
        """Sequences a..b-1 of the batch: views, so filling them fills this cache."""
        return Cache(
            [k[a:b] for k in self.k],
            [s[a:b] for s in self.k_scale],
            [v[a:b] for v in self.v],
            [s[a:b] for s in self.v_scale],
            self.length,
            self.paired,
        )

    def put(self, layer: int, start: int, k: Any, ks: Any, v: Any, vs: Any) -> None:
        """Positions start.. of keys k and values v (B, T, n_kv, hd), exact integers, and
        their scales (B, T, n_kv), into the layout that is not paired (the kernel writes
        its own)."""
        order, end = exact.namespace(k).permute_dims, start + k.shape[1]
        self.k_scale[layer][..., start:end] = order(ks, (0, 2, 1))
        self.v_scale[layer][..., start:end] = order(vs, (0, 2, 1))
        self.k[layer][..., start:end] = order(k, (0, 2, 3, 1))
        self.v[layer][:, :, start:end] = order(v, (0, 2, 1, 3))

    def keys(self, layer: int, a: int, b: int) -> Any:
        """Positions a..b-1 of the keys, (B, n_kv, hd, S) float64."""
        k = self.k[layer]
        xp = exact.namespace(k)
        return xp.astype(k[..., a:b], xp.float64, copy=False)

    def values(self, layer: int, a: int, b: int) -> Any:
        """Positions a..b-1 of the values, (B, n_kv, S, hd) float64."""
        v = self.v[layer]
        xp = exact.namespace(v)
        return xp.astype(v[:, :, a:b], xp.float64, copy=False)


BACKENDS = ("numpy", "torch")


class Engine:
    def __init__(
        self, model: Model, threads: int = 1, backend: str = "numpy", device: str | None = None
    ) -> None:
        """`threads`: sequences of a batch evaluated in parallel (never changes a bit).

        `backend`: "numpy" (the compiled kernels where built), or "torch" on `device` ("cpu",
        "cuda"; default: cuda where available) — the same operations in torch's, so the same
        tables to the bit. Tables come back as numpy arrays either way.
        """
        self.config = c = model.config
        self.threads = threads
        self.backend = backend
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self._blas = ThreadpoolController()
        self.xp, self.device, t = np, None, model.tensors
        if backend == "torch":
            self.xp, self.device, t = _torch_tensors(model.tensors, device)
        elif backend != "numpy":
            raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
        xp = self.xp
        # (out, in) int8 matrices as the blob holds them, and (out,) row scales
        self.weight = {name: t[f"{name}.q"] for name in c.matrices()}
        self.w_scale = {name: xp.astype(t[f"{name}.scale"], xp.float64) for name in c.matrices()}
        if c.tied_embeddings:
            self.weight["output"] = self.weight["embed"]
            self.w_scale["output"] = self.w_scale["embed"]
        self._model = model
        self._stacked = False  # see _stack
        self._stacking = threading.Lock()
        self.gain = {name: xp.astype(t[name], xp.float64) for name in c.gains()}
        self.bias = {name: xp.astype(t[name], xp.float64) for name in c.biases()}
        # rotary table r: cos, sin (max_seq_len, hd/2) float32, widened a slice at a time
        self.cos = [t[f"rope.{r}.cos"] for r in range(len(c.rope_thetas))]
        self.sin = [t[f"rope.{r}.sin"] for r in range(len(c.rope_thetas))]
        self.score_scale = c.attn_scale  # 1/sqrt(hd) unless the model says otherwise
        self.act = exact.silu if c.activation == "silu" else exact.gelu_tanh

    @property
    def _compiled(self) -> bool:
        """Whether the compiled kernels run (the numpy backend, where pip built them)."""
        return self.xp is np and exact.KERNELS is not None

    def _stack(self) -> None:
        """Stack the matrices that read the same quantized input: q, k and v; gate and up.

        Each output is its own exact dot product and scale, so one product of the stack makes
        the same numbers as one per matrix, with a third of the calls (a one-token step is
        thousands of small products). The stacks are copies: the mapped pages they were read
        from are dropped, so memory does not grow; and they are made at the first forward
        pass, after the work is tokenized (a large tokenizer's memory is gone by then).
        """
        with self._stacking:
            if not self._stacked:
                self._stack_layers()
                if self._compiled:
                    self._pack()
                self._stacked = True

    def _stack_layers(self) -> None:
        xp = self.xp
        for i in range(self.config.n_layers):
            for fused, parts in (("wqkv", ("wq", "wk", "wv")), ("w_gate_up", ("w_gate", "w_up"))):
                names = [f"layers.{i}.{p}" for p in parts]
                self.weight[f"layers.{i}.{fused}"] = xp.concat([self.weight.pop(n) for n in names])
                self.w_scale[f"layers.{i}.{fused}"] = xp.concat(
                    [self.w_scale.pop(n) for n in names]
                )
                self._model.drop_pages([f"{n}.q" for n in names])

    def _pack(self) -> None:
        """Every matrix a product reads, packed for the compiled kernels (exact.Packed:
        1.5-2.5x faster products, 10x for one row), in place of the stacks and the mapped
        pages, which are dropped: memory does not grow. The embedding is read from the
        output matrix's panels where the two are tied."""
        packed: dict[int, exact.Packed] = {}  # by the matrix's id: a tied one is packed once
        for name, w in list(self.weight.items()):
            if name == "embed" and not self.config.tied_embeddings:
                continue  # only gathered by row: its mapped pages serve
            if id(w) not in packed:
                packed[id(w)] = exact.Packed(w)
                self._model.drop_pages([f"{name}.q"])
            self.weight[name] = packed[id(w)]

    def _embed(self, tokens: Any) -> Any:
        """The int8 embedding rows of tokens (B, T)."""
        embed = self.weight["embed"]
        return embed.rows(tokens) if isinstance(embed, exact.Packed) else embed[tokens]

    def new_cache(self, batch: int, max_len: int) -> Cache:
        c = self.config
        if max_len > c.max_seq_len:
            raise ValueError(f"context of {max_len} tokens exceeds the model's {c.max_seq_len}")
        heads, n, xp, dev = (batch, c.n_kv_heads), c.n_layers, self.xp, self.device
        paired = self._compiled  # the compiled attention's layout, in int16
        if paired:
            max_len += max_len % 2
            hd = c.head_dim
            k, v = (*heads, hd // 2, max_len, 2), (*heads, max_len // 2, hd, 2)
        else:
            k, v = (*heads, c.head_dim, max_len), (*heads, max_len, c.head_dim)
        # the 16-bit integers, held as float64 where that is small: the products read them
        # as they are instead of widening the visible part at every step (the same values)
        wide = 2 * n * math.prod(k) * 8 <= WIDE_CACHE_BYTES and not paired
        kind = xp.float64 if wide else xp.int16
        return Cache(
            [xp.zeros(k, dtype=kind, device=dev) for _ in range(n)],
            [xp.zeros((*heads, max_len), dtype=xp.float64, device=dev) for _ in range(n)],
            [xp.zeros(v, dtype=kind, device=dev) for _ in range(n)],
            [xp.zeros((*heads, max_len), dtype=xp.float64, device=dev) for _ in range(n)],
            paired=paired,
        )

    def _empty(self, shape: tuple[int, ...], dtype: object = None) -> Any:
        return self.xp.empty(shape, dtype=dtype or self.xp.float64, device=self.device)

    # ------------------------------------------------------------------ forward

    # `threads` of a method: how many threads its products may use (never changes a bit)

    def linear(self, x: np.ndarray, name: str, threads: int) -> np.ndarray:
        return exact.linear(x, self.weight[name], self.w_scale[name], threads)

    def rope(self, x: np.ndarray, start: int, table: int) -> np.ndarray:
        """Rotate (B, T, H, hd) by position, in the rotate-half convention (Hugging Face Llama)."""
        half = x.shape[-1] // 2
        xp = self.xp
        cos = xp.astype(self.cos[table][start : start + x.shape[1], None, :], xp.float64)
        sin = xp.astype(self.sin[table][start : start + x.shape[1], None, :], xp.float64)
        x1, x2 = x[..., :half], x[..., half:]  # cos, sin: (T, 1, hd/2)
        return xp.concat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)

    def projection(self, y: Any, layer: int, which: str, heads: int) -> Any:
        """(B, T, heads, hd): y, the `which` (q, k or v) part of the stacked projection, with
        its bias and head norm if any."""
        B, T, _ = y.shape
        spec, name = self.config.layers[layer], f"layers.{layer}"
        if spec.qkv_bias:
            y = y + self.bias[f"{name}.b{which}"]
        y = y.reshape(B, T, heads, self.config.head_dim)
        if spec.qk_norm and which != "v":
            y = exact.rms_norm(y, self.gain[f"{name}.{which}_norm"], self.config.norm_eps)
        return y

    def attention(self, x: np.ndarray, layer: int, cache: Cache, threads: int) -> np.ndarray:
        c, spec = self.config, self.config.layers[layer]
        B, T, _ = x.shape
        hd, n_kv, group = c.head_dim, c.n_kv_heads, c.n_heads // c.n_kv_heads
        start = cache.length
        qkv = self.linear(x, f"layers.{layer}.wqkv", threads)  # (B, T, (H + 2 n_kv) hd)
        nq, nk = c.n_heads * hd, n_kv * hd
        q = self.projection(qkv[..., :nq], layer, "q", c.n_heads)
        k = self.projection(qkv[..., nq : nq + nk], layer, "k", n_kv)
        v = self.projection(qkv[..., nq + nk :], layer, "v", n_kv)
        if cache.paired:  # made only where the compiled kernels run: their attention
            return self.linear(
                self._attend_compiled(q, k, v, layer, cache, threads),
                f"layers.{layer}.wo",
                threads,
            )
        q, k = self.rope(q, start, spec.rope), self.rope(k, start, spec.rope)
        qq, qs = exact.quantize(q)  # (B, T, H, hd), (B, T, H)
        kq, ks = exact.quantize(k)  # (B, T, n_kv, hd), (B, T, n_kv)
        vq, vs = exact.quantize(v)
        order = self.xp.permute_dims
        cache.put(layer, start, kq, ks, vq, vs)  # exact integers (int16 values)

        qg = order(qq.reshape(B, T, n_kv, group, hd), (0, 2, 3, 1, 4))  # (B, n_kv, g, T, hd)
        qsg = order(qs.reshape(B, T, n_kv, group), (0, 2, 3, 1))  # (B, n_kv, g, T)
        out = self._empty(tuple(qg.shape))
        for a in range(0, T, QUERY_BLOCK):  # rows are independent: blocks change no bit
            b = min(T, a + QUERY_BLOCK)
            seen = start + b  # keys visible to this block's last query
            # a sliding window hides keys before its first query's window: they are left
            # out (their weights would be exactly 0, so no sum changes)
            first = max(0, start + a - spec.window + 1) if spec.window else 0
            out[..., a:b, :] = self._attend(
                qg[..., a:b, :],
                qsg[..., a:b],
                cache.keys(layer, first, seen),
                cache.k_scale[layer][..., first:seen],
                cache.values(layer, first, seen),
                cache.v_scale[layer][..., first:seen],
                start + a,
                first,
                spec.window,
            )
        out = order(out, (0, 3, 1, 2, 4)).reshape(B, T, c.n_heads * hd)
        return self.linear(out, f"layers.{layer}.wo", threads)

    def _attend_compiled(
        self, q: Any, k: Any, v: Any, layer: int, cache: Cache, threads: int
    ) -> np.ndarray:
        """attention's arithmetic in one call of the compiled kernel: rotation, quantization,
        the cache's new positions and _attend's softmax, each query over the keys it sees
        (B, T, H * hd)."""
        c, spec = self.config, self.config.layers[layer]
        (B, T), start = q.shape[:2], cache.length
        out = np.empty((B, T, c.n_heads * c.head_dim))
        keys = min(spec.window or start + T, start + T)  # the most a query sees
        exact.KERNELS.attend(
            *(np.ascontiguousarray(x, dtype=np.float64) for x in (q, k, v)),
            self.cos[spec.rope][start : start + T],
            self.sin[spec.rope][start : start + T],
            cache.k[layer],
            cache.k_scale[layer],
            cache.v[layer],
            cache.v_scale[layer],
            out,
            B,
            T,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim,
            cache.k[layer].shape[-2],
            start,
            spec.window,
            float(self.score_scale),
            max(1, min(threads, B * T * keys * c.n_heads * c.head_dim // ATTEND_WORK)),
        )
        return out

    def _attend(
        self,
        qg: np.ndarray,
        qsg: np.ndarray,
        kq: np.ndarray,
        ks: np.ndarray,
        vq: np.ndarray,
        vs: np.ndarray,
        first: int,
        key_first: int = 0,
        window: int = 0,
    ) -> np.ndarray:
        """Softmax attention of queries at positions first, first+1, ... over the keys at
        positions key_first .. key_first+S-1; with a window W, query p sees keys p-W+1 .. p.

        qg (B, n_kv, g, T, hd), qsg (B, n_kv, g, T); kq (B, n_kv, hd, S), ks (B, n_kv, S);
        vq (B, n_kv, S, hd), vs (B, n_kv, S). Returns (B, n_kv, g, T, hd).
        """
        B, n_kv, g, T, hd = qg.shape
        S = kq.shape[-1]
        # one product per (sequence, kv head) for all g query heads sharing it
        scores = (qg.reshape(B, n_kv, g * T, hd) @ kq).reshape(B, n_kv, g, T, S)  # exact < 2**38
        scores *= qsg[..., None]
        scores *= ks[:, :, None, None, :]
        scores *= self.score_scale
        xp = self.xp
        keys = xp.arange(key_first, key_first + S, device=self.device)[None, :]  # (1, S)
        queries = xp.arange(first, first + T, device=self.device)[:, None]  # (T, 1) positions
        # a key after a query (never so in one-token steps), or before its window, is masked
        if first + 1 < key_first + S or (window and first + T - window > key_first):
            visible = keys <= queries
            if window:
                visible &= keys > queries - window
            scores[..., ~visible] = -math.inf
        scores -= xp.max(scores, axis=-1, keepdims=True)
        weights = exact.exp(scores)
        weights *= exact.PROB_ONE
        weights = exact.rint(weights)  # masked entries: exp(-inf) rounds to 0
        total = xp.sum(weights, axis=-1, keepdims=True)  # exact: integers < 2**53
        weights *= vs[:, :, None, None, :]
        wq, wscale = exact.quantize(weights)  # 16-bit probabilities
        out = (wq.reshape(B, n_kv, g * T, S) @ vq).reshape(B, n_kv, g, T, hd)  # exact < 2**46
        out *= wscale[..., None]
        out /= total
        return out

    def mlp(self, x: np.ndarray, layer: int, threads: int) -> np.ndarray:
        """The MLP of every row of x (B, T, d), MLP_ROWS rows at a time: its (rows, hidden)
        temporaries stay bounded (rows are independent, so blocks change no bit)."""
        hidden = self.config.hidden_dim
        rows = x.reshape(-1, x.shape[-1])
        out = self._empty(tuple(rows.shape))
        for a in range(0, len(rows), MLP_ROWS):
            gate_up = self.linear(rows[a : a + MLP_ROWS], f"layers.{layer}.w_gate_up", threads)
            if self._compiled:  # act(gate) * up in one call
                glu = np.empty((len(gate_up), hidden))
                exact.KERNELS.glu(gate_up, glu, len(gate_up), hidden, self.act is exact.gelu_tanh)
            else:
                glu = self.act(gate_up[:, :hidden]) * gate_up[:, hidden:]
            out[a : a + MLP_ROWS] = self.linear(glu, f"layers.{layer}.w_down", threads)
        return out.reshape(x.shape)

    def hidden(self, tokens: np.ndarray, cache: Cache, threads: int = 1) -> np.ndarray:
        """Final normalized states (B, T, d) float64 for tokens (B, T) after the cache's.

        Fills the cache at its positions; advancing cache.length is the caller's part.
        """
        c, eps, xp = self.config, self.config.norm_eps, self.xp
        tokens = xp.asarray(tokens, dtype=xp.int64, device=self.device)
        x = (
            xp.astype(self._embed(tokens), xp.float64) * self.w_scale["embed"][tokens][..., None]
        )  # (B, T, d)
        if c.embed_scale != 1.0:
            x *= c.embed_scale
        for layer in range(c.n_layers):
            name, post = f"layers.{layer}", c.layers[layer].post_norms
            normed = exact.rms_norm(x, self.gain[f"{name}.attn_norm"], eps)
            h = self.attention(normed, layer, cache, threads)
            x = x + (exact.rms_norm(h, self.gain[f"{name}.post_attn_norm"], eps) if post else h)
            h = self.mlp(exact.rms_norm(x, self.gain[f"{name}.mlp_norm"], eps), layer, threads)
            x = x + (exact.rms_norm(h, self.gain[f"{name}.post_mlp_norm"], eps) if post else h)
        return exact.rms_norm(x, self.gain["norm"], eps)

    def logits(self, q: np.ndarray, scale: np.ndarray, threads: int = 1) -> np.ndarray:
        """(N, V) float64 logits of quantized final states q (N, d), soft-capped if the model is."""
        logits = exact.matmul_q(q, scale, self.weight["output"], self.w_scale["output"], threads)
        if cap := self.config.logit_softcap:
            logits = cap * exact.tanh(exact.divide(logits, cap))
        return logits

    def forward(self, tokens: np.ndarray, cache: Cache) -> np.ndarray:
        """Logits (B, T, V) float64 for tokens (B, T) following the cache's positions."""
        q, scale = self.final_states(tokens, cache)
        return self.logits(q, scale, self.threads).reshape(*tokens.shape, -1)

    def final_states(self, tokens: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray]:
        """The quantized final states q (B*T, d), scale (B*T,) of tokens (B, T) following the
        cache's positions: what `tables` turns into frequencies, a few rows at a time."""
        self._stack()  # before the threads: once, on this one
        B, T = tokens.shape
        q = self._empty((B, T, self.config.dim))
        scale = self._empty((B, T))

        def part(a: int, b: int, threads: int) -> None:
            h = self.hidden(tokens[a:b], cache.rows(a, b), threads)
            q[a:b], scale[a:b] = exact.quantize(h)

        # sequences in parallel when there are enough rows to share; else one call, whose
        # products use the threads (a one-token step of a few lanes: weights read once).
        # With the compiled kernels a one-token step is always one call: its kernels use the
        # threads, and two calls' Python between them fought for the GIL (a 70-lane step of
        # the default blob: 1.5x faster as one call)
        parts = 1 if T == 1 and self._compiled else min(B, B * T // SPLIT_ROWS)
        self._split(B, part, parts=parts)
        cache.length += T
        return q.reshape(B * T, -1), scale.reshape(-1)

    def tables(
        self, q: np.ndarray, scale: np.ndarray, codec: int = 1, running: bool = False
    ) -> np.ndarray:
        """(N, V) int64 frequency tables of N quantized final states (see final_states), or
        (`running`) their inclusive running sums: what a decoder searches.

        Rows go in blocks: each block's logits in one product on all threads (the output
        matrix read once), then its rows made frequencies SOFTMAX rows at a time (the
        temporaries stay in cache), spread over the threads when there are enough.
        """
        vocab = self.config.vocab_size
        freq = np.empty((len(q), vocab), dtype=np.int64)
        block, step = table_rows(vocab), softmax_rows(vocab)
        with self._blas.limit(limits=1, user_api="blas"):
            for a in range(0, len(q), block):
                if self._compiled:  # the products, then scales and frequencies in C
                    rows = exact.int_matmul(q[a : a + block], self.weight["output"], self.threads)
                    exact.KERNELS.frequencies_q(
                        rows,
                        np.ascontiguousarray(scale[a : a + block]),
                        self.w_scale["output"],
                        MASS_TABLE,
                        freq[a : a + len(rows)],
                        *rows.shape,
                        codec,
                        float(self.config.logit_softcap),
                        max(1, min(self.threads, rows.size // TABLE_ENTRIES)),
                        running,
                    )
                    continue
                logits = self.logits(q[a : a + block], scale[a : a + block], self.threads)

                if self.xp is not np:  # the torch backend: one pass on its device
                    freq[a : a + len(logits)] = _device_frequencies(logits, codec)
                    continue

                def part(i: int, j: int, _: int, a: int = a, logits: np.ndarray = logits) -> None:
                    for r in range(i, j, step):
                        b = min(r + step, j)
                        row_frequencies(logits[r:b], codec, out=freq[a + r : a + b])

                self._split(len(logits), part, parts=len(logits) * vocab // SPLIT_ENTRIES)
                if running:
                    np.cumsum(freq[a : a + len(logits)], axis=1, out=freq[a : a + len(logits)])
        return freq

    def frequencies(
        self, tokens: np.ndarray, cache: Cache, codec: int = 1, running: bool = False
    ) -> np.ndarray:
        """(B, T, V) int64 frequency tables: rows sum to FREQ_TOTALS[codec], every entry >= 1
        (or, `running`, their inclusive running sums).

        The same as logits_to_frequencies(forward(...), codec), without the (B, T, V) logits.
        """
        q, scale = self.final_states(tokens, cache)
        return self.tables(q, scale, codec, running).reshape(*tokens.shape, -1)

    def _split(self, rows: int, part: Callable[[int, int, int], None], parts: int) -> None:
        """Run part(a, b, threads) over rows a..b-1, in up to `parts` parallel pieces on the
        engine's threads (rows are independent: no bit changes). One piece alone gives its
        products all the threads; pieces in parallel, one each. BLAS gets one thread in any
        case: its products are small, and BLAS threads waiting for a busy core made them 10x
        slower on a loaded machine.
        """
        if self.xp is not np:  # torch spreads each operation over its own threads
            part(0, rows, self.threads)
            return
        parts = max(1, min(self.threads, rows, parts))
        cuts = [rows * i // parts for i in range(parts + 1)]
        with self._blas.limit(limits=1, user_api="blas"):
            if parts == 1:
                part(0, rows, self.threads)
            else:
                list(self._pool.map(lambda ab: part(*ab, 1), pairwise(cuts)))


def logits_to_frequencies(logits: np.ndarray, codec: int = 1) -> np.ndarray:
    """Softmax in fixed point: (..., V) float64 -> (..., V) int64 summing to FREQ_TOTALS[codec]."""
    rows = logits.reshape(-1, logits.shape[-1])
    freq = np.empty(rows.shape, dtype=np.int64)
    step = softmax_rows(rows.shape[-1])
    for a in range(0, len(rows), step):  # rows are independent: blocks change no bit
        freq[a : a + step] = row_frequencies(rows[a : a + step], codec)
    return freq.reshape(logits.shape)


def _row_frequencies_1(logits: Any) -> Any:
    """(R, V) float64 logits -> (R, V) int64 frequencies: the arithmetic of codec 1 (numpy's
    or torch's arrays: the standard's operations, each rounding as IEEE-754 says)."""
    xp, vocab = exact.namespace(logits), logits.shape[-1]
    top = xp.max(logits, axis=-1, keepdims=True)
    mass = xp.astype(exact.rint(exact.exp(logits - top) * EXP_ONE), xp.int64)  # <= 2**30
    total = xp.sum(mass, axis=-1, keepdims=True)  # exact, >= 2**30
    freq = mass * (FREQ_TOTAL - vocab) // total + 1  # < 2**54 before the division: exact
    return _leftover_to_top(xp, freq, mass, FREQ_TOTAL)


def _leftover_to_top(xp: ModuleType, freq: Any, mass: Any, total: int) -> Any:
    """What the floored shares leave of `total` (>= 0) goes to the first most likely token
    (argmax returns the first maximum)."""
    leftover = total - xp.sum(freq, axis=-1)
    freq[xp.arange(freq.shape[0], device=freq.device), xp.argmax(mass, axis=-1)] += leftover
    return freq


# Codec 2 reads e**-d, for d the logit's distance below the top one in 1/MASS_STEPS nats,
# from a table: 3x faster than the polynomial, and rounding d by up to 1/2048 nat costs nothing
# measurable. MASS_TABLE[i] = rint(exp(-i / 1024) * 2**30); it is 0 from i = 22004 on.
MASS_STEPS = 1024
MASS_TABLE = np.rint(exact.exp(-np.arange(22528) / MASS_STEPS) * EXP_ONE).astype(np.int64)


def _row_frequencies_2(logits: Any, freq_total: int = FREQ_TOTAL) -> Any:
    """(R, V) float64 logits -> (R, V) int64 frequencies: the arithmetic of codec 2 (and of
    codec 3, at its total)."""
    xp, (rows, vocab) = exact.namespace(logits), logits.shape
    top = xp.max(logits, axis=-1, keepdims=True)
    steps = xp.minimum(exact.rint((top - logits) * MASS_STEPS), float(len(MASS_TABLE) - 1))
    table = xp.asarray(MASS_TABLE, device=logits.device)
    mass = xp.take(table, xp.reshape(xp.astype(steps, xp.int64), (-1,)))  # <= 2**30 each
    mass = xp.reshape(mass, (rows, vocab))
    total = xp.sum(mass, axis=-1, keepdims=True)  # exact, >= 2**30
    share = float(freq_total - vocab) / xp.astype(total, xp.float64)  # correctly rounded
    freq = xp.astype(xp.floor(xp.astype(mass, xp.float64) * share), xp.int64) + 1
    return _leftover_to_top(xp, freq, mass, freq_total)


def _row_frequencies_3(logits: Any) -> Any:
    return _row_frequencies_2(logits, FREQ_TOTALS[3])


ROW_FREQUENCIES = {1: _row_frequencies_1, 2: _row_frequencies_2, 3: _row_frequencies_3}


def row_frequencies(logits: np.ndarray, codec: int, out: np.ndarray | None = None) -> np.ndarray:
    """(R, V) float64 logits -> (R, V) int64 frequencies of the codec (into `out` if given):
    the compiled kernel's (the same operations, one pass per row: 5-10x faster for large
    vocabularies), or numpy's."""
    if exact.KERNELS is None:
        freq = ROW_FREQUENCIES[codec](logits)
        if out is None:
            return freq
        out[...] = freq
        return out
    rows = np.ascontiguousarray(logits, dtype=np.float64)
    into = out if out is not None and out.flags.c_contiguous else np.empty(rows.shape, np.int64)
    exact.KERNELS.row_frequencies(rows, MASS_TABLE, into, *rows.shape, codec)
    if out is not None and into is not out:
        out[...] = into
    return into if out is None else out


# ---------------------------------------------------------------------------- torch backend


def _torch_tensors(
    tensors: dict[str, np.ndarray], device: str | None
) -> tuple[Any, Any, dict[str, Any]]:
    """The array namespace, the device and the model's tensors on it (torch is optional)."""
    from .errors import InertError

    try:
        import array_api_compat.torch as xp
        import torch
    except ImportError:
        raise InertError(
            "the torch backend needs torch and array-api-compat",
            hint="pip install 'inert[torch]'",
        ) from None
    try:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise InertError(f"unknown device {device!r}", hint="cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InertError(f"no CUDA device here for --device {device}", hint="--device cpu")
    try:
        with warnings.catch_warnings():  # the blob's read-only pages: torch only reads them
            warnings.simplefilter("ignore", UserWarning)
            on_device = {n: torch.from_numpy(np.asarray(t)).to(dev) for n, t in tensors.items()}
    except (RuntimeError, AssertionError) as e:  # out of device memory, a device torch lacks
        raise InertError(f"cannot put the model on {dev}: {e}") from None
    return xp, dev, on_device


def _device_frequencies(logits: Any, codec: int) -> np.ndarray:
    """ROW_FREQUENCIES[codec] on the logits' device (the torch backend), as numpy."""
    return ROW_FREQUENCIES[codec](logits).cpu().numpy()
