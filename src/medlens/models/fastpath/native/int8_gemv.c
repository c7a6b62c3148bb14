/* Weight-only int8 GEMV for decoding on AVX-512 CPUs (built on first use by native.py).
 *
 *   y[m, n] = sum_g s[n, g] * sum_{k in group g} x[m, k] * q[n, k]     m < M <= 4 rows
 *
 * x and y are bf16 or fp32 (is_f32), q is int8 [N, K] row-major, s [N, K / G] has x's
 * dtype. G == K is one scale per output row (any K; a scalar tail past the last 64);
 * otherwise G is a multiple of 64 dividing K. fp32 accumulation throughout.
 *
 * One output row at a time, read front to back: a single sequential stream per thread
 * is what lets the hardware prefetcher reach the machine's read bandwidth (31 GB/s on
 * 2 Zen 4 cores, against 20 GB/s for aten::_weight_int8pack_mm). Interleaving rows or
 * adding software prefetches measured slower there. Intel cores need the prefetches: with
 * MEDLENS_PREFETCH (bytes ahead, into L2; set by native.py on Intel CPUs) a 2-core Xeon
 * went from 15 to 23 GB/s over MedGemma-4B's layers. Each weight block is widened to fp32
 * once and used for all M input rows.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even, as torch does */
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float load_f(const void *p, long i, int is_f32) {
  return is_f32 ? ((const float *)p)[i] : bf16_to_f32(((const uint16_t *)p)[i]);
}

#define MAXM 4
#ifdef MEDLENS_PREFETCH
#define PREFETCH(p) _mm_prefetch((const char *)(p) + MEDLENS_PREFETCH, _MM_HINT_T1)
#else
#define PREFETCH(p) ((void)0)
#endif
/* The 64 weights at p, loaded once (one 64-byte load per row stream: 16-byte widening
 * loads measured 25 % slower), as four fp32 vectors. */
#define WIDEN(w, i) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(w, i)))
#define WLOAD4(p, w0, w1, w2, w3)                                   \
  do {                                                              \
    PREFETCH(p);                                                    \
    __m512i w_ = _mm512_loadu_si512((const void *)(p));             \
    w0 = WIDEN(w_, 0), w1 = WIDEN(w_, 1), w2 = WIDEN(w_, 2), w3 = WIDEN(w_, 3); \
  } while (0)

static inline float hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

/* --- one scale per output row ------------------------------------------------------- */

/* One output row for a compile-time number of input rows MR (always inlined, so the
 * accumulators stay in registers; a runtime M loop spilled them and ran at 2/3 speed). */
static inline __attribute__((always_inline)) void row_dot(const int8_t *row, const float *xf,
                                                          long K, long kv, int MR, float *sums) {
  __m512 acc[MAXM][4];
  for (int m = 0; m < MR; m++)
    for (int j = 0; j < 4; j++) acc[m][j] = _mm512_setzero_ps();
  for (long k = 0; k < kv; k += 64) {
    __m512 w0, w1, w2, w3;
    WLOAD4(row + k, w0, w1, w2, w3);
    for (int m = 0; m < MR; m++) {
      const float *xm = xf + m * K + k;
      acc[m][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xm), acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xm + 16), acc[m][1]);
      acc[m][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xm + 32), acc[m][2]);
      acc[m][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xm + 48), acc[m][3]);
    }
  }
  for (int m = 0; m < MR; m++) {
    float sum = hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
    for (long k = kv; k < K; k++) sum += (float)row[k] * xf[m * K + k];
    sums[m] = sum;
  }
}

/* Four output rows of one input row, read side by side: for wide inputs (K = 10240 is
 * 40 KB of fp32, more than L1) reading the input once per four rows instead of once per
 * row took MedGemma's down_proj from 16 to 28 GB/s. For narrow inputs one row at a time
 * is faster (one sequential stream). */
