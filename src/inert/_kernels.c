/* The engine's exact arithmetic, compiled: int16 activations x int8 weights, attention,
 * norms, the softmax to frequency tables, the history of the work's repeats.
 *
 * out[i, j] = sum_k a[i, k] * w[j, k], exactly, written as float64 (|sum| < 2**53).
 * Integer sums have one value whatever the order, the vector width or the thread count,
 * so this returns bit for bit what the numpy path (exact.py: float64 BLAS on integer-valued
 * operands) returns, only from the int8 weights themselves: no float64 copy of the model.
 *
 * Built by pip as inert._kernels when a C compiler is present (optional: exact.py falls
 * back to numpy). Compiled without fast-math and without contraction (-ffp-contract=off):
 * the few floating-point steps (quantization, scales) are single IEEE operations in
 * exactly numpy's order, so they round as numpy does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* one build, the widest vector unit of the machine it runs on (chosen once at load) */
#define WIDEST __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
/* (x86-64-v2 and later also round in one instruction: rint is a libm call below them) */
#else
#define WIDEST
#endif

/* ---------------------------------------------------------------- packed products
 * The same exact products from weights packed for the vector unit (exact.Packed): panels
 * of PANEL = 16 weight rows; in a panel, pair p of the input (columns 2p, 2p+1) holds the
 * 16 rows' two weights side by side, 32 int8 in all. One instruction then multiplies a
 * pair of activations, broadcast, by the pair of every row of the panel and adds the two
 * products into each row's int32 sum (pmaddwd; vpdpwssd fuses the add): no horizontal
 * sums. A pair is at most 2 * 32767 * 128 < 2**23 and PAIRS = 256 pairs sum below 2**31,
 * so int32 holds them exactly; the chunks are then added in float64 (exact below 2**53).
 * Every path (AVX-512 VNNI, AVX-512, AVX2, plain C) adds the same integers: one result. */
#define PANEL 16
#define PAIRS 256
#define BLOCK_ROWS 8 /* activation rows per pass over a panel: 8 independent sums */

static Py_ssize_t panels_of(Py_ssize_t m) { return (m + PANEL - 1) / PANEL; }
static Py_ssize_t pairs_of(Py_ssize_t n) { return (n + 1) / 2; }

static void pack_panels(const int8_t *w, int8_t *out, Py_ssize_t m, Py_ssize_t n)
{
    Py_ssize_t n2 = pairs_of(n);
    memset(out, 0, (size_t)(panels_of(m) * n2 * 2 * PANEL));
    for (Py_ssize_t j = 0; j < m; j++)
        for (Py_ssize_t k = 0; k < n; k++)
            out[((j / PANEL) * n2 + k / 2) * 2 * PANEL + (j % PANEL) * 2 + (k & 1)] = w[j * n + k];
}

/* One panel times `rows` activation rows (pairs as int32: a[r][p] = the r-th row's pair p):
 * sums[r][l] for the panel's 16 rows l, added to (first chunk: written into) out. */
static void panel_plain(const int32_t *const *a, int rows, const int8_t *wp, Py_ssize_t n2,
                        double *const *out, Py_ssize_t cols)
{
    for (int r = 0; r < rows; r++) {
        const int16_t *x = (const int16_t *)a[r];
        double sums[PANEL] = {0};
        for (Py_ssize_t p0 = 0; p0 < n2; p0 += PAIRS) {
            Py_ssize_t p1 = p0 + PAIRS < n2 ? p0 + PAIRS : n2;
            int32_t acc[PANEL] = {0};
            for (Py_ssize_t p = p0; p < p1; p++)
                for (int l = 0; l < PANEL; l++)
                    acc[l] += x[2 * p] * wp[p * 32 + 2 * l] + x[2 * p + 1] * wp[p * 32 + 2 * l + 1];
            for (int l = 0; l < PANEL; l++)
                sums[l] += (double)acc[l];
        }
        for (Py_ssize_t l = 0; l < cols; l++)
            out[r][l] = sums[l];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* R rows at a time, each with S sums over alternate pairs (R * S = 8 chains in flight,
 * so that the multiply-add's latency is hidden even for one row) */
#define AVX512_PANEL(NAME, TARGET, MAC)                                                        \
    __attribute__((target(TARGET), always_inline)) static inline void NAME##_rs(                              \
        const int32_t *const *a, int R, int S, const int8_t *wp, Py_ssize_t n2,                \
        double *const *out, Py_ssize_t cols)                                                   \
    {                                                                                          \
        __m512d lo[BLOCK_ROWS], hi[BLOCK_ROWS];                                                \
        for (int r = 0; r < R; r++)                                                            \
            lo[r] = hi[r] = _mm512_setzero_pd();                                               \
        for (Py_ssize_t p0 = 0; p0 < n2; p0 += PAIRS) {                                        \
            Py_ssize_t p1 = p0 + PAIRS < n2 ? p0 + PAIRS : n2;                                 \
            __m512i acc[BLOCK_ROWS];                                                           \
            for (int i = 0; i < BLOCK_ROWS; i++)                                               \
                acc[i] = _mm512_setzero_si512();                                               \
            Py_ssize_t p = p0;                                                                 \
            for (; p + S <= p1; p += S)                                                        \
                for (int s = 0; s < S; s++) {                                                  \
                    __m512i w = _mm512_cvtepi8_epi16(                                          \
                        _mm256_loadu_si256((const __m256i *)(wp + (p + s) * 32)));             \
                    for (int r = 0; r < R; r++)                                                \
                        acc[r * S + s] = MAC(acc[r * S + s], w, _mm512_set1_epi32(a[r][p + s])); \
                }                                                                              \
            for (; p < p1; p++) {                                                              \
                __m512i w =                                                                    \
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(wp + p * 32)));   \
                for (int r = 0; r < R; r++)                                                    \
                    acc[r * S] = MAC(acc[r * S], w, _mm512_set1_epi32(a[r][p]));               \
            }                                                                                  \
            for (int r = 0; r < R; r++) {                                                      \
                __m512i sum = acc[r * S];                                                      \
                for (int s = 1; s < S; s++) /* < 2**31 together: one chunk's pairs */          \
                    sum = _mm512_add_epi32(sum, acc[r * S + s]);                               \
                lo[r] = _mm512_add_pd(lo[r], _mm512_cvtepi32_pd(_mm512_castsi512_si256(sum))); \
                hi[r] = _mm512_add_pd(hi[r],                                                   \
                                      _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(sum, 1)));  \
            }                                                                                  \
        }                                                                                      \
        __mmask8 first = cols >= 8 ? 0xFF : (__mmask8)((1u << cols) - 1);                     \
        __mmask8 second = cols >= 16 ? 0xFF : (__mmask8)((1u << (cols > 8 ? cols - 8 : 0)) - 1); \
        for (int r = 0; r < R; r++) {                                                          \
            _mm512_mask_storeu_pd(out[r], first, lo[r]);                                       \
            _mm512_mask_storeu_pd(out[r] + 8, second, hi[r]);                                  \
        }                                                                                      \
    }                                                                                          \
    __attribute__((target(TARGET))) static void NAME(const int32_t *const *a, int rows,        \
                                                     const int8_t *wp, Py_ssize_t n2,          \
                                                     double *const *out, Py_ssize_t cols)      \
    {                                                                                          \
        switch (rows) { /* constant R and S: the loops unroll, the sums stay in registers */  \
        case 8: NAME##_rs(a, 8, 1, wp, n2, out, cols); break;                                  \
        case 7: NAME##_rs(a, 7, 1, wp, n2, out, cols); break;                                  \
        case 6: NAME##_rs(a, 6, 1, wp, n2, out, cols); break;                                  \
        case 5: NAME##_rs(a, 5, 1, wp, n2, out, cols); break;                                  \
        case 4: NAME##_rs(a, 4, 2, wp, n2, out, cols); break;                                  \
        case 3: NAME##_rs(a, 3, 2, wp, n2, out, cols); break;                                  \
        case 2: NAME##_rs(a, 2, 4, wp, n2, out, cols); break;                                  \
        default: NAME##_rs(a, 1, 8, wp, n2, out, cols); break;                                 \
        }                                                                                      \
    }

#define MADD_ADD(acc, w, x) _mm512_add_epi32(acc, _mm512_madd_epi16(w, x))
AVX512_PANEL(panel_avx512, "avx512f,avx512bw", MADD_ADD)
AVX512_PANEL(panel_vnni, "avx512f,avx512bw,avx512vnni", _mm512_dpwssd_epi32)

