// AVX2 + FMA + F16C kernels. This file is compiled on its own with -mavx2 -mfma -mf16c (see
// binding.gyp); nothing here may run unless cpuFeatures() reports all three. Every kernel follows
// the reduction scheme in common.h exactly, so results equal kernels_ref.cc bit for bit.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "common.h"

namespace ol {
namespace {

static inline void store_hsum(float* dst, __m256 acc) {
  // ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)), the same order as hsum8.
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  *dst = _mm_cvtss_f32(lo);
}

// ------------------------------------------------------------------ float dot types

template <int WT>
static inline __m256 load_w8(const uint8_t* row, size_t k) {
  if constexpr (WT == T_F32) {
    return _mm256_loadu_ps((const float*)row + k);
  } else if constexpr (WT == T_F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + 2 * k)));
  } else {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(row + 2 * k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
}

template <int WT>
static inline float load_w1(const uint8_t* row, size_t k) {
  if constexpr (WT == T_F32) {
    float f; std::memcpy(&f, row + 4 * k, 4); return f;
  } else {
    uint16_t h; std::memcpy(&h, row + 2 * k, 2);
    return WT == T_F16 ? fp16_to_f32(h) : bf16_to_f32(h);
  }
}

// out[i * ldo + j] = dot(x row i, w row j) for i < RM, j < RN.
// Software prefetch of the next tile's weight rows (contiguous after this tile's), spread over
// this tile's iterations: for M = 1 the rows are short streams the hardware prefetcher ramps up
// on too late. `step` = bytes of the next tile to prefetch per iteration.
static inline void prefetch_range(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char*)(p + o), _MM_HINT_T0);
}

template <int WT, int RM, int RN>
static inline void tile_float(float* out, size_t ldo, const float* x, size_t K, const uint8_t* w, size_t rb) {
  constexpr bool PF = RM == 1 && RN == 4 && WT != T_F32;  // F32 rows are long enough for the HW prefetcher
  constexpr size_t ESZ = WT == T_F32 ? 4 : 2;
  const uint8_t* next = w + RN * rb;
  __m256 acc[RM][RN];
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
  const size_t K8 = K & ~(size_t)7;
  for (size_t k = 0; k < K8; k += 8) {
    if constexpr (PF) prefetch_range(next + k * ESZ * RN, 8 * ESZ * RN);
    __m256 wv[RN];
    for (int j = 0; j < RN; j++) wv[j] = load_w8<WT>(w + j * rb, k);
    for (int i = 0; i < RM; i++) {
      __m256 xv = _mm256_loadu_ps(x + i * K + k);
      if constexpr (RN > 1) __asm__("" : "+x"(xv));  // load once into a register, not once per FMA
      for (int j = 0; j < RN; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < RM; i++) {
    for (int j = 0; j < RN; j++) {
      if (K8 == K) {
        store_hsum(out + i * ldo + j, acc[i][j]);
      } else {
        alignas(32) float a[8];
        _mm256_store_ps(a, acc[i][j]);
        for (size_t k = K8; k < K; k++) a[k % 8] = std::fma(x[i * K + k], load_w1<WT>(w + j * rb, k), a[k % 8]);
        out[i * ldo + j] = hsum8(a);
      }
    }
  }
}

// ------------------------------------------------------------------ block dot types (x in Q8_0)

template <int WT>
static inline __m256i load_wq(const uint8_t* blk) {
  if constexpr (WT == T_Q8_0) {
    return _mm256_loadu_si256((const __m256i*)(blk + 2));
  } else {
    // low nibbles → elements 0..15, high nibbles → 16..31; unsigned 0..15 (the −8 is applied
    // through Σx, see tile_block). The 16 bytes are broadcast to both halves (a load-port op),
    // the upper half shifted right by 4 per 32-bit lane (bits entering from the next byte land in
    // the masked-off high nibble), then masked.
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(blk + 2)));
    return _mm256_and_si256(_mm256_srlv_epi32(t, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0f));
  }
}

static inline float load_d(const uint8_t* blk) {
  uint16_t h; std::memcpy(&h, blk, 2);
  return _cvtsh_ss(h);
}

