"""Arithmetic whose every result bit is the same on every machine: the engine's building blocks.

The rules (DESIGN.md, "The portability contract"):

- Matrix products take integer operands whose partial sums stay exactly
  representable (below 2**24 in float32, 2**53 in float64), so BLAS returns the exact
  integer result whatever order, blocking or thread count it uses.
- Reductions run only over integers (int64, or integer-valued float64 below 2**53), or are
  max/min, which do not depend on order.
- Everything else is elementwise IEEE-754 float64 arithmetic (+ - * / sqrt, floor, rint,
  ldexp), each correctly rounded, applied in the fixed order written here.
- No libm transcendental (exp, tanh, sin, ...): `exp` below is a fixed polynomial; rotary
  embeddings read cos/sin tables stored in the blob.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

LOG2_E = 1.4426950408889634  # float64 nearest to 1/ln(2)
LN_2 = 0.6931471805599453  # float64 nearest to ln(2)
# Taylor coefficients 1/k! of exp(t), highest first, for t = (y - rint(y))*ln2 in
# [-0.347, 0.347]: degree 7 keeps the relative error below 1e-8, far under what the
# 16-bit activations and 24-bit frequencies resolve.
_EXP_COEFFS = tuple(1.0 / math.factorial(k) for k in range(7, -1, -1))

try:
    from . import _kernels as KERNELS  # the compiled integer products, when pip built them
except ImportError:  # no C compiler at install: numpy computes the same bits, slower
    KERNELS = None

THREAD_PRODUCTS = 1 << 19  # products a kernel thread must have to be worth starting (a
# one-token step of Gemma 3 270M: 23 ms against 26-29 ms with 2**22 as the bound)
WEIGHT_BLOCK = 1 << 19  # int8 weights the numpy path widens to float64 at a time (4 MiB)
ACT_MAX = 32767.0  # activations are quantized to signed 16 bits: the measured-free choice
PROB_ONE = 2.0**24  # attention weights before their 16-bit requantization


def namespace(x: object) -> ModuleType:
    """The array namespace of x: numpy itself, or torch's (array_api_compat) for the torch
    backend. Every function here works in either: only the standard's operations, each
    rounding as IEEE-754 says."""
    if isinstance(x, np.ndarray):
        return np
    import array_api_compat.torch as xp  # the torch backend's namespace

    return xp


def divide(x: Any, c: float) -> Any:
    """x / c for a constant c. Torch's CUDA kernels multiply by 1/c when the divisor is a
    Python number (rounded twice: other bits than numpy's), so torch divides by c as a
    tensor of x's device."""
    if isinstance(x, np.ndarray):
        return x / c
    return x / namespace(x).asarray(c, dtype=x.dtype, device=x.device)


def exp(x: Any) -> Any:
    """e**x for float64 x, identical on every IEEE-754 machine (|rel err| < 1e-8).

    In-place steps only change where results are stored, never how they are rounded.
    """
    if not isinstance(x, np.ndarray):
        return _exp_xp(x)
    y = np.multiply(x, LOG2_E)
    np.clip(y, -1100.0, 1100.0, out=y)  # beyond: exactly 0 or inf after ldexp
    n = np.rint(y)
    t = np.subtract(y, n, out=y)
    t *= LN_2
    p = t * _EXP_COEFFS[0]
    p += _EXP_COEFFS[1]
    for c in _EXP_COEFFS[2:]:  # Horner, fixed order
        p *= t
        p += c
    with np.errstate(over="ignore", under="ignore"):  # saturating to inf or 0 is intended
        return np.ldexp(p, n.astype(np.int32), out=p)


def _exp_xp(x: Any) -> Any:
    """exp for another namespace: the same operations, with ldexp(p, n) as p * 2**n, 2**n
    made from its bits. Equal wherever 2**n is a normal number (n >= -1022); below, both
    results are under 2**-1021 — and every use of exp here adds them to 1 or rounds them
    times 2**30 at most, where they vanish alike. n > 1023 saturates to inf as ldexp does."""
    xp = namespace(x)
    y = xp.clip(x * LOG2_E, -1100.0, 1100.0)
    n = xp.round(y)  # ties to even, as rint
    t = (y - n) * LN_2
    p = t * _EXP_COEFFS[0]
    p += _EXP_COEFFS[1]
    for c in _EXP_COEFFS[2:]:
        p *= t
        p += c
    e = xp.astype(xp.clip(n, -1022.0, 1023.0), xp.int64) + 1023
    pow2 = (e << 52).view(xp.float64)
    out = p * pow2
    return xp.where(n > 1023.0, xp.asarray(math.inf, dtype=xp.float64, device=x.device), out)


def silu(x: Any) -> Any:
    return x / (1.0 + exp(-x))


def tanh(x: Any) -> Any:
    """tanh(x) = 1 - 2/(e**2x + 1), with this module's exp."""
    return 1.0 - 2.0 / (exp(2.0 * x) + 1.0)


def gelu_tanh(x: Any) -> Any:
    """GELU with the tanh approximation (Gemma's GeGLU)."""
    u = (x + 0.044715 * (x * x * x)) * 0.7978845608028654  # sqrt(2/pi)
    return 0.5 * x * (1.0 + tanh(u))


def quantize(x: Any) -> tuple[Any, Any]:
    """Per-row symmetric 16-bit quantization over the last axis.

    Returns (q, scale): q integer-valued float64 in [-32767, 32767], x ~= q * scale[..., None].
    """
    xp = namespace(x)
    amax = xp.max(xp.abs(x), axis=-1)  # (...,) order-free reduction
    safe = xp.where(amax > 0.0, amax, 1.0)
    q = rint(x / safe[..., None] * ACT_MAX)
    return q, divide(amax, ACT_MAX)


def rint(x: Any) -> Any:
    """x rounded to the nearest integer, ties to even (numpy: in place, so x is a temporary)."""
    return np.rint(x, out=x) if isinstance(x, np.ndarray) else namespace(x).round(x)


class Packed:
    """An int8 matrix (m, n) packed for the compiled products: panels of 16 rows, each
    column pair of a panel's rows side by side (_kernels.c, "packed products"), so that one
    vector instruction multiplies a pair of activations into 16 rows' sums. The same
    entries as the matrix, permuted: a copy of its size, made once per run; rows (the
    embedding's) and the plain matrix (the numpy path's) are read back from it."""

    dtype = np.dtype(np.int8)

    def __init__(self, w: np.ndarray) -> None:
        self.shape = m, n = w.shape
        self.panels = np.empty((-(-m // 16), -(-n // 2), 16, 2), dtype=np.int8)
        KERNELS.pack(np.ascontiguousarray(w, dtype=np.int8), self.panels, m, n)
        self._plain: np.ndarray | None = None

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The matrix's rows index (...) as int8 (..., n)."""
        n = self.shape[1]
        picked = self.panels[index // 16, :, index % 16, :]  # (..., n/2, 2)
        return picked.reshape(*index.shape, -1)[..., :n]

    def plain(self) -> np.ndarray:
        """The (m, n) matrix itself (made on first use: only the numpy path needs it)."""
        if self._plain is None:
            m, n = self.shape
            rows = self.panels.transpose(0, 2, 1, 3).reshape(-1, self.panels.shape[1] * 2)
            self._plain = np.ascontiguousarray(rows[:m, :n])
        return self._plain


def int_matmul(a: np.ndarray, w: np.ndarray | Packed, threads: int = 1) -> np.ndarray:
    """a (N, n) integer-valued, |a| <= 32767, times w (m, n) int8 transposed: (N, m) float64.

    Every product is at most 32767*128 < 2**22 in magnitude, so any partial sum of fewer
    than 2**31 terms stays below 2**53: the result is the exact integer whoever adds it. The
    compiled kernel (_kernels.c) reads the int8 weights packed (Packed), on `threads`
    threads; without it, numpy widens blocks of WEIGHT_BLOCK weights to float64 for BLAS.
    """
    if not isinstance(a, np.ndarray):
        return _int_matmul_xp(a, w)
    if isinstance(w, Packed) and KERNELS is None:  # a test took the kernels away
        w = w.plain()
    if w.dtype != np.int8:
        raise TypeError(f"weights must be int8, not {w.dtype}")
    N, n = a.shape
    m = w.shape[0]
    out = np.empty((N, m))
    if KERNELS is not None:  # (the engine packs its matrices once a run; one here, for once)
        packed = w if isinstance(w, Packed) else Packed(w)
        threads = max(1, min(threads, N * n * m // THREAD_PRODUCTS))
        a16 = np.ascontiguousarray(a, dtype=np.int16)
        KERNELS.matmul_packed(a16, packed.panels, out, N, n, m, threads)
        return out
    step = max(1, WEIGHT_BLOCK // max(n, 1))
    for j in range(0, m, step):  # columns are independent: blocks change no bit
        out[:, j : j + step] = a @ w[j : j + step].astype(np.float64).T
    return out


def _int_matmul_xp(a: Any, w: Any) -> Any:
    """int_matmul in another namespace (torch, any device): float64 products of blocks of the
    int8 weights widened, exact as in numpy's BLAS (integer sums below 2**53)."""
    xp = namespace(a)
    N, n = a.shape
    out = xp.empty((N, w.shape[0]), dtype=xp.float64, device=a.device)
    step = max(1, WEIGHT_BLOCK // max(n, 1))
    for j in range(0, w.shape[0], step):
        out[:, j : j + step] = a @ xp.permute_dims(xp.astype(w[j : j + step], xp.float64), (1, 0))
    return out


def matmul_q(
    q: np.ndarray,
    q_scale: np.ndarray,
    w: np.ndarray | Packed,
    w_scale: np.ndarray,
    threads: int = 1,
) -> np.ndarray:
    """(q * q_scale) @ (w * w_scale).T: an exact integer product, then the two scales.

    q: (..., n) int16-valued float64; w: (m, n) int8; w_scale: (m,) float64.
    """
    lead, n = q.shape[:-1], q.shape[-1]
    acc = int_matmul(q.reshape(-1, n), w, threads)  # (N, m) exact integers
    return ((acc * q_scale.reshape(-1, 1)) * w_scale).reshape(*lead, -1)


def linear(
    x: np.ndarray, w: np.ndarray | Packed, w_scale: np.ndarray, threads: int = 1
) -> np.ndarray:
    """matmul_q(*quantize(x), w, w_scale): x (..., n) float64 through the int8 matrix w (m, n).

    The compiled kernel does the three steps in one call, in numpy's operations and order
    (a one-token step makes thousands of small products: their numpy overhead was the step).
    """
    if KERNELS is None or w.dtype != np.int8:
        q, scale = quantize(x)
        return matmul_q(q, scale, w, w_scale, threads)
    lead, n = x.shape[:-1], x.shape[-1]
    rows = np.ascontiguousarray(x.reshape(-1, n), dtype=np.float64)
    N, m = len(rows), w.shape[0]
    out = np.empty((N, m))
    threads = max(1, min(threads, N * n * m // THREAD_PRODUCTS))
    packed = w if isinstance(w, Packed) else Packed(w)  # the engine's are packed already
    KERNELS.linear_packed(rows, packed.panels, w_scale, out, N, n, m, threads)
    return out.reshape(*lead, m)


def rms_norm(x: Any, gain: Any, eps: float) -> Any:
    """x / sqrt(mean(x**2) + eps) * gain over the last axis, with an integer sum of squares.

    The compiled kernel does it in one call, in these operations and this order (a
    one-token step of Gemma makes over a hundred norms of a few rows)."""
    if KERNELS is not None and isinstance(x, np.ndarray):
        n = x.shape[-1]
        rows = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, n)
        out = np.empty(rows.shape)
        if not (isinstance(gain, np.ndarray) and gain.shape == (n,) and gain.dtype == np.float64):
            gain = np.broadcast_to(gain, (n,)).astype(np.float64)  # (the engine's already are)
        KERNELS.rms_norm(rows, np.ascontiguousarray(gain), out, *rows.shape, float(eps))
        return out.reshape(x.shape)
    xp = namespace(x)
    amax = xp.max(xp.abs(x), axis=-1, keepdims=True)
    unit = xp.where(amax > 0.0, amax, 1.0) / 2.0**20
    xi = xp.astype(rint(x / unit), xp.int64)  # |xi| <= 2**20
    sum_sq = xp.sum(xi * xi, axis=-1, keepdims=True)  # exact: < 2**40 * n
    mean_sq = divide(xp.astype(sum_sq, xp.float64), x.shape[-1]) * unit * unit
    return x / xp.sqrt(mean_sq + eps) * gain