/* AVX2: a panel as two halves of 8 rows, 16 int8 (8 pairs) each */
__attribute__((target("avx2"))) static void panel_avx2(const int32_t *const *a, int rows,
                                                       const int8_t *wp, Py_ssize_t n2,
                                                       double *const *out, Py_ssize_t cols)
{
    for (int r = 0; r < rows; r++) {
        __m256d d[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                        _mm256_setzero_pd()};
        for (Py_ssize_t p0 = 0; p0 < n2; p0 += PAIRS) {
            Py_ssize_t p1 = p0 + PAIRS < n2 ? p0 + PAIRS : n2;
            __m256i lo = _mm256_setzero_si256(), hi = lo;
            for (Py_ssize_t p = p0; p < p1; p++) {
                __m256i x = _mm256_set1_epi32(a[r][p]);
                __m128i w0 = _mm_loadu_si128((const __m128i *)(wp + p * 32));
                __m128i w1 = _mm_loadu_si128((const __m128i *)(wp + p * 32 + 16));
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_cvtepi8_epi16(w0), x));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_cvtepi8_epi16(w1), x));
            }
            d[0] = _mm256_add_pd(d[0], _mm256_cvtepi32_pd(_mm256_castsi256_si128(lo)));
            d[1] = _mm256_add_pd(d[1], _mm256_cvtepi32_pd(_mm256_extracti128_si256(lo, 1)));
            d[2] = _mm256_add_pd(d[2], _mm256_cvtepi32_pd(_mm256_castsi256_si128(hi)));
            d[3] = _mm256_add_pd(d[3], _mm256_cvtepi32_pd(_mm256_extracti128_si256(hi, 1)));
        }
        double sums[PANEL];
        for (int q = 0; q < 4; q++)
            _mm256_storeu_pd(sums + 4 * q, d[q]);
        for (Py_ssize_t l = 0; l < cols; l++)
            out[r][l] = sums[l];
    }
}
#endif

typedef void (*PanelKernel)(const int32_t *const *, int, const int8_t *, Py_ssize_t,
                            double *const *, Py_ssize_t);

/* the widest path this machine has, unless a test asks for a narrower one (set_path) */
static int forced_path = -1; /* 0 plain, 1 AVX2, 2 AVX-512, 3 AVX-512 VNNI */
static int best_path(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"))
        return 3;
    if (__builtin_cpu_supports("avx512bw"))
        return 2;
    if (__builtin_cpu_supports("avx2"))
        return 1;
#endif
    return 0;
}

static PanelKernel panel_kernel(void)
{
    int path = forced_path >= 0 ? forced_path : best_path();
#if defined(__x86_64__) && defined(__GNUC__)
    if (path >= 3)
        return panel_vnni;
    if (path == 2)
        return panel_avx512;
    if (path == 1)
        return panel_avx2;
#endif
    return panel_plain;
}

/* out (N, m) = a (N, n) . w^T from w's panels, the panels split among `threads` threads */
static int matmul_packed(const int16_t *a, const int8_t *packed, double *out, Py_ssize_t N,
                         Py_ssize_t n, Py_ssize_t m, int threads)
{
    Py_ssize_t n2 = pairs_of(n), panels = panels_of(m);
    int32_t *pairs = NULL; /* a's rows as int32 pairs (a copy, padded, when n is odd) */
    const int32_t *rows = (const int32_t *)a;
    if (n % 2 || ((uintptr_t)a % 4)) {
        if (!(pairs = calloc((size_t)(N * n2 + 1), sizeof(int32_t))))
            return -1;
        for (Py_ssize_t i = 0; i < N; i++)
            memcpy((int16_t *)(pairs + i * n2), a + i * n, (size_t)n * sizeof(int16_t));
        rows = pairs;
    }
    PanelKernel kernel = panel_kernel();
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (Py_ssize_t P = 0; P < panels; P++) {
        Py_ssize_t cols = m - P * PANEL < PANEL ? m - P * PANEL : PANEL;
        for (Py_ssize_t i = 0; i < N; i += BLOCK_ROWS) {
            int block = N - i < BLOCK_ROWS ? (int)(N - i) : BLOCK_ROWS;
            const int32_t *a_rows[BLOCK_ROWS];
            double *o_rows[BLOCK_ROWS];
            for (int r = 0; r < block; r++) {
                a_rows[r] = rows + (i + r) * n2;
                o_rows[r] = out + (i + r) * m + P * PANEL;
            }
            kernel(a_rows, block, packed + P * n2 * 2 * PANEL, n2, o_rows, cols);
        }
    }
    free(pairs);
    return 0;
}

/* Per-row symmetric 16-bit quantization, exactly exact.quantize's numpy arithmetic:
 * amax = max |x| of the row, q = rint((x / (amax or 1)) * 32767), scale = amax / 32767. */
#define ACT_MAX 32767.0
WIDEST static void quantize16(const double *x, int16_t *q, double *scale, Py_ssize_t N, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < N; i++) {
        const double *row = x + i * n;
        double amax = 0.0;
        for (Py_ssize_t k = 0; k < n; k++) {
            double v = fabs(row[k]);
            amax = v > amax ? v : amax; /* NaN never arises: inputs are finite */
        }
        double safe = amax > 0.0 ? amax : 1.0;
        for (Py_ssize_t k = 0; k < n; k++)
            q[i * n + k] = (int16_t)rint((row[k] / safe) * ACT_MAX); /* rint: ties to even, as np.rint */
        scale[i] = amax / ACT_MAX;
    }
}

/* y[i, j] = (y[i, j] * qs[i]) * ws[j]: a product's two scales, in matmul_q's order */
WIDEST static void scale_products(double *y, const double *qs, const double *ws, Py_ssize_t N,
                                  Py_ssize_t m)
{
    for (Py_ssize_t i = 0; i < N; i++)
        for (Py_ssize_t j = 0; j < m; j++)
            y[i * m + j] = (y[i * m + j] * qs[i]) * ws[j];
}

/* ---------------------------------------------------------------- frequencies
 * Logits -> the integer frequency table of one row, exactly engine.py's numpy arithmetic
 * (codec 1: the exp polynomial of exact.py; codecs 2 and 3: the mass table, rows summing to
 * 2**24 and 2**31), element by element in
 * the same IEEE operations. Sums are of integers (exact in any order); the argmax is the
 * first maximum, as numpy's.
 */
#define LOG2_E 1.4426950408889634
#define LN_2 0.6931471805599453
#define FREQ_TOTAL(codec) ((codec) == 3 ? 1LL << 31 : 1LL << 24)
#define EXP_ONE 1073741824.0 /* 2**30 */
#define MASS_STEPS 1024.0

static const double EXP_COEFFS[8] = {
    1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1.0 / 2, 1.0, 1.0,
}; /* 1/k! for k = 7 .. 0: the same float64 values as exact.py's 1.0 / math.factorial(k) */

/* exact.exp, one element at a time: the same polynomial, clip and rint, then p * 2**n for
 * ldexp(p, n), as exact._exp_xp does, so that it vectorises. Equal to it wherever 2**n is
 * normal; below, both are under 2**-1021, and every use here adds them to 1 or rounds them
 * times 2**30 at most, where they vanish alike; above, both are inf. */
static inline double exact_exp(double x)
{
    double y = x * LOG2_E;
    y = y < -1100.0 ? -1100.0 : (y > 1100.0 ? 1100.0 : y);
    double n = rint(y);
    double t = (y - n) * LN_2;
    double p = t * EXP_COEFFS[0];
    p += EXP_COEFFS[1];
    for (int c = 2; c < 8; c++) {
        p *= t;
        p += EXP_COEFFS[c];
    }
    int64_t e = (int64_t)(n < -1022.0 ? -1022.0 : (n > 1023.0 ? 1023.0 : n)) + 1023;
    union { int64_t i; double d; } pow2 = {.i = e << 52};
    return n > 1023.0 ? INFINITY : p * pow2.d;
}

/* rint(exp(d) * 2**30) for each d = logit - top <= 0 (codec 1's masses) */
WIDEST static void masses(const double *logits, Py_ssize_t V, double top, int64_t *mass)
{
    for (Py_ssize_t v = 0; v < V; v++)
        mass[v] = (int64_t)rint(exact_exp(logits[v] - top) * EXP_ONE);
}

/* freq[v] = mass[v] * K // total + 1 for K < 2**24, total >= 2**30; returns the sum. The
 * integer division, one per entry, was most of the row's time: a float64 quotient is
 * within 2**-28 of the true one, so its truncation is off by at most one, which the exact
 * integer remainder corrects. */
WIDEST static int64_t shares(const int64_t *mass, Py_ssize_t V, int64_t K, int64_t total,
                             int64_t *freq)
{
    double ratio = (double)K / (double)total;
    int64_t sum = 0;
    for (Py_ssize_t v = 0; v < V; v++) {
        int64_t a = mass[v] * K; /* < 2**54 */
        int64_t q = (int64_t)((double)mass[v] * ratio);
        int64_t r = a - q * total;
        q -= r < 0;
        q += r >= total;
        freq[v] = q + 1;
        sum += q + 1;
    }
    return sum;
}

