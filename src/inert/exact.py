"""Arithmetic whose every result bit is the same on every machine: the engine's building blocks.

The rules (DESIGN.md, "The portability contract"):

- Matrix products take integer-valued float64 operands whose partial sums stay below 2**53,
  so BLAS returns the exact integer result whatever order, blocking or thread count it uses.
- Reductions run only over integers (int64, or integer-valued float64 below 2**53), or are
  max/min, which do not depend on order.
- Everything else is elementwise IEEE-754 float64 arithmetic (+ - * / sqrt, floor, rint,
  ldexp), each correctly rounded, applied in the fixed order written here.
- No libm transcendental (exp, tanh, sin, ...): `exp` below is a fixed polynomial; rotary
  embeddings read cos/sin tables stored in the blob.
"""

from __future__ import annotations

import numpy as np

LOG2_E = 1.4426950408889634  # float64 nearest to 1/ln(2)
LN_2 = 0.6931471805599453  # float64 nearest to ln(2)
# Taylor coefficients of exp(t) for t = f*ln2 in [0, ln2): degree 10 keeps the relative
# error below 3e-10, far under what int16 activations resolve.
_EXP_COEFFS = tuple(
    1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(10, -1, -1)
)

ACT_MAX = 32767.0  # activations are quantized to signed 16 bits: the measured-free choice
PROB_ONE = 2.0**24  # attention weights before their 16-bit requantization


def exp(x: np.ndarray) -> np.ndarray:
    """e**x for float64 x, identical on every IEEE-754 machine (|rel err| < 3e-10)."""
    y = np.clip(x * LOG2_E, -1100.0, 1100.0)  # beyond: exactly 0 or inf after ldexp
    n = np.floor(y)
    t = (y - n) * LN_2  # (y - n) in [0, 1)
    p = np.full_like(t, _EXP_COEFFS[0])
    for c in _EXP_COEFFS[1:]:  # Horner, fixed order
        p = p * t + c
    with np.errstate(over="ignore", under="ignore"):  # saturating to inf or 0 is intended
        return np.ldexp(p, n.astype(np.int32))


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU with the tanh approximation (Gemma's GeGLU), tanh(u) = 1 - 2/(e**2u + 1)."""
    u = (x + 0.044715 * (x * x * x)) * 0.7978845608028654  # sqrt(2/pi)
    tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0)
    return 0.5 * x * (1.0 + tanh)


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric 16-bit quantization over the last axis.

    Returns (q, scale): q integer-valued float64 in [-32767, 32767], x ~= q * scale[..., None].
    """
    amax = np.max(np.abs(x), axis=-1)  # (...,) order-free reduction
    safe = np.where(amax > 0.0, amax, 1.0)
    q = np.rint(x / safe[..., None] * ACT_MAX)
    return q, amax / ACT_MAX


def matmul_q(q: np.ndarray, q_scale: np.ndarray, w: np.ndarray, w_scale: np.ndarray) -> np.ndarray:
    """(q * q_scale) @ (w * w_scale).T with an exact integer product.

    q: (..., n) int16-valued float64; w: (m, n) int8-valued float64; w_scale: (m,).
    |q*w| < 2**22, so partial sums stay exact for n < 2**31.
    """
    acc = q @ w.T  # (..., m) exact integers
    return (acc * q_scale[..., None]) * w_scale


def rms_norm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x**2) + eps) * gain over the last axis, with an integer sum of squares."""
    amax = np.max(np.abs(x), axis=-1, keepdims=True)
    unit = np.where(amax > 0.0, amax, 1.0) / 2.0**20
    xi = np.rint(x / unit).astype(np.int64)  # |xi| <= 2**20
    sum_sq = np.sum(xi * xi, axis=-1, keepdims=True)  # exact: < 2**40 * n
    mean_sq = (sum_sq.astype(np.float64) / x.shape[-1]) * unit * unit
    return x / np.sqrt(mean_sq + eps) * gain
