// AVX2/FMA/F16C kernels besides the matrix products: attention, rmsNorm, activation rounding,
// the bandwidth probe, and the dot products LoRA uses. Same numerics as kernels_ref.cc, bit for bit.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels_avx2.h"

namespace ol {
namespace avx2 {

// ------------------------------------------------------------------ attention

// hsum8 of eight accumulators at once, result k from a[k]: per accumulator the lanes are added as
// ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)), the scheme's order, with vertical adds on shuffled
// registers instead of eight scalar reductions.
static inline __m256 hsum8x8(const __m256 a[8]) {
  __m256 s[4];
  for (int k = 0; k < 4; k++) {
    const __m256 x = a[2 * k], y = a[2 * k + 1];
    // Lanes of row 2k, then of row 2k+1: (l0+l4, l1+l5, l2+l6, l3+l7) each.
    s[k] = _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x20), _mm256_permute2f128_ps(x, y, 0x31));
  }
  __m256 t[2];
  for (int k = 0; k < 2; k++) {
    // 128-bit half h: rows 2·(2k)+h and 2·(2k+1)+h as ((l0+l4)+(l2+l6), (l1+l5)+(l3+l7)).
    t[k] = _mm256_add_ps(_mm256_shuffle_ps(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // Half 0: rows 0, 2, 4, 6; half 1: rows 1, 3, 5, 7.
  const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}


static inline float dot_q_k(const float* q, const uint16_t* k, int D) {
  __m256 acc = _mm256_setzero_ps();
  const int D8 = D & ~7;
  for (int d = 0; d < D8; d += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k + d))), acc);
  alignas(32) float a[8];
  _mm256_store_ps(a, acc);
  for (int d = D8; d < D; d++) a[d % 8] = std::fma(q[d], fp16_to_f32(k[d]), a[d % 8]);
  return hsum8(a);
}

static inline void dot_q_k4(float* s, const float* q, const uint16_t* k0, const uint16_t* k1,
                            const uint16_t* k2, const uint16_t* k3, int D) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const int D8 = D & ~7;
  for (int d = 0; d < D8; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    a0 = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k0 + d))), a0);
    a1 = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k1 + d))), a1);
    a2 = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k2 + d))), a2);
    a3 = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k3 + d))), a3);
  }
  const uint16_t* ks[4] = {k0, k1, k2, k3};
  __m256 as[4] = {a0, a1, a2, a3};
  for (int r = 0; r < 4; r++) {
    alignas(32) float a[8];
    _mm256_store_ps(a, as[r]);
    for (int d = D8; d < D; d++) a[d % 8] = std::fma(q[d], fp16_to_f32(ks[r][d]), a[d % 8]);
    s[r] = hsum8(a);
  }
}


// exp_poly (common.h) on eight lanes: the same operations in the same order.
static inline __m256 exp_poly8(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.3365479f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// out = Σ_p probs[p] · V[p] for a head of V8 · 8 dims, the accumulators in registers (the same
// FMAs in the same order as the general loop below).
template <int V8>
static inline void weighted_v(float* out, const AttnArgs& a, const float* probs, int32_t pos, const int32_t* table,
                              size_t kvDim, int kvh) {
  constexpr int D = V8 * 8;
  const int bs = a.blockSize;
  __m256 acc[V8];
  for (int i = 0; i < V8; i++) acc[i] = _mm256_setzero_ps();
  for (int32_t p = 0; p <= pos; p++) {
    const uint16_t* v = a.vPool + ((size_t)table[p / bs] * bs + p % bs) * kvDim + (size_t)kvh * D;
    const __m256 pv = _mm256_set1_ps(probs[p]);
    for (int i = 0; i < V8; i++)
      acc[i] = _mm256_fmadd_ps(pv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v + 8 * i))), acc[i]);
  }
  for (int i = 0; i < V8; i++) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