WIDEST static void row_frequencies(const double *logits, Py_ssize_t V, int codec,
                            const int64_t *table, Py_ssize_t table_len, int64_t *freq)
{
    double top = logits[0];
    for (Py_ssize_t v = 1; v < V; v++)
        top = logits[v] > top ? logits[v] : top;
    int64_t *mass = freq; /* computed in place: each freq[v] depends on mass[v] only */
    if (codec == 1)
        masses(logits, V, top, mass);
    else
        for (Py_ssize_t v = 0; v < V; v++) {
            double step = rint((top - logits[v]) * MASS_STEPS);
            step = step < (double)(table_len - 1) ? step : (double)(table_len - 1);
            mass[v] = table[(Py_ssize_t)step];
        }
    int64_t total = 0, best = -1;
    Py_ssize_t top_token = 0;
    for (Py_ssize_t v = 0; v < V; v++) {
        total += mass[v];
        if (mass[v] > best)
            best = mass[v], top_token = v;
    }
    int64_t sum = 0;
    if (codec == 1)
        sum = shares(mass, V, FREQ_TOTAL(1) - V, total, freq);
    else {
        double share = (double)(FREQ_TOTAL(codec) - V) / (double)total;
        for (Py_ssize_t v = 0; v < V; v++) {
            freq[v] = (int64_t)((double)mass[v] * share) + 1; /* >= 0: truncation is floor */
            sum += freq[v];
        }
    }
    freq[top_token] += FREQ_TOTAL(codec) - sum;
}

static PyObject *py_row_frequencies(PyObject *self, PyObject *args)
{
    Py_buffer logits, table, out;
    Py_ssize_t R, V;
    int codec;
    if (!PyArg_ParseTuple(args, "y*y*w*nni", &logits, &table, &out, &R, &V, &codec))
        return NULL;
    PyObject *result = NULL;
    if (R < 0 || V < 1 || (codec < 1 || codec > 3) || table.len < 8)
        PyErr_SetString(PyExc_ValueError, "no rows, no vocabulary, or an unknown codec");
    else if (logits.len != R * V * 8 || out.len != R * V * 8)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match (R, V)");
    else {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < R; r++)
            row_frequencies((const double *)logits.buf + r * V, V, codec, table.buf,
                            table.len / 8, (int64_t *)out.buf + r * V);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&logits);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return result;
}

/* Logits of quantized final states, then their frequencies (engine.tables): row r of the
 * exact products acc (R, V) becomes (acc * q_scale[r]) * w_scale, soft-capped as
 * engine.logits does (cap * exact.tanh(logits / cap)), then row_frequencies, or their
 * running sums (what a decoder searches); rows spread over `threads` threads. acc is
 * overwritten. */
WIDEST static void scale_logits(double *row, double qs, const double *ws, Py_ssize_t V,
                                double cap)
{
    for (Py_ssize_t v = 0; v < V; v++)
        row[v] = (row[v] * qs) * ws[v];
    if (cap > 0.0)
        for (Py_ssize_t v = 0; v < V; v++)
            row[v] = cap * (1.0 - 2.0 / (exact_exp(2.0 * (row[v] / cap)) + 1.0));
}

static PyObject *py_frequencies_q(PyObject *self, PyObject *args)
{
    Py_buffer acc, q_scale, w_scale, table, out;
    Py_ssize_t R, V;
    int codec, threads, running;
    double cap;
    if (!PyArg_ParseTuple(args, "w*y*y*y*w*nnidip", &acc, &q_scale, &w_scale, &table, &out, &R,
                          &V, &codec, &cap, &threads, &running))
        return NULL;
    PyObject *result = NULL;
    if (R < 0 || V < 1 || (codec < 1 || codec > 3) || table.len < 8 || threads < 1)
        PyErr_SetString(PyExc_ValueError, "no rows, no vocabulary, an unknown codec or no thread");
    else if (acc.len != R * V * 8 || out.len != R * V * 8 || q_scale.len != R * 8 ||
             w_scale.len != V * 8)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match (R, V)");
    else {
        double *rows = acc.buf;
        const double *qs = q_scale.buf, *ws = w_scale.buf;
        Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (Py_ssize_t r = 0; r < R; r++) {
            scale_logits(rows + r * V, qs[r], ws, V, cap);
            int64_t *freq = (int64_t *)out.buf + r * V;
            row_frequencies(rows + r * V, V, codec, table.buf, table.len / 8, freq);
            for (Py_ssize_t v = 1; running && v < V; v++)
                freq[v] += freq[v - 1];
        }
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&acc);
    PyBuffer_Release(&q_scale);
    PyBuffer_Release(&w_scale);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return result;
}

/* ---------------------------------------------------------------- calibration
 * Codec 6's calibrated tables (calibration.py): per row, g = 1 + trunc(f * w) and S = Σ g
 * (exact integers), then f' = 1 + trunc(g * ((total - V) / S)) and the remainder to the first
 * largest f'; or (running) the inclusive running sums of f'. Each float64 operation is one
 * IEEE rounding (-ffp-contract=off: no fused multiply-add), as numpy's. */
WIDEST static void calibrate_row(const int64_t *f, const double *w, Py_ssize_t V, int64_t total,
                                 int64_t *out, int running)
{
    int64_t sum_g = 0;
    for (Py_ssize_t v = 0; v < V; v++) {
        out[v] = 1 + (int64_t)((double)f[v] * w[v]);
        sum_g += out[v];
    }
    double share = (double)(total - V) / (double)sum_g;
    int64_t sum = 0, best = -1;
    Py_ssize_t top = 0;
    for (Py_ssize_t v = 0; v < V; v++) {
        out[v] = 1 + (int64_t)((double)out[v] * share);
        sum += out[v];
        if (out[v] > best)
            best = out[v], top = v;
    }
    out[top] += total - sum;
    for (Py_ssize_t v = 1; running && v < V; v++)
        out[v] += out[v - 1];
}

static PyObject *py_calibrate(PyObject *self, PyObject *args)
{
    Py_buffer freq, w, out;
    Py_ssize_t R, V;
    long long total;
    int threads, running;
    if (!PyArg_ParseTuple(args, "y*y*w*nnLip", &freq, &w, &out, &R, &V, &total, &threads,
                          &running))
        return NULL;
    PyObject *result = NULL;
    if (R < 0 || V < 1 || threads < 1 || total <= V)
        PyErr_SetString(PyExc_ValueError, "no rows, no vocabulary, no thread or a small total");
    else if (freq.len != R * V * 8 || out.len != R * V * 8 || w.len != V * 8)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match (R, V)");
    else {
        const int64_t *f = freq.buf;
        int64_t *o = out.buf;
        Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (Py_ssize_t r = 0; r < R; r++)
            calibrate_row(f + r * V, w.buf, V, total, o + r * V, running);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&freq);
    PyBuffer_Release(&w);
    PyBuffer_Release(&out);
    return result;
}

/* The interval (start, size) of symbol x in the calibrated table of f (the table itself not
 * made): the same two passes, the start summed on the way, the remainder added where the
 * first largest entry lies. */
WIDEST static void calibrated_interval(const int64_t *f, const double *w, Py_ssize_t V,
                                       int64_t total, int64_t x, int64_t *start, int64_t *size)
{
    int64_t sum_g = 0;
    for (Py_ssize_t v = 0; v < V; v++)
        sum_g += 1 + (int64_t)((double)f[v] * w[v]);
    double share = (double)(total - V) / (double)sum_g;
    int64_t sum = 0, best = -1, below = 0, at = 0;
    Py_ssize_t top = 0;
    for (Py_ssize_t v = 0; v < V; v++) {
        int64_t g = 1 + (int64_t)((double)f[v] * w[v]);
        int64_t entry = 1 + (int64_t)((double)g * share);
        sum += entry;
        if (v < x)
            below += entry;
        else if (v == x)
            at = entry;
        if (entry > best)
            best = entry, top = v;
    }
    int64_t rest = total - sum;
    *start = below + (top < x ? rest : 0);
    *size = at + (top == x ? rest : 0);
}

static PyObject *py_calibrated_intervals(PyObject *self, PyObject *args)
{
    Py_buffer freq, w, symbols, starts, sizes;
    Py_ssize_t R, V;
    long long total;
    int threads;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*nnLi", &freq, &w, &symbols, &starts, &sizes, &R, &V,
                          &total, &threads))
        return NULL;
    PyObject *result = NULL;
    const int64_t *x = symbols.buf;
    int bad = 0;
    for (Py_ssize_t r = 0; symbols.len == R * 8 && r < R; r++)
        bad |= x[r] < 0 || x[r] >= V;
    if (R < 0 || V < 1 || threads < 1 || total <= V || bad)
        PyErr_SetString(PyExc_ValueError, "no rows, no vocabulary, no thread, a small total "
                                          "or a symbol outside the vocabulary");
    else if (freq.len != R * V * 8 || w.len != V * 8 || symbols.len != R * 8 ||
             starts.len != R * 8 || sizes.len != R * 8)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match (R, V)");
    else {
        const int64_t *f = freq.buf;
        int64_t *lo = starts.buf, *n = sizes.buf;
        Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (Py_ssize_t r = 0; r < R; r++)
            calibrated_interval(f + r * V, w.buf, V, total, x[r], lo + r, n + r);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&freq);
    PyBuffer_Release(&w);
    PyBuffer_Release(&symbols);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&sizes);
    return result;
}