template <int WT, int RM, int RN>
static inline void tile_block(float* out, size_t ldo, const int8_t* xq, const float* xd, size_t K,
                              const uint8_t* w, size_t rb, const int32_t* x8pre = nullptr) {
  constexpr size_t BB = WT == T_Q8_0 ? Q8_BYTES : Q4_BYTES;
  constexpr bool PF = RM == 1 && RN == 4;
  const uint8_t* next = w + RN * rb;
  const size_t nb = K / QK;
  __m256 acc[RM][RN];
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t b = 0; b < nb; b++) {
    if constexpr (PF) prefetch_range(next + b * BB * RN, BB * RN);
    __m256i aw[RN], wq[RN];
    float dw[RN];
    for (int j = 0; j < RN; j++) {
      const uint8_t* blk = w + j * rb + b * BB;
      wq[j] = load_wq<WT>(blk);
      if constexpr (WT == T_Q8_0) aw[j] = _mm256_sign_epi8(wq[j], wq[j]);
      if constexpr (!(RM == 1 && RN == 4)) dw[j] = load_d(blk);
    }
    if constexpr (RM == 1 && RN == 4) {
      // M = 1 decode: convert the four weight scales at once and form dx·dw[j] in one multiply
      // (the same f32 products as the scalar path), then broadcast lane j with an in-lane permute.
      const __m256i xv = _mm256_loadu_si256((const __m256i*)(xq + b * QK));
      uint16_t h[4];
      for (int j = 0; j < 4; j++) std::memcpy(&h[j], w + j * rb + b * BB, 2);
      uint64_t packed = (uint64_t)h[0] | ((uint64_t)h[1] << 16) | ((uint64_t)h[2] << 32) | ((uint64_t)h[3] << 48);
      const __m128 d4 = _mm_mul_ps(_mm_set1_ps(xd[b]), _mm_cvtph_ps(_mm_cvtsi64_si128((long long)packed)));
      const __m256 dd = _mm256_set_m128(d4, d4);
      __m256 dj[4] = {_mm256_permute_ps(dd, 0x00), _mm256_permute_ps(dd, 0x55), _mm256_permute_ps(dd, 0xaa),
                      _mm256_permute_ps(dd, 0xff)};
      if constexpr (WT == T_Q8_0) {
        for (int j = 0; j < 4; j++) {
          const __m256i sx = _mm256_sign_epi8(xv, wq[j]);
          const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[j], sx), ones);
          acc[0][j] = _mm256_fmadd_ps(dj[j], _mm256_cvtepi32_ps(s32), acc[0][j]);
        }
      } else {
        const __m256i x8 =
            x8pre ? _mm256_loadu_si256((const __m256i*)(x8pre + b * 8))
                  : _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), ones), 3);
        for (int j = 0; j < 4; j++) {
          const __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq[j], xv), ones), x8);
          acc[0][j] = _mm256_fmadd_ps(dj[j], _mm256_cvtepi32_ps(s32), acc[0][j]);
        }
      }
      continue;
    }
    for (int i = 0; i < RM; i++) {
      const __m256i xv = _mm256_loadu_si256((const __m256i*)(xq + i * K + b * QK));
      const float dx = xd[i * nb + b];
      if constexpr (WT == T_Q8_0) {
        // |w| · sign(x, w): maddubs needs one unsigned operand (|x| <= 127, so no saturation).
        for (int j = 0; j < RN; j++) {
          const __m256i sx = _mm256_sign_epi8(xv, wq[j]);
          const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[j], sx), ones);
          acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dw[j]), _mm256_cvtepi32_ps(s32), acc[i][j]);
        }
      } else {
        // Σ x·(q − 8) = Σ x·q − 8·Σ x per lane of 4, all exact in int32.
        const __m256i x8 = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), ones), 3);
        for (int j = 0; j < RN; j++) {
          const __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq[j], xv), ones), x8);
          acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dw[j]), _mm256_cvtepi32_ps(s32), acc[i][j]);
        }
      }
    }
  }
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) store_hsum(out + i * ldo + j, acc[i][j]);
}

// ------------------------------------------------------------------ range drivers

constexpr size_t kL2Budget = 192 * 1024;  // bytes of weight rows swept per activation tile