void attn_task_avx2(const AttnArgs& a, int t, int h, float* scores) {
  const int D = a.headDim, group = a.nHeads / a.nKvHeads, kvh = h / group;
  const size_t kvDim = (size_t)a.nKvHeads * D;
  const float* q_in = a.q + ((size_t)t * a.nHeads + h) * D;
  float* out = a.out + ((size_t)t * a.nHeads + h) * D;
  const int32_t pos = a.rowPos[t];
  const int32_t* table = a.blockTables + a.tableOffsets[a.rowSeq[t]];
  const int bs = a.blockSize;
  alignas(32) float q[kMaxAttnHeadDim];
  round_f16_avx2(q, q_in, (size_t)D);
  auto kptr = [&](int32_t p) {
    return a.kPool + ((size_t)table[p / bs] * bs + p % bs) * kvDim + (size_t)kvh * D;
  };
  int32_t p = 0;
  if (D % 8 == 0) {
    // Eight positions at a time, their eight lane sums folded by one hsum8x8 (the same adds as hsum8).
    for (; p + 8 <= pos + 1; p += 8) {
      __m256 acc[8];
      for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
      const uint16_t* ks[8];
      for (int r = 0; r < 8; r++) ks[r] = kptr(p + r);
      for (int d = 0; d < D; d += 8) {
        const __m256 qv = _mm256_loadu_ps(q + d);
        for (int r = 0; r < 8; r++)
          acc[r] = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(ks[r] + d))), acc[r]);
      }
      _mm256_storeu_ps(scores + p, hsum8x8(acc));
    }
  }
  for (; p + 4 <= pos + 1; p += 4) dot_q_k4(scores + p, q, kptr(p), kptr(p + 1), kptr(p + 2), kptr(p + 3), D);
  for (; p <= pos; p++) scores[p] = dot_q_k(q, kptr(p), D);
  float mx = -INFINITY;
  for (p = 0; p <= pos; p++) {
    scores[p] = scores[p] * a.scale;
    mx = std::max(mx, scores[p]);
  }
  // exp_poly eight scores at a time; the sum stays serial, in the reference's order.
  const __m256 mxv = _mm256_set1_ps(mx);
  for (p = 0; p + 8 <= pos + 1; p += 8)
    _mm256_storeu_ps(scores + p, exp_poly8(_mm256_sub_ps(_mm256_loadu_ps(scores + p), mxv)));
  for (; p <= pos; p++) scores[p] = exp_poly(scores[p] - mx);
  float sum = 0.0f;
  for (p = 0; p <= pos; p++) sum += scores[p];
  const float inv = 1.0f / sum;
  for (p = 0; p <= pos; p++) scores[p] = scores[p] * inv;
  round_f16_avx2(scores, scores, (size_t)pos + 1);
  if (D == 64) return weighted_v<8>(out, a, scores, pos, table, kvDim, kvh);
  if (D == 128) return weighted_v<16>(out, a, scores, pos, table, kvDim, kvh);
  const int D8 = D & ~7;
  for (int d = 0; d < D; d++) out[d] = 0.0f;
  for (p = 0; p <= pos; p++) {
    const uint16_t* v = a.vPool + ((size_t)table[p / bs] * bs + p % bs) * kvDim + (size_t)kvh * D;
    const float pr = scores[p];
    const __m256 pv = _mm256_set1_ps(pr);
    for (int d = 0; d < D8; d += 8) {
      const __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v + d)));
      _mm256_storeu_ps(out + d, _mm256_fmadd_ps(pv, vv, _mm256_loadu_ps(out + d)));
    }
    for (int d = D8; d < D; d++) out[d] = std::fma(pr, fp16_to_f32(v[d]), out[d]);
  }
}

// ------------------------------------------------------------------ rmsNorm