/* ---------------------------------------------------------------- decoding a symbol
 * history.mixed_cumulative's running sum of one row of the coded table (codecs 4 and 5),
 * searched for the symbol whose interval holds `target` without making the row: at x,
 * C'(x + 1) = ((C(x + 1) - (x + 1)) * keep >> 16) + (x + 1) + S(x + 1), C the model's
 * inclusive running sum, S(x + 1) the history's amounts of tokens <= x (tokens ascending).
 * C' ascends (every entry keeps at least 1), so a binary search finds the first x with
 * C'(x + 1) > target. */
static int64_t mixed_at(const int64_t *cum, int64_t keep, const int64_t *tokens,
                        const int64_t *below, Py_ssize_t E, Py_ssize_t x)
{
    Py_ssize_t lo = 0, hi = E; /* entries with token <= x: the first lo of them */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (tokens[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    int64_t upto = (int64_t)x + 1;
    return (((cum[x] - upto) * keep) >> 16) + upto + below[lo];
}

static PyObject *py_mixed_find(PyObject *self, PyObject *args)
{
    Py_buffer cum, tokens, amounts;
    long long keep, target;
    if (!PyArg_ParseTuple(args, "y*Ly*y*L", &cum, &keep, &tokens, &amounts, &target))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t V = cum.len / 8, E = tokens.len / 8;
    int64_t *below = NULL;
    if (V < 1 || amounts.len != tokens.len || keep < 0 || keep > 65536)
        PyErr_SetString(PyExc_ValueError, "an empty row, entries that do not match, or a bad keep");
    else if (!(below = malloc(sizeof(int64_t) * (size_t)(E + 1))))
        PyErr_NoMemory();
    else {
        const int64_t *c = cum.buf, *t = tokens.buf, *a = amounts.buf;
        below[0] = 0;
        for (Py_ssize_t e = 0; e < E; e++)
            below[e + 1] = below[e] + a[e];
        Py_ssize_t lo = 0, hi = V - 1; /* the symbol: C'(lo + 1) > target, C'(lo) <= it */
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) / 2;
            if (mixed_at(c, keep, t, below, E, mid) > target)
                hi = mid;
            else
                lo = mid + 1;
        }
        int64_t start = lo ? mixed_at(c, keep, t, below, E, lo - 1) : 0;
        int64_t end = mixed_at(c, keep, t, below, E, lo);
        result = Py_BuildValue("nLL", lo, (long long)start, (long long)(end - start));
    }
    free(below);
    PyBuffer_Release(&cum);
    PyBuffer_Release(&tokens);
    PyBuffer_Release(&amounts);
    return result;
}

/* ---------------------------------------------------------------- the work's history
 * history.History's tables in C (history.py says what they hold and how they learn): per
 * order, context (its last `order` tokens) -> [seen, top count] and its followers with their
 * counts, in the order they first came. Contexts are kept in insertion order, found through
 * an open-addressing hash table of their tokens; an order that holds contexts_max of them
 * and meets a new one starts afresh, as the Python tables do. */
typedef struct {
    int order;
    Py_ssize_t count, capacity; /* contexts held; entries allocated */
    int32_t *keys;              /* (capacity, order) tokens */
    int32_t *seen, *top;        /* (capacity,) */
    int32_t *nfollowers;        /* (capacity,) */
    int32_t *followers;         /* (capacity, FOLLOWERS, 2): token, count */
    Py_ssize_t slots;           /* hash slots: a power of two, at least twice count */
    int64_t *slot;              /* entry + 1, or 0 for an empty slot */
} OrderTable;

typedef struct {
    int orders, followers_max;
    Py_ssize_t contexts_max;
    OrderTable *table;
} HistoryTables;

#define FIRST_SLOTS 1024

static uint64_t key_hash(const int64_t *tokens, int order)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < order; i++) {
        h ^= (uint64_t)tokens[i];
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    return h;
}

static void order_free(OrderTable *t)
{
    free(t->keys), free(t->seen), free(t->top), free(t->nfollowers), free(t->followers);
    free(t->slot);
    int order = t->order;
    memset(t, 0, sizeof *t);
    t->order = order;
}

/* the entry of the context `tokens`, or -1 (and where it would go, in *empty) */
static Py_ssize_t order_find(const OrderTable *t, const int64_t *tokens, Py_ssize_t *empty)
{
    if (!t->slots) {
        *empty = -1;
        return -1;
    }
    Py_ssize_t mask = t->slots - 1, i = (Py_ssize_t)(key_hash(tokens, t->order) & (uint64_t)mask);
    for (;; i = (i + 1) & mask) {
        int64_t e = t->slot[i] - 1;
        if (e < 0) {
            *empty = i;
            return -1;
        }
        const int32_t *key = t->keys + e * t->order;
        int same = 1;
        for (int k = 0; k < t->order && same; k++)
            same = key[k] == (int32_t)tokens[k];
        if (same)
            return e;
    }
}

static int order_grow(OrderTable *t, int followers_max)
{
    if (t->count == t->capacity) { /* entries */
        Py_ssize_t cap = t->capacity ? 2 * t->capacity : FIRST_SLOTS / 2;
        int32_t *keys = realloc(t->keys, sizeof(int32_t) * (size_t)(cap * t->order));
        if (keys)
            t->keys = keys;
        int32_t *seen = realloc(t->seen, sizeof(int32_t) * (size_t)cap);
        if (seen)
            t->seen = seen;
        int32_t *top = realloc(t->top, sizeof(int32_t) * (size_t)cap);
        if (top)
            t->top = top;
        int32_t *nf = realloc(t->nfollowers, sizeof(int32_t) * (size_t)cap);
        if (nf)
            t->nfollowers = nf;
        int32_t *f = realloc(t->followers, sizeof(int32_t) * (size_t)(cap * followers_max * 2));
        if (f)
            t->followers = f;
        if (!keys || !seen || !top || !nf || !f)
            return -1;
        t->capacity = cap;
    }
    if (2 * (t->count + 1) > t->slots) { /* slots: rehash into twice as many */
        Py_ssize_t slots = t->slots ? 2 * t->slots : FIRST_SLOTS;
        int64_t *slot = calloc((size_t)slots, sizeof(int64_t));
        if (!slot)
            return -1;
        for (Py_ssize_t e = 0; e < t->count; e++) {
            int64_t tokens[64];
            for (int k = 0; k < t->order; k++)
                tokens[k] = t->keys[e * t->order + k];
            Py_ssize_t i = (Py_ssize_t)(key_hash(tokens, t->order) & (uint64_t)(slots - 1));
            while (slot[i])
                i = (i + 1) & (slots - 1);
            slot[i] = e + 1;
        }
        free(t->slot);
        t->slot = slot;
        t->slots = slots;
    }
    return 0;
}

static void history_destroy(PyObject *capsule)
{
    HistoryTables *h = PyCapsule_GetPointer(capsule, "inert.history");
    if (!h)
        return;
    for (int o = 0; o < h->orders; o++)
        order_free(&h->table[o]);
    free(h->table);
    free(h);
}

static PyObject *py_history_new(PyObject *self, PyObject *args)
{
    Py_buffer orders;
    Py_ssize_t contexts_max;
    int followers_max;
    if (!PyArg_ParseTuple(args, "y*ni", &orders, &contexts_max, &followers_max))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = orders.len / 8;
    const int64_t *o = orders.buf;
    int bad = n < 1 || contexts_max < 1 || followers_max < 1;
    for (Py_ssize_t i = 0; i < n && !bad; i++)
        bad = o[i] < 1 || o[i] > 64;
    HistoryTables *h = NULL;
    if (bad)
        PyErr_SetString(PyExc_ValueError, "orders of 1 to 64 tokens, and positive bounds");
    else if (!(h = calloc(1, sizeof *h)) || !(h->table = calloc((size_t)n, sizeof(OrderTable)))) {
        free(h);
        PyErr_NoMemory();
    } else {
        h->orders = (int)n, h->contexts_max = contexts_max, h->followers_max = followers_max;
        for (Py_ssize_t i = 0; i < n; i++)
            h->table[i].order = (int)o[i];
        result = PyCapsule_New(h, "inert.history", history_destroy);
        if (!result)
            free(h->table), free(h);
    }
    PyBuffer_Release(&orders);
    return result;
}