static inline void rows4_dot(const int8_t *q, const float *xf, long K, long kv, float *sums) {
  __m512 acc[4][4];
  for (int r = 0; r < 4; r++)
    for (int j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
  for (long k = 0; k < kv; k += 64) {
    __m512 x0 = _mm512_loadu_ps(xf + k), x1 = _mm512_loadu_ps(xf + k + 16);
    __m512 x2 = _mm512_loadu_ps(xf + k + 32), x3 = _mm512_loadu_ps(xf + k + 48);
    for (int r = 0; r < 4; r++) {
      __m512 w0, w1, w2, w3;
      WLOAD4(q + r * K + k, w0, w1, w2, w3);
      acc[r][0] = _mm512_fmadd_ps(w0, x0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(w1, x1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(w2, x2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(w3, x3, acc[r][3]);
    }
  }
  for (int r = 0; r < 4; r++) {
    float sum = hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    for (long k = kv; k < K; k++) sum += (float)q[r * K + k] * xf[k];
    sums[r] = sum;
  }
}

/* --- one scale per group of G input columns (G % 64 == 0) ------------------------------ */

/* Each group's partial products are summed in their own registers, then added to the
 * row's total times the group's scale (fp32): no per-weight multiply by the scale. */
static inline __attribute__((always_inline)) void row_dot_g(const int8_t *row, const void *sc,
                                                            long off, int is_f32,
                                                            const float *xf, long K, long G,
                                                            int MR, float *sums) {
  __m512 acc[MAXM][4];
  for (int m = 0; m < MR; m++)
    for (int j = 0; j < 4; j++) acc[m][j] = _mm512_setzero_ps();
  for (long g0 = 0, gi = 0; g0 < K; g0 += G, gi++) {
    __m512 part[MAXM][4];
    for (int m = 0; m < MR; m++)
      for (int j = 0; j < 4; j++) part[m][j] = _mm512_setzero_ps();
    for (long k = g0; k < g0 + G; k += 64) {
      __m512 w0, w1, w2, w3;
      WLOAD4(row + k, w0, w1, w2, w3);
      for (int m = 0; m < MR; m++) {
        const float *xm = xf + m * K + k;
        part[m][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xm), part[m][0]);
        part[m][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xm + 16), part[m][1]);
        part[m][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xm + 32), part[m][2]);
        part[m][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xm + 48), part[m][3]);
      }
    }
    __m512 s = _mm512_set1_ps(load_f(sc, off + gi, is_f32));
    for (int m = 0; m < MR; m++)
      for (int j = 0; j < 4; j++) acc[m][j] = _mm512_fmadd_ps(part[m][j], s, acc[m][j]);
  }
  for (int m = 0; m < MR; m++) sums[m] = hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
}

/* The decode case (one input row) of row_dot_g, written out: a group's four partial
 * sums start with a multiply, are added together (FP add pipes, otherwise idle) and
 * scaled once into one of two accumulators. 13-23 % slower than one scale per row at
 * G = 64 and 0-4 % at G = 128 (2 Zen 4 cores), against 30 % and 7-11 % for four
 * scaled accumulators. */