template <int WT>
static void range_float(float* out, const PreparedX& x, const uint8_t* w, size_t N, size_t n0, size_t n1) {
  const size_t K = x.K, M = x.M, rb = row_bytes(WT, K);
  if (M == 1) {
    size_t n = n0;
    for (; n + 4 <= n1; n += 4) tile_float<WT, 1, 4>(out + n, N, x.f, K, w + n * rb, rb);
    for (; n < n1; n++) tile_float<WT, 1, 1>(out + n, N, x.f, K, w + n * rb, rb);
    return;
  }
  // Weight rows in L2-sized groups; within a group, each 4-row activation tile (L1) sweeps the
  // group's weight rows in pairs.
  const size_t group = std::max<size_t>(2, (kL2Budget / rb) & ~(size_t)1);
  for (size_t g0 = n0; g0 < n1; g0 += group) {
    const size_t g1 = std::min(n1, g0 + group);
    size_t m = 0;
    for (; m + 4 <= M; m += 4) {
      size_t n = g0;
      for (; n + 2 <= g1; n += 2) tile_float<WT, 4, 2>(out + m * N + n, N, x.f + m * K, K, w + n * rb, rb);
      if (n < g1) tile_float<WT, 4, 1>(out + m * N + n, N, x.f + m * K, K, w + n * rb, rb);
    }
    if (m < M) {
      size_t n = g0;
      for (; n + 2 <= g1; n += 2) {
        switch (M - m) {
          case 3: tile_float<WT, 3, 2>(out + m * N + n, N, x.f + m * K, K, w + n * rb, rb); break;
          case 2: tile_float<WT, 2, 2>(out + m * N + n, N, x.f + m * K, K, w + n * rb, rb); break;
          case 1: tile_float<WT, 1, 2>(out + m * N + n, N, x.f + m * K, K, w + n * rb, rb); break;
        }
      }
      if (n < g1)
        for (size_t mm = m; mm < M; mm++) tile_float<WT, 1, 1>(out + mm * N + n, N, x.f + mm * K, K, w + n * rb, rb);
    }
  }
}

template <int WT>
static void range_block(float* out, const PreparedX& x, const uint8_t* w, size_t N, size_t n0, size_t n1) {
  const size_t K = x.K, M = x.M, rb = row_bytes(WT, K), nb = K / QK;
  if (M == 1) {
    // Q4_0: 8·Σx per lane of each x block, computed once per task instead of once per tile
    // (on the stack up to K = 32768; beyond, tile_block computes it per tile). No std
    // containers in this file: their template instances would be compiled with AVX2 and could
    // be picked by the linker for the non-AVX2 code too.
    constexpr size_t kMaxPre = 1024;
    alignas(32) int32_t x8buf[WT == T_Q4_0 ? kMaxPre * 8 : 8];
    const int32_t* x8 = nullptr;
    if constexpr (WT == T_Q4_0) {
      if (nb <= kMaxPre) {
        const __m256i ones = _mm256_set1_epi16(1);
        for (size_t b = 0; b < nb; b++) {
          const __m256i xv = _mm256_loadu_si256((const __m256i*)(x.q + b * QK));
          const __m256i v = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), ones), 3);
          _mm256_store_si256((__m256i*)(x8buf + b * 8), v);
        }
        x8 = x8buf;
      }
    }
    size_t n = n0;
    for (; n + 4 <= n1; n += 4) tile_block<WT, 1, 4>(out + n, N, x.q, x.d, K, w + n * rb, rb, x8);
    for (; n < n1; n++) tile_block<WT, 1, 1>(out + n, N, x.q, x.d, K, w + n * rb, rb);
    return;
  }
  const size_t group = std::max<size_t>(2, (kL2Budget / rb) & ~(size_t)1);
  for (size_t g0 = n0; g0 < n1; g0 += group) {
    const size_t g1 = std::min(n1, g0 + group);
    size_t m = 0;
    for (; m + 4 <= M; m += 4) {
      size_t n = g0;
      for (; n + 2 <= g1; n += 2)
        tile_block<WT, 4, 2>(out + m * N + n, N, x.q + m * K, x.d + m * nb, K, w + n * rb, rb);
      if (n < g1) tile_block<WT, 4, 1>(out + m * N + n, N, x.q + m * K, x.d + m * nb, K, w + n * rb, rb);
    }
    if (m < M) {
      size_t n = g0;
      for (; n + 2 <= g1; n += 2) {
        switch (M - m) {
          case 3: tile_block<WT, 3, 2>(out + m * N + n, N, x.q + m * K, x.d + m * nb, K, w + n * rb, rb); break;
          case 2: tile_block<WT, 2, 2>(out + m * N + n, N, x.q + m * K, x.d + m * nb, K, w + n * rb, rb); break;
          case 1: tile_block<WT, 1, 2>(out + m * N + n, N, x.q + m * K, x.d + m * nb, K, w + n * rb, rb); break;
        }
      }
      if (n < g1)
        for (size_t mm = m; mm < M; mm++)
          tile_block<WT, 1, 1>(out + mm * N + n, N, x.q + mm * K, x.d + mm * nb, K, w + n * rb, rb);
    }
  }
}