/* Growable output arrays of predict */
typedef struct {
    char *data;
    Py_ssize_t len, cap, item;
} Out;

static int out_push(Out *o, const void *x)
{
    if (o->len == o->cap) {
        Py_ssize_t cap = o->cap ? 2 * o->cap : 256;
        char *d = realloc(o->data, (size_t)(cap * o->item));
        if (!d)
            return -1;
        o->data = d, o->cap = cap;
    }
    memcpy(o->data + o->len * o->item, x, (size_t)o->item);
    o->len++;
    return 0;
}

/* history_predict(h, before (R, n) int64) -> (rows, seen, top, owner, tokens, counts, hits,
 * entries): each order's predictions for the R rows (history.Predictions, orders one after
 * the other; hits and entries: how many rows and entries each order has), from the last
 * `order` of each row's n tokens (rows of fewer than `order` tokens have no context). */
static PyObject *py_history_predict(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    Py_buffer before;
    Py_ssize_t R, n;
    if (!PyArg_ParseTuple(args, "Oy*nn", &capsule, &before, &R, &n))
        return NULL;
    HistoryTables *h = PyCapsule_GetPointer(capsule, "inert.history");
    PyObject *result = NULL;
    Out out[6] = {{0, 0, 0, 8}, {0, 0, 0, 8}, {0, 0, 0, 8}, {0, 0, 0, 4}, {0, 0, 0, 4}, {0, 0, 0, 8}};
    Out hits = {0, 0, 0, 8}, entries = {0, 0, 0, 8};
    int failed = 0;
    if (!h)
        failed = 1;
    else if (R < 0 || n < 0 || before.len != R * n * 8) {
        PyErr_SetString(PyExc_ValueError, "before is not (R, n) int64");
        failed = 1;
    } else {
        const int64_t *b = before.buf;
        for (int o = 0; o < h->orders && !failed; o++) {
            const OrderTable *t = &h->table[o];
            int64_t found = 0, given = 0;
            if (t->order <= n)
                for (Py_ssize_t r = 0; r < R && !failed; r++) {
                    Py_ssize_t empty, e = order_find(t, b + r * n + n - t->order, &empty);
                    if (e < 0)
                        continue;
                    int64_t row = r, seen = t->seen[e], top = t->top[e];
                    int32_t owner = (int32_t)found;
                    failed |= out_push(&out[0], &row) | out_push(&out[1], &seen) |
                              out_push(&out[2], &top);
                    const int32_t *f = t->followers + e * h->followers_max * 2;
                    for (int k = 0; k < t->nfollowers[e]; k++) {
                        int64_t count = f[2 * k + 1];
                        failed |= out_push(&out[3], &owner) | out_push(&out[4], &f[2 * k]) |
                                  out_push(&out[5], &count);
                        given++;
                    }
                    found++;
                }
            failed |= out_push(&hits, &found) | out_push(&entries, &given);
        }
        if (failed)
            PyErr_NoMemory();
    }
    if (!failed) { /* (y# of a NULL pointer would be None, not b"") */
        Out *all[8] = {&out[0], &out[1], &out[2], &out[3], &out[4], &out[5], &hits, &entries};
        result = PyTuple_New(8);
        for (int i = 0; result && i < 8; i++) {
            PyObject *b = PyBytes_FromStringAndSize(all[i]->data ? all[i]->data : "",
                                                    all[i]->len * all[i]->item);
            if (!b)
                Py_CLEAR(result);
            else
                PyTuple_SET_ITEM(result, i, b);
        }
    }
    for (int i = 0; i < 6; i++)
        free(out[i].data);
    free(hits.data), free(entries.data);
    PyBuffer_Release(&before);
    return result;
}

/* history_learn(h, before (R, n) int64, tokens (R,) int64): each row's token followed its
 * contexts (history.History.learn: order after order, row after row) */
static PyObject *py_history_learn(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    Py_buffer before, tokens;
    Py_ssize_t R, n;
    if (!PyArg_ParseTuple(args, "Oy*y*nn", &capsule, &before, &tokens, &R, &n))
        return NULL;
    HistoryTables *h = PyCapsule_GetPointer(capsule, "inert.history");
    PyObject *result = NULL;
    int failed = 0;
    if (!h)
        failed = 1;
    else if (R < 0 || n < 0 || before.len != R * n * 8 || tokens.len != R * 8) {
        PyErr_SetString(PyExc_ValueError, "before is not (R, n) int64, or tokens not (R,)");
        failed = 1;
    } else {
        const int64_t *b = before.buf, *x = tokens.buf;
        for (int o = 0; o < h->orders && !failed; o++) {
            OrderTable *t = &h->table[o];
            if (t->order > n)
                continue;
            for (Py_ssize_t r = 0; r < R; r++) {
                const int64_t *ctx = b + r * n + n - t->order;
                Py_ssize_t empty, e = order_find(t, ctx, &empty);
                if (e < 0) {
                    if (t->count == h->contexts_max)
                        order_free(t); /* full: the order starts afresh */
                    if (order_grow(t, h->followers_max)) {
                        failed = 1;
                        break;
                    }
                    order_find(t, ctx, &empty);
                    e = t->count++;
                    t->slot[empty] = e + 1;
                    for (int k = 0; k < t->order; k++)
                        t->keys[e * t->order + k] = (int32_t)ctx[k];
                    t->seen[e] = t->top[e] = t->nfollowers[e] = 0;
                }
                int32_t *f = t->followers + e * h->followers_max * 2;
                int k = 0;
                while (k < t->nfollowers[e] && f[2 * k] != (int32_t)x[r])
                    k++;
                int32_t count = k < t->nfollowers[e] ? f[2 * k + 1] : 0;
                if (count == 0 && t->nfollowers[e] == h->followers_max)
                    continue; /* a context records its first followers only */
                if (count == 0) {
                    f[2 * k] = (int32_t)x[r];
                    t->nfollowers[e]++;
                }
                f[2 * k + 1] = count + 1;
                t->seen[e] += 1;
                t->top[e] = t->top[e] > count + 1 ? t->top[e] : count + 1;
            }
        }
        if (failed)
            PyErr_NoMemory();
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&before);
    PyBuffer_Release(&tokens);
    return result;
}

/* ---------------------------------------------------------------- RMS norm
 * exact.rms_norm's numpy arithmetic, row by row: amax = max |x|, unit = (amax or 1) / 2**20,
 * xi = rint(x / unit) as int64, s = sum xi*xi (exact), mean_sq = ((s / n) * unit) * unit,
 * y = (x / sqrt(mean_sq + eps)) * gain. */
WIDEST static void rms_rows(const double *x, const double *gain, double *y, Py_ssize_t R,
                     Py_ssize_t n, double eps)
{
    for (Py_ssize_t r = 0; r < R; r++) {
        const double *row = x + r * n;
        double amax = 0.0;
        for (Py_ssize_t k = 0; k < n; k++) {
            double v = fabs(row[k]);
            amax = v > amax ? v : amax;
        }
        double unit = (amax > 0.0 ? amax : 1.0) / 1048576.0; /* 2**20 */
        int64_t sum_sq = 0;
        for (Py_ssize_t k = 0; k < n; k++) {
            int64_t xi = (int64_t)rint(row[k] / unit);
            sum_sq += xi * xi;
        }
        double mean_sq = (((double)sum_sq / (double)n) * unit) * unit;
        double d = sqrt(mean_sq + eps);
        for (Py_ssize_t k = 0; k < n; k++)
            y[r * n + k] = (row[k] / d) * gain[k];
    }
}

static PyObject *py_rms_norm(PyObject *self, PyObject *args)
{
    Py_buffer x, gain, out;
    Py_ssize_t R, n;
    double eps;
    if (!PyArg_ParseTuple(args, "y*y*w*nnd", &x, &gain, &out, &R, &n, &eps))
        return NULL;
    PyObject *result = NULL;
    if (R < 0 || n < 1)
        PyErr_SetString(PyExc_ValueError, "no rows or an empty row");
    else if (x.len != R * n * 8 || gain.len != n * 8 || out.len != R * n * 8)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match (R, n)");
    else {
        Py_BEGIN_ALLOW_THREADS
        rms_rows(x.buf, gain.buf, out.buf, R, n, eps);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&gain);
    PyBuffer_Release(&out);
    return result;
}

/* ---------------------------------------------------------------- one-token steps
 * The pieces of a lockstep decoding step, each exactly engine.py's numpy arithmetic: a step
 * of a small model is thousands of tiny numpy operations otherwise, whose overhead was most
 * of its time. */


/* exact.silu(x) = x / (1 + exp(-x)); exact.gelu_tanh(x) = 0.5 x (1 + tanh(u)) with
 * u = (x + 0.044715 x**3) sqrt(2/pi) and tanh(u) = 1 - 2 / (exp(2u) + 1) */
