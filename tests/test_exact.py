"""The engine's arithmetic: accurate enough, and pinned to exact bits."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from inert import exact


def test_exp_is_accurate_over_the_range_the_engine_uses() -> None:
    x = np.linspace(-60, 30, 100_001)
    rel = np.abs(exact.exp(x) / np.exp(x) - 1)
    assert rel.max() < 1e-8


def test_exp_bits_are_pinned() -> None:
    # Golden bit patterns: a change here changes every model key.
    x = np.array([0.0, -1.0, -0.5, -10.25, 3.0, -700.0])
    got = [v.hex() for v in exact.exp(x)]
    assert got == [
        "0x1.0000000000000p+0",
        "0x1.78b563529dc88p-2",
        "0x1.368b2fc6c3673p-1",
        "0x1.2899a7a82f27ap-15",
        "0x1.415e5bf632f50p+4",
        "0x1.14f2b0fb93070p-1010",
    ]


def test_exp_saturates_cleanly() -> None:
    assert exact.exp(np.array([-np.inf, -5000.0]))[0] == 0.0
    assert exact.exp(np.array([5000.0]))[0] == np.inf


def test_activations_match_their_definitions() -> None:
    x = np.linspace(-8, 8, 1001)
    assert np.allclose(exact.silu(x), x / (1 + np.exp(-x)), rtol=1e-8, atol=1e-12)
    gelu = 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))
    assert np.allclose(exact.gelu_tanh(x), gelu, rtol=1e-8, atol=1e-12)


def test_quantize_is_16_bit_and_close() -> None:
    x = np.random.default_rng(0).normal(size=(7, 100))
    q, scale = exact.quantize(x)
    assert np.abs(q).max() == 32767 and np.all(q == np.rint(q))
    assert np.allclose(q * scale[:, None], x, atol=scale.max())


@pytest.fixture(params=["kernel", "numpy"])
def products(request, monkeypatch):
    """Each test of the products runs on the compiled kernel and on the numpy path."""
    if request.param == "numpy":
        monkeypatch.setattr(exact, "KERNELS", None)
    elif exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")
    return request.param


def test_integer_matmul_is_exact_where_float32_would_not_be(products) -> None:
    rng = np.random.default_rng(1)
    q = rng.integers(-32767, 32768, size=(3, 4096)).astype(np.float64)
    q[0] = 32767  # the extremes: every product at its largest
    w = rng.integers(-128, 128, size=(5, 4096)).astype(np.int8)
    w[0] = -128
    exact_ints = q.astype(np.int64) @ w.astype(np.int64).T
    got = exact.matmul_q(q, np.ones(3), w, np.ones(5))
    assert np.array_equal(got, exact_ints.astype(np.float64))
    naive = (q.astype(np.float32) @ w.T.astype(np.float32)).astype(np.float64)
    assert not np.array_equal(naive, exact_ints)  # plain float32 would be wrong here


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 7, 3), (5, 300, 9), (33, 640, 70), (1, 70000, 5)])
def test_integer_products_of_every_shape(products, shape) -> None:
    """Every shape (partial weight blocks, inner sizes across several chunks of 256 products,
    single rows) gives the exact integers, on any thread count."""
    N, n, m = shape
    rng = np.random.default_rng(n)
    a = rng.integers(-32767, 32768, size=(N, n)).astype(np.float64)
    a[0, : n // 2] = -32767  # long runs of the largest products: chunks at their bound
    w = rng.integers(-128, 128, size=(m, n)).astype(np.int8)
    w[0, : n // 2] = -128
    expected = (a.astype(np.int64) @ w.astype(np.int64).T).astype(np.float64)
    for threads in (1, 2, 3):
        assert np.array_equal(exact.int_matmul(a, w, threads), expected)


def test_products_take_int8_weights_only() -> None:
    with pytest.raises(TypeError):
        exact.int_matmul(np.ones((2, 3)), np.ones((4, 3)))


def test_rms_norm_matches_the_float_formula() -> None:
    x = np.random.default_rng(2).normal(size=(4, 64)) * 10
    gain = np.linspace(0.5, 1.5, 64)
    expected = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * gain
    assert np.allclose(exact.rms_norm(x, gain, 1e-5), expected, rtol=1e-5)


def test_the_kernel_is_built_where_a_compiler_is() -> None:
    """The extension is optional for pip; a machine with a C compiler must not silently
    lose it (the numpy path is several times slower)."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: the numpy path is the one in use")
    assert exact.KERNELS is not None, "a C compiler is here, yet inert._kernels was not built"