static void rms_apply(float* out, const float* x, const float* w, size_t dim, float scale) {
  const size_t D8 = dim & ~(size_t)7;
  const __m256 sv = _mm256_set1_ps(scale);
  for (size_t i = 0; i < D8; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
  for (size_t i = D8; i < dim; i++) out[i] = (x[i] * scale) * w[i];
}

// rms_scale of four rows at once, row r in f64 lane r: the same f32 squares added in the same
// (sequential) order per row, so the same bits, with four rows sharing each add's latency.
static inline void rms_scale4(float scale[4], const float* x, size_t dim, float eps) {
  __m256d sum = _mm256_setzero_pd();
  size_t i = 0;
  for (; i + 4 <= dim; i += 4) {
    __m128 r0 = _mm_loadu_ps(x + i), r1 = _mm_loadu_ps(x + dim + i), r2 = _mm_loadu_ps(x + 2 * dim + i),
           r3 = _mm_loadu_ps(x + 3 * dim + i);
    r0 = _mm_mul_ps(r0, r0);
    r1 = _mm_mul_ps(r1, r1);
    r2 = _mm_mul_ps(r2, r2);
    r3 = _mm_mul_ps(r3, r3);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_k = element i + k of rows 0..3
    sum = _mm256_add_pd(sum, _mm256_cvtps_pd(r0));
    sum = _mm256_add_pd(sum, _mm256_cvtps_pd(r1));
    sum = _mm256_add_pd(sum, _mm256_cvtps_pd(r2));
    sum = _mm256_add_pd(sum, _mm256_cvtps_pd(r3));
  }
  alignas(32) double s[4];
  _mm256_store_pd(s, sum);
  for (int r = 0; r < 4; r++) {
    double t = s[r];
    for (size_t j = i; j < dim; j++) {
      const float sq = x[r * dim + j] * x[r * dim + j];
      t += (double)sq;
    }
    const float mean = (float)(t / (double)dim);
    scale[r] = 1.0f / std::sqrt(mean + eps);
  }
}

void rms_norm_rows_avx2(float* out, const float* x, const float* w, size_t rows, size_t dim, float eps) {
  size_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    float scale[4];
    rms_scale4(scale, x + r * dim, dim, eps);
    for (int k = 0; k < 4; k++) rms_apply(out + (r + k) * dim, x + (r + k) * dim, w, dim, scale[k]);
  }
  for (; r < rows; r++) rms_apply(out + r * dim, x + r * dim, w, dim, rms_scale(x + r * dim, dim, eps));
}

// ------------------------------------------------------------------ silu, argmax

void silu_mul_avx2(float* out, const float* gate, const float* up, size_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp_poly8(_mm256_xor_ps(g, sign));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; i++) {
    const float g = gate[i];
    out[i] = (g / (1.0f + exp_poly(-g))) * up[i];
  }
}

// 64 bytes per test: every element's bits with the sign cleared compared with the limit. Cleared of
// the sign, both sides are non-negative as signed lanes (limit < 2^31, or < 2^15 for 16-bit
// types), so the signed compare is the unsigned one. A block with a hit is rescanned by the
// reference, which also takes the tail, so the index is the reference's.
size_t first_above_avx2(const void* data, size_t n, int type, uint32_t limit) {
  const bool wide = type == T_F32;
  const size_t elem = wide ? 4 : 2, bytes = n * elem;
  const __m256i abs = wide ? _mm256_set1_epi32(0x7fffffff) : _mm256_set1_epi16(0x7fff);
  const __m256i lim = wide ? _mm256_set1_epi32((int32_t)limit) : _mm256_set1_epi16((int16_t)limit);
  const uint8_t* p = (const uint8_t*)data;
  size_t b = 0;
  for (; b + 64 <= bytes; b += 64) {
    const __m256i x0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(p + b)), abs);
    const __m256i x1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(p + b + 32)), abs);
    const __m256i hit = wide ? _mm256_or_si256(_mm256_cmpgt_epi32(x0, lim), _mm256_cmpgt_epi32(x1, lim))
                             : _mm256_or_si256(_mm256_cmpgt_epi16(x0, lim), _mm256_cmpgt_epi16(x1, lim));
    if (!_mm256_testz_si256(hit, hit)) break;
  }
  const size_t i0 = b / elem;
  return i0 + first_above_ref(p + b, n - i0, type, limit);
}