static inline double activation(double x, int gelu)
{
    if (!gelu)
        return x / (1.0 + exact_exp(-x));
    double u = (x + 0.044715 * ((x * x) * x)) * 0.7978845608028654;
    double tanh_u = 1.0 - 2.0 / (exact_exp(2.0 * u) + 1.0);
    return (0.5 * x) * (1.0 + tanh_u);
}

/* out (N, h) = act(gate) * up of gate_up (N, 2h): engine.mlp's `self.act(gate) * up` */
WIDEST static void glu_rows(const double *gate_up, double *y, Py_ssize_t N, Py_ssize_t h,
                            int gelu)
{
    for (Py_ssize_t i = 0; i < N; i++) {
        const double *gate = gate_up + i * 2 * h, *up = gate + h;
        if (gelu)
            for (Py_ssize_t j = 0; j < h; j++)
                y[i * h + j] = activation(gate[j], 1) * up[j];
        else
            for (Py_ssize_t j = 0; j < h; j++)
                y[i * h + j] = activation(gate[j], 0) * up[j];
    }
}

static PyObject *py_glu(PyObject *self, PyObject *args)
{
    Py_buffer x, out;
    Py_ssize_t N, h;
    int gelu;
    if (!PyArg_ParseTuple(args, "y*w*nnp", &x, &out, &N, &h, &gelu))
        return NULL;
    PyObject *result = NULL;
    if (N < 0 || h < 1)
        PyErr_SetString(PyExc_ValueError, "no rows or an empty row");
    else if (x.len != N * 2 * h * 8 || out.len != N * h * 8)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match (N, 2h) -> (N, h)");
    else {
        Py_BEGIN_ALLOW_THREADS
        glu_rows(x.buf, out.buf, N, h, gelu);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

/* engine.rope of one head row x (hd) at one position: cos, sin (hd/2) float32 */
static inline void rotate(const double *x, const float *cos, const float *sin, double *y, Py_ssize_t hd)
{
    Py_ssize_t half = hd / 2;
    for (Py_ssize_t i = 0; i < half; i++) {
        double c = (double)cos[i], s = (double)sin[i], x1 = x[i], x2 = x[half + i];
        y[i] = x1 * c - x2 * s;
        y[half + i] = x1 * s + x2 * c;
    }
}

/* exact.quantize of one row, as int16 values and their scale */
static double quantize_row(const double *x, int16_t *q, Py_ssize_t n)
{
    double scale;
    quantize16(x, q, &scale, 1, n);
    return scale;
}

/* One query position of engine.attention for a batch of B sequences, in its arithmetic:
 * q (B, H, hd), k and v (B, n_kv, hd) after their projections; rotate q and k by the
 * position's cos/sin, quantize q, k and v per head, write k and v into the layer's cache at
 * `pos`, then attend over the cached positions first..pos (engine._attend) into
 * out (B, H * hd).
 *
 * The cache is paired for the vector unit's 16-bit multiply-adds (engine.Cache, paired):
 * keys (B, n_kv, hd/2, L, 2), each key's dimensions 2d and 2d + 1 side by side; values
 * (B, n_kv, L/2, hd, 2), positions 2i and 2i + 1 side by side; scales (B, n_kv, L). One
 * pmaddwd then adds two products of 16-bit integers, at most 2 * 32767**2 < 2**31, into
 * int32, which is widened to float64 before the next is added: every sum is the exact
 * integer (< 2**53), as numpy's float64 products make it. */
typedef struct {
    Py_ssize_t B, T, H, n_kv, hd, L, start, window;
    double score_scale;
} Step;

/* scores[h][j] = sum over d of q[h][d] * key j's d for the G query heads q (G, hd) of one
 * kv head, keys first..first+S-1 (exact integers); each key is read once for all G */
static void scores_plain(const int16_t *q, int G, const int16_t *kh, Py_ssize_t hd,
                         Py_ssize_t L, Py_ssize_t first, Py_ssize_t S, double *scores)
{
    for (int h = 0; h < G; h++)
        for (Py_ssize_t j = 0; j < S; j++) {
            double sum = 0.0;
            for (Py_ssize_t p = 0; p < hd / 2; p++) {
                const int16_t *pair = kh + (p * L + first + j) * 2;
                sum += (double)((int32_t)q[h * hd + 2 * p] * pair[0] +
                                (int32_t)q[h * hd + 2 * p + 1] * pair[1]);
            }
            scores[h * S + j] = sum;
        }
}

/* sums[h][d] = sum over j of w[h][j] * value j's d, for the key pairs a/2 .. (a + n)/2 (w
 * (G, n) from an even position a, 0 past the keys) */
static void values_plain(const int16_t *w, int G, const int16_t *vh, Py_ssize_t hd,
                         Py_ssize_t a, Py_ssize_t n, double *sums)
{
    for (int h = 0; h < G; h++)
        for (Py_ssize_t d = 0; d < hd; d++) {
            double sum = 0.0;
            for (Py_ssize_t i = 0; i < n / 2; i++) {
                const int16_t *pair = vh + ((a / 2 + i) * hd + d) * 2;
                sum += (double)((int32_t)w[h * n + 2 * i] * pair[0] +
                                (int32_t)w[h * n + 2 * i + 1] * pair[1]);
            }
            sums[h * hd + d] = sum;
        }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HEADS 4 /* query heads sharing one pass over a kv head's keys or values */
#define SPLIT_PAIRS 128 /* pairs one int32 sum of low bytes holds: 128 * 2 * 32767 * 255 < 2**31 */

/* The one micro-kernel of both products: out[h][0..15] = sum over i < count of the 16 pair
 * sums of the 32 int16 at base + i * step with x[h * x_step + i] (a pair of 16-bit
 * integers), for `heads` <= HEADS rows of x. Each int16 y is split as 256 * (y >> 8) +
 * (y & 255): the pair sums of the high bytes stay below 2**23 and those of the low bytes
 * below 2**24, so SPLIT_PAIRS of them add up in int32 before they are widened (to float64,
 * 256 * high + low, exact) — the same integers as one product at a time, with no widening
 * per pair. MAC is pmaddwd + add, or VNNI's vpdpwssd, which fuses them. */
#define PAIR_KERNELS(NAME, TARGET, MAC)                                                        \
    __attribute__((target(TARGET))) static inline void pair_sums_##NAME(                       \
        const int16_t *base, Py_ssize_t step, Py_ssize_t count, const int32_t *x,              \
        Py_ssize_t x_step, int heads, double *out, Py_ssize_t out_step)                        \
    {                                                                                          \
        __m512d lo[HEADS], hi[HEADS];                                                          \
        const __m512i low_byte = _mm512_set1_epi16(0xFF);                                      \
        for (int h = 0; h < HEADS; h++)                                                        \
            lo[h] = hi[h] = _mm512_setzero_pd();                                               \
        for (Py_ssize_t i0 = 0; i0 < count; i0 += SPLIT_PAIRS) {                               \
            Py_ssize_t i1 = i0 + SPLIT_PAIRS < count ? i0 + SPLIT_PAIRS : count;               \
            __m512i high_sum[HEADS], low_sum[HEADS];                                           \
            for (int h = 0; h < HEADS; h++)                                                    \
                high_sum[h] = low_sum[h] = _mm512_setzero_si512();                             \
            for (Py_ssize_t i = i0; i < i1; i++) {                                             \
                __m512i pairs = _mm512_loadu_si512((const void *)(base + i * step));           \
                __m512i high = _mm512_srai_epi16(pairs, 8);                                    \
                __m512i low = _mm512_and_si512(pairs, low_byte);                               \
                for (int h = 0; h < heads; h++) {                                              \
                    __m512i xh = _mm512_set1_epi32(x[h * x_step + i]);                         \
                    high_sum[h] = MAC(high_sum[h], high, xh);                                  \
                    low_sum[h] = MAC(low_sum[h], low, xh);                                     \
                }                                                                              \
            }                                                                                  \
            const __m512d byte = _mm512_set1_pd(256.0);                                        \
            for (int h = 0; h < heads; h++) { /* 256 * high + low: exact in float64 */        \
                __m512d h0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(high_sum[h]));          \
                __m512d h1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(high_sum[h], 1));    \
                __m512d l0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(low_sum[h]));           \
                __m512d l1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(low_sum[h], 1));     \
                lo[h] = _mm512_add_pd(lo[h], _mm512_add_pd(_mm512_mul_pd(h0, byte), l0));      \
                hi[h] = _mm512_add_pd(hi[h], _mm512_add_pd(_mm512_mul_pd(h1, byte), l1));      \
            }                                                                                  \
        }                                                                                      \
        for (int h = 0; h < heads; h++) {                                                      \
            _mm512_storeu_pd(out + h * out_step, lo[h]);                                       \
            _mm512_storeu_pd(out + h * out_step + 8, hi[h]);                                   \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    /* scores_plain, 16 keys at a time: a key's dimension pairs are L pairs apart */          \
    __attribute__((target(TARGET))) static void scores_##NAME(                                 \
        const int16_t *q, int G, const int16_t *kh, Py_ssize_t hd, Py_ssize_t L,               \
        Py_ssize_t first, Py_ssize_t S, double *scores)                                        \
    {                                                                                          \
        for (int h0 = 0; h0 < G; h0 += HEADS) {                                                \
            int n = G - h0 < HEADS ? G - h0 : HEADS;                                           \
            const int32_t *q32 = (const int32_t *)(q + h0 * hd); /* pairs, by head */          \
            Py_ssize_t j = 0;                                                                  \
            for (; j + 16 <= S; j += 16)                                                       \
                pair_sums_##NAME(kh + (first + j) * 2, L * 2, hd / 2, q32, hd / 2, n,          \
                                 scores + h0 * S + j, S);                                      \
            if (j < S) { /* the last keys, one at a time */                                    \
                double tail[HEADS * 16];                                                       \
                scores_plain(q + h0 * hd, n, kh, hd, L, first + j, S - j, tail);               \
                for (int h = 0; h < n; h++)                                                    \
                    for (Py_ssize_t t = 0; t < S - j; t++)                                     \
                        scores[(h0 + h) * S + j + t] = tail[h * (S - j) + t];                  \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    /* values_plain, 16 dimensions at a time: a dimension's position pairs are hd apart */    \
    __attribute__((target(TARGET))) static void values_##NAME(                                 \
        const int16_t *w, int G, const int16_t *vh, Py_ssize_t hd, Py_ssize_t a,               \
        Py_ssize_t n, double *sums)                                                            \
    {                                                                                          \
        if (hd % 16) {                                                                         \
            values_plain(w, G, vh, hd, a, n, sums);                                            \
            return;                                                                            \
        }                                                                                      \
        for (int h0 = 0; h0 < G; h0 += HEADS) {                                                \
            int heads = G - h0 < HEADS ? G - h0 : HEADS;                                       \
            const int32_t *w32 = (const int32_t *)(w + h0 * n); /* position pairs */           \
            for (Py_ssize_t d = 0; d < hd; d += 16)                                            \
                pair_sums_##NAME(vh + ((a / 2) * hd + d) * 2, hd * 2, n / 2, w32, n / 2,       \
                                 heads, sums + h0 * hd + d, hd);                               \
        }                                                                                      \
    }