static void matmul_range_avx2(float* out, const PreparedX& x, const uint8_t* w, int wType, size_t N,
                              size_t n0, size_t n1) {
  switch (wType) {
    case T_F32: range_float<T_F32>(out, x, w, N, n0, n1); break;
    case T_F16: range_float<T_F16>(out, x, w, N, n0, n1); break;
    case T_BF16: range_float<T_BF16>(out, x, w, N, n0, n1); break;
    case T_Q8_0: range_block<T_Q8_0>(out, x, w, N, n0, n1); break;
    case T_Q4_0: range_block<T_Q4_0>(out, x, w, N, n0, n1); break;
  }
}

// ------------------------------------------------------------------ attention

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

static void round_f16_avx2(float* dst, const float* src, size_t n);

static void attn_task_avx2(const AttnArgs& a, int t, int h, float* scores) {
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
  for (; p + 4 <= pos + 1; p += 4) dot_q_k4(scores + p, q, kptr(p), kptr(p + 1), kptr(p + 2), kptr(p + 3), D);
  for (; p <= pos; p++) scores[p] = dot_q_k(q, kptr(p), D);
  float mx = -INFINITY;
  for (p = 0; p <= pos; p++) {
    scores[p] = scores[p] * a.scale;
    mx = std::max(mx, scores[p]);
  }
  float sum = 0.0f;
  for (p = 0; p <= pos; p++) {
    scores[p] = std::exp(scores[p] - mx);
    sum += scores[p];
  }
  const float inv = 1.0f / sum;
  for (p = 0; p <= pos; p++) scores[p] = scores[p] * inv;
  round_f16_avx2(scores, scores, (size_t)pos + 1);
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

static void rms_norm_row_avx2(float* out, const float* x, const float* w, size_t dim, float eps) {
  const size_t D8 = dim & ~(size_t)7;
  const float scale = rms_scale(x, dim, eps);
  const __m256 sv = _mm256_set1_ps(scale);
  for (size_t i = 0; i < D8; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
  for (size_t i = D8; i < dim; i++) out[i] = (x[i] * scale) * w[i];
}

// ------------------------------------------------------------------ activation preparation

// See quantize_row_q8_0_split: inverse scale 127 / amax, round to nearest even.
static void quantize_q8_split_avx2(int8_t* q, float* d, const float* src, size_t K) {
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
    d[b] = fp16_to_f32(f32_to_fp16(db));
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

static void round_f16_avx2(float* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT)));
  for (; i < n; i++) dst[i] = fp16_to_f32(f32_to_fp16(src[i]));
}

static void round_bf16_avx2(float* dst, const float* src, size_t n) {
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
static uint64_t read_sum_avx2(const uint8_t* p, size_t bytes) {
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

}  // namespace

static void to_f16_avx2(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i*)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = f32_to_fp16(src[i]);
}

const KernelTable kAvx2Kernels = {"avx2",         matmul_range_avx2, attn_task_avx2, rms_norm_row_avx2,
                                  quantize_q8_split_avx2, round_f16_avx2, round_bf16_avx2, read_sum_avx2,
                                  to_f16_avx2};

}  // namespace ol

#else  // not an x86 build with AVX2 flags: an empty table the addon never selects.
#include "common.h"
namespace ol {
const KernelTable kAvx2Kernels = {"avx2-unavailable", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
}  // namespace ol
#endif