def test_the_fused_linear_is_quantize_then_matmul() -> None:
    """exact.linear (one kernel call) rounds exactly as quantize and matmul_q in numpy:
    random rows, a zero row, and rows whose quantization lands on ties (k + 1/2)."""
    if exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")
    rng = np.random.default_rng(7)
    x = rng.normal(0, 3, size=(40, 300))
    x[3] = 0.0
    x[4, :] = np.arange(300) + 0.5  # with the row's max 299.5: many exact halves after scaling
    x[5, :] = -x[4, :]
    w = rng.integers(-128, 128, size=(70, 300)).astype(np.int8)
    w_scale = rng.uniform(1e-4, 1e-2, size=70)
    q, scale = exact.quantize(x)
    expected = exact.matmul_q(q, scale, w, w_scale)
    saved, exact.KERNELS = exact.KERNELS, None
    try:
        numpy_path = exact.linear(x, w, w_scale)
    finally:
        exact.KERNELS = saved
    for threads in (1, 2):
        got = exact.linear(x.reshape(4, 10, 300), w, w_scale, threads).reshape(40, 70)
        assert np.array_equal(got, expected) and np.array_equal(numpy_path, expected)


def test_the_compiled_rms_norm_is_numpy_s(monkeypatch) -> None:
    """One kernel call rounds as exact.rms_norm's numpy operations do: rows of every scale,
    a zero row, head-sized rows under a per-head gain."""
    if exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, size=(2, 7, 3, 256)) * rng.choice([1e-6, 1.0, 1e4], size=(2, 7, 3, 1))
    x[0, 0, 0] = 0.0
    gain = rng.uniform(0.5, 1.5, size=256)
    compiled = exact.rms_norm(x, gain, 1e-6)
    monkeypatch.setattr(exact, "KERNELS", None)
    assert np.array_equal(compiled, exact.rms_norm(x, gain, 1e-6))


@pytest.mark.parametrize("path", [3, 2, 1, 0], ids=["vnni", "avx512", "avx2", "plain"])
def test_packed_products_are_exact_on_every_path(path: int) -> None:
    """The packed products (exact.Packed) give the exact integer product on each vector
    path the machine has: every row count of a block (1-9), odd and even widths, widths of
    several int32 chunks (> 512), panels cut short (m not a multiple of 16), the extremes;
    a packed matrix gives its rows and itself back."""
    if exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")
    taken = exact.KERNELS.set_path(path)
    if taken != path:
        exact.KERNELS.set_path(-1)
        pytest.skip(f"this machine has no path {path}")
    try:
        rng = np.random.default_rng(path)
        for N, n, m in [
            (1, 7, 5),
            (2, 1031, 33),
            (3, 64, 16),
            (4, 600, 40),
            (5, 128, 17),
            (7, 33, 48),
            (8, 2048, 20),
            (9, 1, 3),
            (21, 384, 130),
        ]:
            w = rng.integers(-128, 128, size=(m, n)).astype(np.int8)
            a = rng.integers(-32767, 32768, size=(N, n)).astype(np.float64)
            w[0], a[0] = -128, -32767  # every product at its largest
            packed = exact.Packed(w)
            assert np.array_equal(packed.plain(), w)
            index = rng.integers(0, m, size=(2, 3))
            assert np.array_equal(packed.rows(index), w[index])
            expected = (a.astype(np.int64) @ w.astype(np.int64).T).astype(np.float64)
            for threads in (1, 2):
                assert np.array_equal(exact.int_matmul(a, packed, threads), expected)
            scale = rng.uniform(1e-3, 1.0, size=m)
            assert np.array_equal(exact.linear(a, packed, scale), exact.linear(a, w, scale))
    finally:
        exact.KERNELS.set_path(-1)