#define PAIR_MADD(acc, y, x) _mm512_add_epi32(acc, _mm512_madd_epi16(y, x))
PAIR_KERNELS(avx512, "avx512f,avx512bw", PAIR_MADD)
PAIR_KERNELS(vnni, "avx512f,avx512bw,avx512vnni", _mm512_dpwssd_epi32)
#endif

WIDEST static int attend(const Step *st, const double *q, const double *k, const double *v,
                         const float *cos, const float *sin, int16_t *kc, double *ks,
                         int16_t *vc, double *vs, double *out, int threads)
{
    Py_ssize_t B = st->B, T = st->T, H = st->H, n_kv = st->n_kv, hd = st->hd, L = st->L;
    Py_ssize_t start = st->start, g = H / n_kv, half = hd / 2;
    Py_ssize_t longest = st->window && st->window < start + T ? st->window : start + T;
    Py_ssize_t most = longest + 2; /* keys of a query, and the pairs of its weights */
    int path = forced_path >= 0 ? forced_path : best_path();
    void (*scores_of)(const int16_t *, int, const int16_t *, Py_ssize_t, Py_ssize_t,
                      Py_ssize_t, Py_ssize_t, double *) = scores_plain;
    void (*values_of)(const int16_t *, int, const int16_t *, Py_ssize_t, Py_ssize_t,
                      Py_ssize_t, double *) = values_plain;
#if defined(__x86_64__) && defined(__GNUC__)
    if (path >= 3)
        scores_of = scores_vnni, values_of = values_vnni;
    else if (path == 2)
        scores_of = scores_avx512, values_of = values_avx512;
#endif
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed) if (threads > 1)
    {
        /* per thread: a rotated row; the g heads' scores (g, S) and 16-bit weights (g,
         * pairs); their weighted value sums (g, hd); the query scales */
        double *row = malloc(sizeof(double) * (size_t)(hd + g * most + most + g * hd + H));
        int16_t *q16 = malloc(sizeof(int16_t) * (size_t)(H * hd + g * most + hd));
        if (!row || !q16)
            failed = 1;
        else {
            double *acc = row + hd, *weights = acc + g * most, *sums = weights + most;
            double *qs = sums + g * hd;
            int16_t *wq = q16 + H * hd, *k16 = wq + g * most;
            /* first every position's key and value into the cache (a query sees its own) */
#pragma omp for schedule(static)
            for (Py_ssize_t bt = 0; bt < B * T; bt++) {
                Py_ssize_t b = bt / T, t = bt % T, pos = start + t;
                for (Py_ssize_t h = 0; h < n_kv; h++) {
                    Py_ssize_t at = b * n_kv + h, row_at = (bt * n_kv + h) * hd;
                    int16_t *kh = kc + at * hd * L, *vh = vc + at * L * hd;
                    rotate(k + row_at, cos + t * half, sin + t * half, row, hd);
                    ks[at * L + pos] = quantize_row(row, k16, hd);
                    for (Py_ssize_t d = 0; d < hd; d++) /* key pos: dimension pairs */
                        kh[((d / 2) * L + pos) * 2 + d % 2] = k16[d];
                    vs[at * L + pos] = quantize_row(v + row_at, k16, hd);
                    for (Py_ssize_t d = 0; d < hd; d++) /* value pos: beside pos ^ 1 */
                        vh[((pos / 2) * hd + d) * 2 + pos % 2] = k16[d];
                }
            }
            /* then each query position over the keys it sees */
#pragma omp for schedule(dynamic)
            for (Py_ssize_t bt = 0; bt < B * T; bt++) {
                Py_ssize_t b = bt / T, t = bt % T, pos = start + t;
                Py_ssize_t first = st->window && pos + 1 > st->window ? pos + 1 - st->window : 0;
                Py_ssize_t S = pos + 1 - first, even = first & ~(Py_ssize_t)1;
                Py_ssize_t pairs = (pos + 2 - even) & ~(Py_ssize_t)1;
                for (Py_ssize_t h = 0; h < H; h++) {
                    rotate(q + (bt * H + h) * hd, cos + t * half, sin + t * half, row, hd);
                    qs[h] = quantize_row(row, q16 + h * hd, hd);
                }
                for (Py_ssize_t h = 0; h < n_kv; h++) {
                    Py_ssize_t at = b * n_kv + h; /* (sequence, kv head) */
                    const int16_t *kh = kc + at * hd * L, *vh = vc + at * L * hd;
                    const double *kscale = ks + at * L + first, *vscale = vs + at * L + first;
                    /* scores of the g query heads of this kv head: exact integer dot
                     * products (< 2**38), then the scales */
                    scores_of(q16 + h * g * hd, (int)g, kh, hd, L, first, S, acc);
                    double wscale[64], total[64]; /* per head (g <= 64: checked) */
                    for (Py_ssize_t gi = 0; gi < g; gi++) {
                        Py_ssize_t head = h * g + gi;
                        double *sc = acc + gi * S, top = -INFINITY;
                        for (Py_ssize_t s = 0; s < S; s++) {
                            sc[s] = ((sc[s] * qs[head]) * kscale[s]) * st->score_scale;
                            top = sc[s] > top ? sc[s] : top;
                        }
                        total[gi] = 0.0; /* integers < 2**53: exact in any order */
                        for (Py_ssize_t s = 0; s < S; s++) {
                            double w = rint(exact_exp(sc[s] - top) * 16777216.0); /* PROB_ONE */
                            total[gi] += w;
                            weights[s] = w * vscale[s];
                        }
                        /* the 16-bit weights from the even position before first: 0 where
                         * no key is */
                        int16_t *wh = wq + gi * pairs;
                        wscale[gi] = quantize_row(weights, wh + (first - even), S);
                        wh[0] = first > even ? 0 : wh[0];
                        if ((pos + 1 - even) % 2)
                            wh[pairs - 1] = 0;
                    }
                    values_of(wq, (int)g, vh, hd, even, pairs, sums);
                    for (Py_ssize_t gi = 0; gi < g; gi++) {
                        double *o = out + (bt * H + h * g + gi) * hd;
                        for (Py_ssize_t d = 0; d < hd; d++)
                            o[d] = (sums[gi * hd + d] * wscale[gi]) / total[gi];
                    }
                }
            }
        }
        free(row);
        free(q16);
    }
    return failed ? -1 : 0;
}