static inline float row_dot_g1(const int8_t *row, const void *sc, long off, int is_f32,
                               const float *xf, long K, long G) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  for (long g0 = 0, gi = 0; g0 < K; g0 += G, gi++) {
    __m512 w0, w1, w2, w3;
    WLOAD4(row + g0, w0, w1, w2, w3);
    const float *x = xf + g0;
    __m512 p0 = _mm512_mul_ps(w0, _mm512_loadu_ps(x));
    __m512 p1 = _mm512_mul_ps(w1, _mm512_loadu_ps(x + 16));
    __m512 p2 = _mm512_mul_ps(w2, _mm512_loadu_ps(x + 32));
    __m512 p3 = _mm512_mul_ps(w3, _mm512_loadu_ps(x + 48));
    for (long k = 64; k < G; k += 64) {
      WLOAD4(row + g0 + k, w0, w1, w2, w3);
      p0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + k), p0);
      p1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + k + 16), p1);
      p2 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x + k + 32), p2);
      p3 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x + k + 48), p3);
    }
    __m512 s = _mm512_set1_ps(load_f(sc, off + gi, is_f32));
    __m512 p = _mm512_add_ps(_mm512_add_ps(p0, p1), _mm512_add_ps(p2, p3));
    if (gi & 1) a1 = _mm512_fmadd_ps(p, s, a1);
    else a0 = _mm512_fmadd_ps(p, s, a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static inline void rows4_dot_g(const int8_t *q, const void *sc, long off, int is_f32, long NG,
                               const float *xf, long K, long G, float *sums) {
  __m512 acc[4][2];
  for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (long g0 = 0, gi = 0; g0 < K; g0 += G, gi++) {
    __m512 part[4][4];
    for (int r = 0; r < 4; r++)
      for (int j = 0; j < 4; j++) part[r][j] = _mm512_setzero_ps();
    for (long k = g0; k < g0 + G; k += 64) {
      __m512 x0 = _mm512_loadu_ps(xf + k), x1 = _mm512_loadu_ps(xf + k + 16);
      __m512 x2 = _mm512_loadu_ps(xf + k + 32), x3 = _mm512_loadu_ps(xf + k + 48);
      for (int r = 0; r < 4; r++) {
        __m512 w0, w1, w2, w3;
        WLOAD4(q + r * K + k, w0, w1, w2, w3);
        part[r][0] = _mm512_fmadd_ps(w0, x0, part[r][0]);
        part[r][1] = _mm512_fmadd_ps(w1, x1, part[r][1]);
        part[r][2] = _mm512_fmadd_ps(w2, x2, part[r][2]);
        part[r][3] = _mm512_fmadd_ps(w3, x3, part[r][3]);
      }
    }
    for (int r = 0; r < 4; r++) {
      __m512 s = _mm512_set1_ps(load_f(sc, off + r * NG + gi, is_f32));
      __m512 p = _mm512_add_ps(_mm512_add_ps(part[r][0], part[r][1]),
                               _mm512_add_ps(part[r][2], part[r][3]));
      acc[r][gi & 1] = _mm512_fmadd_ps(p, s, acc[r][gi & 1]);
    }
  }
  for (int r = 0; r < 4; r++) sums[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

static inline void store(void *y, long i, float v, int is_f32) {
  if (is_f32)
    ((float *)y)[i] = v;
  else
    ((uint16_t *)y)[i] = f32_to_bf16(v);
}

/* All N output rows for MR input rows, split across threads. */
#define ROWS(MR)                                                                    \
  do {                                                                              \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")               \
    for (long n = 0; n < N; n++) {                                                  \
      float sums[MAXM];                                                             \
      if (grouped && MR == 1) {                                                     \
        sums[0] = row_dot_g1(q + n * K, s, n * NG, is_f32, xf, K, G);                     \
        store(y, n, sums[0], is_f32);                                               \
      } else if (grouped) {                                                         \
        row_dot_g(q + n * K, s, n * NG, is_f32, xf, K, G, MR, sums);                      \
        for (int m = 0; m < MR; m++) store(y, m * N + n, sums[m], is_f32);          \
      } else {                                                                      \
        row_dot(q + n * K, xf, K, kv, MR, sums);                                    \
        for (int m = 0; m < MR; m++) store(y, m * N + n, sums[m] * load_f(s, n, is_f32), is_f32);  \
      }                                                                             \
    }                                                                               \
  } while (0)

#define WIDE_K 4096 /* inputs wider than this use rows4_dot */

int medlens_int8_gemv(const void *x, const int8_t *q, const void *s, void *y, long M, long N,
                      long K, long G, int is_f32, int threads) {
  if (M < 1 || M > MAXM || N < 1 || K < 1 || G < 1 || K % G != 0) return 1;
  int grouped = G != K;
  if (grouped && G % 64 != 0) return 1;
  long NG = K / G;
  long kv = K - K % 64; /* vectorised part; the rest is a scalar tail (per-row only) */
  float *xf = (float *)_mm_malloc(sizeof(float) * (size_t)(M * K), 64);
  if (!xf) return 2;
  /* only x is widened up front: scales are read where used (a copy of the LM head's
   * 10 M group scales cost more than the product itself) */
  for (long i = 0; i < M * K; i++) xf[i] = load_f(x, i, is_f32);

  if (M == 1 && K > WIDE_K) {
    long n4 = N - N % 4;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long n = 0; n < n4; n += 4) {
      float sums[4];
      if (grouped) {
        rows4_dot_g(q + n * K, s, n * NG, is_f32, NG, xf, K, G, sums);
        for (int r = 0; r < 4; r++) store(y, n + r, sums[r], is_f32);
      } else {
        rows4_dot(q + n * K, xf, K, kv, sums);
        for (int r = 0; r < 4; r++) store(y, n + r, sums[r] * load_f(s, n + r, is_f32), is_f32);
      }
    }
    for (long n = n4; n < N; n++) { /* the last N % 4 rows */
      float sum;
      if (grouped) {
        store(y, n, row_dot_g1(q + n * K, s, n * NG, is_f32, xf, K, G), is_f32);
      } else {
        row_dot(q + n * K, xf, K, kv, 1, &sum);
        store(y, n, sum * load_f(s, n, is_f32), is_f32);
      }
    }
  } else {
    switch (M) { /* one loop per M, so each is compiled for its constant */
      case 1: ROWS(1); break;
      case 2: ROWS(2); break;
      case 3: ROWS(3); break;
      default: ROWS(4); break;
    }
  }
  _mm_free(xf);
  return 0;
}