// Per lane the first index of its largest element (strict >, so NaN never wins), then the largest
// lane value with the smallest index among ties; the tail is scanned after, so strict > keeps the
// first index there too.
size_t argmax_avx2(const float* x, size_t n) {
  __m256 best = _mm256_set1_ps(-INFINITY);
  __m256i bidx = _mm256_setzero_si256();
  __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i step = _mm256_set1_epi32(8);
  size_t i = 0;
  if (n < ((size_t)1 << 31)) {
    for (; i + 8 <= n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      const __m256 gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
      best = _mm256_blendv_ps(best, v, gt);
      bidx = _mm256_blendv_epi8(bidx, idx, _mm256_castps_si256(gt));
      idx = _mm256_add_epi32(idx, step);
    }
  }
  alignas(32) float bv[8];
  alignas(32) int32_t bi[8];
  _mm256_store_ps(bv, best);
  _mm256_store_si256((__m256i*)bi, bidx);
  float bestV = -INFINITY;
  size_t bestI = 0;
  for (int l = 0; l < 8; l++) {
    if (bv[l] > bestV || (bv[l] == bestV && bestV > -INFINITY && (size_t)bi[l] < bestI)) {
      bestV = bv[l];
      bestI = (size_t)bi[l];
    }
  }
  for (; i < n; i++) {
    if (x[i] > bestV) {
      bestV = x[i];
      bestI = i;
    }
  }
  return bestI;
}

// ------------------------------------------------------------------ activation preparation

// See quantize_row_q8_0_split: inverse scale 127 / amax, round to nearest even.
void quantize_q8_split_avx2(int8_t* q, float* d, const float* src, size_t K) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (size_t b = 0; b < K / QK; b++) {
    const float* x = src + b * QK;
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float db = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    d[b] = _cvtsh_ss(_cvtss_sh(db, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));  // F16C: the same RNE as f32_to_fp16
    const __m256 iv = _mm256_set1_ps(id);
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, iv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, iv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, iv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, iv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256((__m256i*)(q + b * QK), _mm256_permutevar8x32_epi32(p, perm));
  }
}

void round_f16_avx2(float* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT)));
  for (; i < n; i++) dst[i] = fp16_to_f32(f32_to_fp16(src[i]));
}

void round_bf16_avx2(float* dst, const float* src, size_t n) {
  size_t i = 0;
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i hi = _mm256_set1_epi32((int)0xffff0000u), qnan = _mm256_set1_epi32(0x400000);
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    const __m256i u = _mm256_castps_si256(v);
    const __m256i r = _mm256_and_si256(
        _mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(_mm256_srli_epi32(u, 16), one)), hi);
    const __m256i nanv = _mm256_and_si256(_mm256_or_si256(u, qnan), hi);
    const __m256 isnan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    _mm256_storeu_ps(dst + i, _mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(nanv), isnan));
  }
  for (; i < n; i++) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
}

// Bandwidth probe: four interleaved streams per call, 256-bit loads.
uint64_t read_sum_avx2(const uint8_t* p, size_t bytes) {
  const size_t q = bytes / 4 / 128 * 128;
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
  for (size_t o = 0; o < q; o += 64) {
    s0 = _mm256_add_epi64(s0, _mm256_add_epi64(_mm256_loadu_si256((const __m256i*)(p + o)),
                                                _mm256_loadu_si256((const __m256i*)(p + o + 32))));
    s1 = _mm256_add_epi64(s1, _mm256_add_epi64(_mm256_loadu_si256((const __m256i*)(p + q + o)),
                                                _mm256_loadu_si256((const __m256i*)(p + q + o + 32))));
    s2 = _mm256_add_epi64(s2, _mm256_add_epi64(_mm256_loadu_si256((const __m256i*)(p + 2 * q + o)),
                                                _mm256_loadu_si256((const __m256i*)(p + 2 * q + o + 32))));
    s3 = _mm256_add_epi64(s3, _mm256_add_epi64(_mm256_loadu_si256((const __m256i*)(p + 3 * q + o)),
                                                _mm256_loadu_si256((const __m256i*)(p + 3 * q + o + 32))));
  }
  alignas(32) uint64_t a[4];
  _mm256_store_si256((__m256i*)a, _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3)));
  uint64_t s = a[0] + a[1] + a[2] + a[3];
  for (size_t o = 4 * q; o + 8 <= bytes; o += 8) { uint64_t v; std::memcpy(&v, p + o, 8); s += v; }
  return s;
}


void to_f16_avx2(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i*)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = f32_to_fp16(src[i]);
}