static PyObject *py_attend(PyObject *self, PyObject *args)
{
    Py_buffer q, k, v, cos, sin, kc, ks, vc, vs, out;
    Step st;
    int threads;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*w*w*w*w*nnnnnnnndi", &q, &k, &v, &cos, &sin, &kc,
                          &ks, &vc, &vs, &out, &st.B, &st.T, &st.H, &st.n_kv, &st.hd, &st.L,
                          &st.start, &st.window, &st.score_scale, &threads))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t B = st.B, T = st.T, H = st.H, n_kv = st.n_kv, hd = st.hd, L = st.L;
    if (B < 0 || T < 1 || n_kv < 1 || H % n_kv || H / n_kv > 64 || hd < 2 || hd % 2 || L % 2 ||
        st.start < 0 || st.start + T > L || st.window < 0 || threads < 1)
        PyErr_SetString(PyExc_ValueError, "bad heads, head size, positions or window");
    else if (q.len != B * T * H * hd * 8 || k.len != B * T * n_kv * hd * 8 || v.len != k.len ||
             cos.len != T * (hd / 2) * 4 || sin.len != cos.len ||
             kc.len != B * n_kv * hd * L * 2 || vc.len != kc.len || ks.len != B * n_kv * L * 8 ||
             vs.len != ks.len || out.len != q.len)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match the heads and the cache");
    else {
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = attend(&st, q.buf, k.buf, v.buf, cos.buf, sin.buf, kc.buf, ks.buf, vc.buf,
                        vs.buf, out.buf, threads);
        Py_END_ALLOW_THREADS
        if (status)
            PyErr_NoMemory();
        else
            result = Py_NewRef(Py_None);
    }
    Py_buffer *all[] = {&q, &k, &v, &cos, &sin, &kc, &ks, &vc, &vs, &out};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        PyBuffer_Release(all[i]);
    return result;
}


static PyObject *py_pack(PyObject *self, PyObject *args)
{
    Py_buffer w, out;
    Py_ssize_t m, n;
    if (!PyArg_ParseTuple(args, "y*w*nn", &w, &out, &m, &n))
        return NULL;
    PyObject *result = NULL;
    if (m < 1 || n < 1)
        PyErr_SetString(PyExc_ValueError, "an empty matrix");
    else if (w.len != m * n || out.len != panels_of(m) * pairs_of(n) * 2 * PANEL)
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match (m, n) and its panels");
    else {
        Py_BEGIN_ALLOW_THREADS
        pack_panels(w.buf, out.buf, m, n);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&out);
    return result;
}

/* The products: a (N, n) int16 (or, `quantize`, x (N, n) float64 quantized per row and the
 * result scaled by both scales: exact.matmul_q(*exact.quantize(x), w, w_scale)) times the
 * (m, n) int8 matrix in panels */
static PyObject *product(PyObject *args, int quantize)
{
    Py_buffer x, w, w_scale = {0}, out;
    Py_ssize_t N, n, m;
    int threads;
    int ok = quantize ? PyArg_ParseTuple(args, "y*y*y*w*nnni", &x, &w, &w_scale, &out, &N, &n,
                                         &m, &threads)
                      : PyArg_ParseTuple(args, "y*y*w*nnni", &x, &w, &out, &N, &n, &m, &threads);
    if (!ok)
        return NULL;
    PyObject *result = NULL;
    int16_t *q = NULL;
    double *qs = NULL;
    Py_ssize_t weights = panels_of(m) * pairs_of(n) * 2 * PANEL;
    if (N < 0 || n < 1 || m < 1 || threads < 1)
        PyErr_SetString(PyExc_ValueError, "negative size, an empty matrix or no thread");
    else if (x.len != N * n * (quantize ? 8 : 2) || w.len != weights || out.len != N * m * 8 ||
             (quantize && w_scale.len != m * 8))
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match (N, n) x (m, n) -> (N, m)");
    else if (quantize && (!(q = malloc(sizeof(int16_t) * (size_t)(N * n + 1))) ||
                          !(qs = malloc(sizeof(double) * (size_t)(N + 1)))))
        PyErr_NoMemory();
    else {
        int status;
        double *y = out.buf;
        const int16_t *a = quantize ? q : x.buf;
        Py_BEGIN_ALLOW_THREADS
        if (quantize)
            quantize16(x.buf, q, qs, N, n);
        status = matmul_packed(a, w.buf, y, N, n, m, threads);
        if (!status && quantize)
            scale_products(y, qs, w_scale.buf, N, m);
        Py_END_ALLOW_THREADS
        if (status)
            PyErr_NoMemory();
        else
            result = Py_NewRef(Py_None);
    }
    free(q);
    free(qs);
    PyBuffer_Release(&x);
    PyBuffer_Release(&w);
    if (quantize)
        PyBuffer_Release(&w_scale);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *py_matmul_packed(PyObject *self, PyObject *args) { return product(args, 0); }
static PyObject *py_linear_packed(PyObject *self, PyObject *args) { return product(args, 1); }

static PyObject *py_set_path(PyObject *self, PyObject *args)
{
    int path;
    if (!PyArg_ParseTuple(args, "i", &path))
        return NULL;
    int best = best_path();
    forced_path = path < 0 || path > best ? -1 : path;
    return PyLong_FromLong(forced_path >= 0 ? forced_path : best);
}

static PyMethodDef methods[] = {
    {"row_frequencies", py_row_frequencies, METH_VARARGS,
     "row_frequencies(logits, mass_table, out, R, V, codec): out (R, V) int64 = "
     "engine.logits_to_frequencies(logits (R, V) float64, codec)."},
    {"frequencies_q", py_frequencies_q, METH_VARARGS,
     "frequencies_q(acc, q_scale, w_scale, mass_table, out, R, V, codec, softcap, threads, "
     "running): out (R, V) int64 = the frequencies of the logits (acc * q_scale) * w_scale, "
     "soft-capped (engine.tables), or (running) their inclusive running sums; acc (R, V) "
     "float64 is overwritten."},
    {"calibrate", py_calibrate, METH_VARARGS,
     "codec 6's calibrated tables (calibration.py), or their running sums"},
    {"calibrated_intervals", py_calibrated_intervals, METH_VARARGS,
     "each symbol's interval in its calibrated table (calibration.py)"},
    {"mixed_find", py_mixed_find, METH_VARARGS,
     "mixed_find(cumulative, keep, tokens, amounts, target) -> (symbol, start, size): the "
     "symbol of the coded table (history.mixed_cumulative of the model's inclusive running "
     "sum (V,) int64, the row's keep and its history entries, tokens ascending) whose "
     "interval holds target."},
    {"history_new", py_history_new, METH_VARARGS,
     "history_new(orders (k,) int64, contexts_max, followers_max) -> the history's tables."},
    {"history_predict", py_history_predict, METH_VARARGS,
     "history_predict(h, before, R, n) -> (rows, seen, top, owner, tokens, counts, hits, "
     "entries) as bytes: every order's predictions for rows of n tokens before (R, n) int64."},
    {"history_learn", py_history_learn, METH_VARARGS,
     "history_learn(h, before, tokens, R, n): tokens (R,) int64 followed the rows' contexts."},
    {"rms_norm", py_rms_norm, METH_VARARGS,
     "rms_norm(x, gain, out, R, n, eps): out (R, n) float64 = exact.rms_norm(x, gain, eps)."},
    {"pack", py_pack, METH_VARARGS,
     "pack(w, out, m, n): out = the panels of w (m, n) int8 (exact.Packed)."},
    {"matmul_packed", py_matmul_packed, METH_VARARGS,
     "matmul_packed(a, packed, out, N, n, m, threads): out (N, m) float64 = a (N, n) int16 . "
     "w (m, n) int8 ^T, exactly, w in panels (exact.Packed); all C-contiguous."},
    {"linear_packed", py_linear_packed, METH_VARARGS,
     "linear_packed(x, packed, w_scale, out, N, n, m, threads): out (N, m) float64 = "
     "exact.matmul_q of x (N, n) float64 quantized per row, w in panels and w_scale (m,)."},
    {"set_path", py_set_path, METH_VARARGS,
     "set_path(k) -> the path packed products take: 0 plain C, 1 AVX2, 2 AVX-512, 3 AVX-512 "
     "VNNI; k above what the machine has, or -1: its widest (tests try each)."},
    {"glu", py_glu, METH_VARARGS,
     "glu(gate_up, out, N, h, gelu): out (N, h) = act(gate) * up of gate_up (N, 2h) float64, "
     "act exact.silu or (gelu) exact.gelu_tanh."},
    {"attend", py_attend, METH_VARARGS,
     "attend(q, k, v, cos, sin, k_cache, k_scale, v_cache, v_scale, out, B, T, H, n_kv, hd, L, "
     "start, window, score_scale, threads): engine.attention's arithmetic for T positions "
     "from start (rope, quantize, cache writes, causal attention within the window) into out "
     "(B, T, H * hd); the cache paired (engine.Cache)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
