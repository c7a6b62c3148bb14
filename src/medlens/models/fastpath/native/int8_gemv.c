/* Weight-only int8 GEMV for decoding on AVX-512 CPUs (built on first use by native.py).
 *
 *   y[m, n] = s[n] * sum_k x[m, k] * q[n, k]      m < M <= 4 rows, fp32 accumulation
 *
 * x and y are bf16 or fp32 (is_f32), q is int8 [N, K] row-major, s has x's dtype.
 * One output row at a time, read front to back: a single sequential stream per thread
 * is what lets the hardware prefetcher reach the machine's read bandwidth (31 GB/s on
 * 2 Zen 4 cores, against 20 GB/s for aten::_weight_int8pack_mm). Interleaving rows or
 * adding software prefetches measured slower. Each weight block is widened to fp32 once
 * and used for all M input rows.
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
#define WIDEN(w, i) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(w, i)))

/* One output row for a compile-time number of input rows MR (always inlined, so the
 * accumulators stay in registers; a runtime M loop spilled them and ran at 2/3 speed). */
static inline __attribute__((always_inline)) void row_dot(const int8_t *row, const float *xf,
                                                          long K, long kv, int MR, float *sums) {
  __m512 acc[MAXM][4];
  for (int m = 0; m < MR; m++)
    for (int j = 0; j < 4; j++) acc[m][j] = _mm512_setzero_ps();
  for (long k = 0; k < kv; k += 64) {
    __m512i w = _mm512_loadu_si512((const void *)(row + k));
    __m512 w0 = WIDEN(w, 0), w1 = WIDEN(w, 1), w2 = WIDEN(w, 2), w3 = WIDEN(w, 3);
    for (int m = 0; m < MR; m++) {
      const float *xm = xf + m * K + k;
      acc[m][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xm), acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xm + 16), acc[m][1]);
      acc[m][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xm + 32), acc[m][2]);
      acc[m][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xm + 48), acc[m][3]);
    }
  }
  for (int m = 0; m < MR; m++) {
    float sum = _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]), _mm512_add_ps(acc[m][2], acc[m][3])));
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
      __m512i w = _mm512_loadu_si512((const void *)(q + r * K + k));
      acc[r][0] = _mm512_fmadd_ps(WIDEN(w, 0), x0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(WIDEN(w, 1), x1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(WIDEN(w, 2), x2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(WIDEN(w, 3), x3, acc[r][3]);
    }
  }
  for (int r = 0; r < 4; r++) {
    float sum = _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3])));
    for (long k = kv; k < K; k++) sum += (float)q[r * K + k] * xf[k];
    sums[r] = sum;
  }
}

static inline void store(void *y, long i, float v, int is_f32) {
  if (is_f32)
    ((float *)y)[i] = v;
  else
    ((uint16_t *)y)[i] = f32_to_bf16(v);
}

/* All N output rows for MR input rows, split across threads. */
#define ROWS(MR)                                                     \
  do {                                                               \
    _Pragma("omp parallel for schedule(static) num_threads(threads)") \
    for (long n = 0; n < N; n++) {                                   \
      float sums[MAXM];                                              \
      row_dot(q + n * K, xf, K, kv, MR, sums);                       \
      float scale = load_f(s, n, is_f32);                            \
      for (int m = 0; m < MR; m++) store(y, m * N + n, sums[m] * scale, is_f32); \
    }                                                                \
  } while (0)

#define WIDE_K 4096 /* inputs wider than this use rows4_dot */

int medlens_int8_gemv(const void *x, const int8_t *q, const void *s, void *y, long M, long N,
                      long K, int is_f32, int threads) {
  if (M < 1 || M > MAXM || N < 1 || K < 1) return 1;
  long kv = K - K % 64; /* vectorised part; the rest is a scalar tail */
  float *xf = (float *)_mm_malloc(sizeof(float) * (size_t)(M * K), 64);
  if (!xf) return 2;
  for (long i = 0; i < M * K; i++) xf[i] = load_f(x, i, is_f32);

  if (M == 1 && K > WIDE_K) {
    long n4 = N - N % 4;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long n = 0; n < n4; n += 4) {
      float sums[4];
      rows4_dot(q + n * K, xf, K, kv, sums);
      for (int r = 0; r < 4; r++) store(y, n + r, sums[r] * load_f(s, n + r, is_f32), is_f32);
    }
    for (long n = n4; n < N; n++) { /* the last N % 4 rows */
      float sum;
      row_dot(q + n * K, xf, K, kv, 1, &sum);
      store(y, n, sum * load_f(s, n, is_f32), is_f32);
    }
    _mm_free(xf);
    return 0;
  }
  switch (M) { /* one loop per M, so each is compiled for its constant */
    case 1: ROWS(1); break;
    case 2: ROWS(2); break;
    case 3: ROWS(3); break;
    default: ROWS(4); break;
  }
  _mm_free(xf);
  return 0;
}