float dot_f32_avx2(const float* a, const float* b, size_t n) {
  __m256 acc = _mm256_setzero_ps();
  const size_t n8 = n & ~(size_t)7;
  for (size_t i = 0; i < n8; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  alignas(32) float l[8];
  _mm256_store_ps(l, acc);
  for (size_t i = n8; i < n; i++) l[i % 8] = std::fma(a[i], b[i], l[i % 8]);
  return hsum8(l);
}


// Element loads of the dot-row kernels: f32 as is, f16 / bf16 widened exactly.
template <int T, class E>
static inline __m256 load8(const E* p) {
  if constexpr (T == T_F32) return _mm256_loadu_ps((const float*)p);
  else {
    const __m128i h = _mm_loadu_si128((const __m128i*)p);
    if constexpr (T == T_F16) return _mm256_cvtph_ps(h);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <int T, class E>
static inline float load1(const E* p) {
  if constexpr (T == T_F32) return *(const float*)p;
  else if constexpr (T == T_F16) return _cvtsh_ss(*(const uint16_t*)p);
  else return bf16_to_f32(*(const uint16_t*)p);
}

// Software prefetch distances, in elements. Long rows (the LoRA shrink, rows of K) are read as
// eight interleaved streams that each start cold for the hardware prefetcher: each row's line
// kRowAhead on is requested once per line. Short rows (the expand, rows of rank) make one
// contiguous region: its lines kRegionAhead on are requested as each 8-row block starts.
constexpr size_t kRowAhead = 256, kRegionAhead = 2048;

// out[i] = dot_f32(rows + i·n, v, n) for i < count. Eight rows per pass share each load of v;
// per row the lanes, FMAs and final hsum8 are exactly dot_f32_avx2's, so every result is the same
// whichever pass computes it.
template <int T, class E>
static void dot_rows_t(float* out, const E* rows, const float* v, size_t n, size_t count) {
  const size_t n8 = n & ~(size_t)7, total = n * count;
  constexpr size_t kLine = 64 / sizeof(E);
  size_t i = 0;
  if (n8 == n) {
    for (; i + 8 <= count; i += 8) {
      const E* r = rows + i * n;
      if (n < 64)
        for (size_t e = i * n + kRegionAhead; e < (i + 8) * n + kRegionAhead && e < total; e += kLine)
          _mm_prefetch((const char*)(rows + e), _MM_HINT_T0);
      __m256 a[8];
      for (int k = 0; k < 8; k++) a[k] = _mm256_setzero_ps();
      for (size_t j = 0; j < n; j += 8) {
        if (j % kLine == 0 && j + kRowAhead < n)
          for (int k = 0; k < 8; k++) _mm_prefetch((const char*)(r + k * n + j + kRowAhead), _MM_HINT_T0);
        const __m256 vv = _mm256_loadu_ps(v + j);
        for (int k = 0; k < 8; k++) a[k] = _mm256_fmadd_ps(load8<T>(r + k * n + j), vv, a[k]);
      }
      _mm256_storeu_ps(out + i, hsum8x8(a));
    }
  }
  for (; i < count; i++) {
    const E* r = rows + i * n;
    __m256 acc = _mm256_setzero_ps();
    for (size_t j = 0; j < n8; j += 8) acc = _mm256_fmadd_ps(load8<T>(r + j), _mm256_loadu_ps(v + j), acc);
    alignas(32) float l[8];
    _mm256_store_ps(l, acc);
    for (size_t j = n8; j < n; j++) l[j % 8] = std::fma(load1<T>(r + j), v[j], l[j % 8]);
    out[i] = hsum8(l);
  }
}

void dot_rows_f32_avx2(float* out, const float* rows, const float* v, size_t n, size_t count) {
  dot_rows_t<T_F32>(out, rows, v, n, count);
}

void dot_rows_h_avx2(float* out, const uint16_t* rows, const float* v, size_t n, size_t count, int type) {
  if (type == T_BF16) dot_rows_t<T_BF16>(out, rows, v, n, count);
  else dot_rows_t<T_F16>(out, rows, v, n, count);
}

}  // namespace avx2
}  // namespace ol
#endif
