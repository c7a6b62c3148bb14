/* Bidirectional (unmasked) attention in bf16 for vision towers on AVX-512 BF16 CPUs.
 *
 *   out[b, t, h, :] = sum_s softmax_s(q[b, h, t] . k[b, h, s] * scale) v[b, h, s, :]
 *
 * Why: SigLIP at 896 px attends over 4096 patches with 72-wide heads. torch's CPU flash
 * attention runs that at ~150 GFLOP/s on 2 Zen 4 cores (a third of the bf16 matmul rate)
 * and it is 38 % of the tower's arithmetic. Here both products use vdpbf16ps (bf16 pairs,
 * fp32 accumulation) and the exponentials a polynomial exp2, in one pass over the keys
 * (online softmax, as flash attention), so no [T, S] score matrix is ever stored.
 *
 * Layout: per (b, h) the keys and values are first packed into the order the dot
 * instructions read them (K: [tile][d pair][64 keys][2]; V: [tile][key pair][d][2]),
 * zero-padded to 64 keys and to even / 16-wide d. Queries are processed 4 rows at a time
 * against 64-key tiles; a task is 32 query rows of one head, so a key/value tile (18 KB at
 * d = 72) is reused from L1 by 8 micro-kernels. Numerics: fp32 scores and sums, the
 * probabilities rounded to bf16 for the second product (as torch's bf16 kernels do), the
 * output rounded to bf16 once.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KT 64   /* keys per tile */
#define QR 4    /* query rows per micro-kernel */
#ifndef QB
#define QB 32 /* query rows per task */
#endif
#define MAXD 256

typedef uint16_t bf16;

static inline __m512 exp2_ps(__m512 x) {
  /* 2^x for x <= 0 (scores minus their running max): 2^n * p(f), |f| <= 0.5, p the
   * degree-6 Taylor polynomial of 2^f (relative error < 2e-7). */
  x = _mm512_max_ps(x, _mm512_set1_ps(-126.0f));
  __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.5403530393381606e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

static inline float bf16_to_f32(bf16 h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline bf16 f32_to_bf16(float f) { /* round to nearest even, as torch does */
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (bf16)(u >> 16);
}

#define DPBF16(acc, a, b) _mm512_dpbf16_ps((acc), (__m512bh)(a), (__m512bh)(b))

/* One 64-key tile for QR query rows: scores, online-softmax update, o += p v. */
static inline void tile(const uint32_t *qp, long dp2, const bf16 *kp, const bf16 *vp, long dvp,
                        long keys, float sl2, float *m, float *l, float *o) {
  __m512 acc[QR][4];
  for (int r = 0; r < QR; r++)
    for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
  for (long p = 0; p < dp2; p++) {
    const bf16 *kk = kp + p * 2 * KT;
    __m512i k0 = _mm512_loadu_si512(kk), k1 = _mm512_loadu_si512(kk + 32);
    __m512i k2 = _mm512_loadu_si512(kk + 64), k3 = _mm512_loadu_si512(kk + 96);
    for (int r = 0; r < QR; r++) {
      __m512i qb = _mm512_set1_epi32((int)qp[r * dp2 + p]);
      acc[r][0] = DPBF16(acc[r][0], k0, qb);
      acc[r][1] = DPBF16(acc[r][1], k1, qb);
      acc[r][2] = DPBF16(acc[r][2], k2, qb);
      acc[r][3] = DPBF16(acc[r][3], k3, qb);
    }
  }
  /* keys past the end of the sequence (zero padding) take no weight */
  __mmask16 valid[4];
  for (int c = 0; c < 4; c++) {
    long left = keys - c * 16;
    valid[c] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
  }
  bf16 pb[QR][KT] __attribute__((aligned(64)));
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  const __m512 sv = _mm512_set1_ps(sl2);
  float mnew[16] __attribute__((aligned(64))), corr[16] __attribute__((aligned(64)));
  for (int r = 0; r < QR; r++) {
    __m512 mx = ninf;
    for (int c = 0; c < 4; c++) {
      acc[r][c] = _mm512_mask_mov_ps(ninf, valid[c], _mm512_mul_ps(acc[r][c], sv));
      mx = _mm512_max_ps(mx, acc[r][c]);
    }
    mnew[r] = fmaxf(m[r], _mm512_reduce_max_ps(mx));
    corr[r] = m[r] - mnew[r];
  }
  /* the rescaling factors of all rows in one vector exp (m = -inf on the first tile: 0) */
  _mm512_store_ps(corr, exp2_ps(_mm512_maskz_loadu_ps((1u << QR) - 1, corr)));
  for (int r = 0; r < QR; r++) {
    if (m[r] == -INFINITY) corr[r] = 0.0f;
    __m512 mv = _mm512_set1_ps(mnew[r]);
    __m512 sum = _mm512_setzero_ps();
    for (int c = 0; c < 4; c++) {
      __m512 e = _mm512_maskz_mov_ps(valid[c], exp2_ps(_mm512_sub_ps(acc[r][c], mv)));
      /* the weights as used (bf16) are the weights summed: rows of p v sum to one */
      __m256bh eb = _mm512_cvtneps_pbh(e);
      _mm256_store_si256((__m256i *)(pb[r] + c * 16), (__m256i)eb);
      sum = _mm512_add_ps(sum, _mm512_cvtpbh_ps(eb));
    }
    l[r] = l[r] * corr[r] + _mm512_reduce_add_ps(sum);
    m[r] = mnew[r];
    if (corr[r] != 1.0f) {
      __m512 cv = _mm512_set1_ps(corr[r]);
      for (long d = 0; d < dvp; d += 16)
        _mm512_store_ps(o + r * dvp + d, _mm512_mul_ps(_mm512_load_ps(o + r * dvp + d), cv));
    }
  }
  /* o[r, d] += sum_j p[r, j] v[j, d], two 16-wide d blocks at a time (holding more
   * blocks in registers measured slower) */
  for (long d0 = 0; d0 < dvp; d0 += 32) {
    int two = d0 + 16 < dvp;
    __m512 oa[QR], ob[QR];
    for (int r = 0; r < QR; r++) {
      oa[r] = _mm512_load_ps(o + r * dvp + d0);
      ob[r] = two ? _mm512_load_ps(o + r * dvp + d0 + 16) : _mm512_setzero_ps();
    }
    for (long j = 0; j < KT / 2; j++) {
      const bf16 *vv = vp + (j * dvp + d0) * 2;
      __m512i va = _mm512_loadu_si512(vv);
      __m512i vb = two ? _mm512_loadu_si512(vv + 32) : _mm512_setzero_si512();
      for (int r = 0; r < QR; r++) {
        uint32_t pair;
        memcpy(&pair, pb[r] + 2 * j, 4);
        __m512i pp = _mm512_set1_epi32((int)pair);
        oa[r] = DPBF16(oa[r], va, pp);
        if (two) ob[r] = DPBF16(ob[r], vb, pp);
      }
    }
    for (int r = 0; r < QR; r++) {
      _mm512_store_ps(o + r * dvp + d0, oa[r]);
      if (two) _mm512_store_ps(o + r * dvp + d0 + 16, ob[r]);
    }
  }
}

int medlens_attention_bf16(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out, long B,
                           long H, long T, long S, long D, long qsb, long qsh, long qst,
                           long ksb, long ksh, long kst, long vsb, long vsh, long vst,
                           float scale, int threads) {
  if (B < 1 || H < 1 || T < 1 || S < 1 || D < 1 || D > MAXD) return 1;
  const long dp2 = (D + 1) / 2;           /* d pairs */
  const long dvp = (D + 15) / 16 * 16;    /* d padded to 16 lanes */
  const long tiles = (S + KT - 1) / KT;
  const long ksz = tiles * dp2 * 2 * KT;  /* packed K elements per head */
  const long vsz = tiles * (KT / 2) * dvp * 2;
  bf16 *kpack = (bf16 *)aligned_alloc(64, (size_t)(B * H * ksz) * sizeof(bf16));
  bf16 *vpack = (bf16 *)aligned_alloc(64, (size_t)(B * H * vsz) * sizeof(bf16));
  if (!kpack || !vpack) {
    free(kpack);
    free(vpack);
    return 2;
  }
  const float sl2 = scale * 1.4426950408889634f; /* softmax in base 2: exp(x) = 2^(x log2 e) */

#pragma omp parallel for schedule(static) num_threads(threads)
  for (long bt = 0; bt < B * H * tiles; bt++) {
    long bh = bt / tiles, t = bt % tiles, b = bh / H, h = bh % H;
    const bf16 *kh = k + b * ksb + h * ksh, *vh = v + b * vsb + h * vsh;
    bf16 *kt = kpack + bh * ksz + t * dp2 * 2 * KT;
    bf16 *vt = vpack + bh * vsz + t * (KT / 2) * dvp * 2;
    for (long p = 0; p < dp2; p++)
      for (long j = 0; j < KT; j++)
        for (int e = 0; e < 2; e++) {
          long key = t * KT + j, d = 2 * p + e;
          kt[(p * KT + j) * 2 + e] = (key < S && d < D) ? kh[key * kst + d] : 0;
        }
    for (long j = 0; j < KT / 2; j++)
      for (long d = 0; d < dvp; d++)
        for (int e = 0; e < 2; e++) {
          long key = t * KT + 2 * j + e;
          vt[(j * dvp + d) * 2 + e] = (key < S && d < D) ? vh[key * vst + d] : 0;
        }
  }

  const long qblocks = (T + QB - 1) / QB;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long task = 0; task < B * H * qblocks; task++) {
    long bh = task / qblocks, qb0 = (task % qblocks) * QB, b = bh / H, h = bh % H;
    long rows = T - qb0 < QB ? T - qb0 : QB;
    uint32_t qp[QB * (MAXD / 2)]; /* the block's queries as bf16 pairs, zero-padded */
    float o[QB * MAXD] __attribute__((aligned(64)));
    float m[QB], l[QB];
    for (long r = 0; r < QB; r++) {
      const bf16 *qr = q + b * qsb + h * qsh + (qb0 + (r < rows ? r : 0)) * qst;
      for (long p = 0; p < dp2; p++) {
        bf16 lo = qr[2 * p], hi = 2 * p + 1 < D ? qr[2 * p + 1] : 0;
        qp[r * dp2 + p] = (uint32_t)lo | ((uint32_t)hi << 16);
      }
      m[r] = -INFINITY;
      l[r] = 0.0f;
    }
    memset(o, 0, sizeof(float) * (size_t)(QB * dvp));
    const bf16 *kh = kpack + bh * ksz, *vh = vpack + bh * vsz;
    for (long t = 0; t < tiles; t++) {
      long keys = S - t * KT;
      for (long r = 0; r < rows; r += QR)
        tile(qp + r * dp2, dp2, kh + t * dp2 * 2 * KT, vh + t * (KT / 2) * dvp * 2, dvp, keys,
             sl2, m + r, l + r, o + r * dvp);
    }
    for (long r = 0; r < rows; r++) {
      bf16 *dst = out + ((b * T + qb0 + r) * H + h) * D;
      float inv = 1.0f / l[r];
      for (long d = 0; d < D; d++) dst[d] = f32_to_bf16(o[r * dvp + d] * inv);
    }
  }
  free(kpack);
  free(vpack);
  return 0;
}
