// AVX2 + FMA + F16C kernels. This file is compiled on its own with -mavx2 -mfma -mf16c (see
// binding.gyp); nothing here may run unless cpuFeatures() reports all three. Every kernel follows
// the reduction scheme in common.h exactly, so results equal kernels_ref.cc bit for bit.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "common.h"
#include "kernels_avx2.h"

namespace ol {
namespace {

using avx2::store_hsum;

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

// ------------------------------------------------------------------ Q4_0 (x in Q8_0; 8-lane scheme)
// The WT parameter of the Q4_0 kernels below is always T_Q4_0 (Q8_0 has the block-exact tile_q8).

template <int WT>
static inline __m256i load_wq(const uint8_t* blk) {
  static_assert(WT == T_Q4_0, "Q8_0 products use tile_q8");
  // low nibbles → elements 0..15, high nibbles → 16..31; unsigned 0..15 (the −8 is applied
  // through Σx, see tile_block). The 16 bytes are broadcast to both halves (a load-port op),
  // the upper half shifted right by 4 per 32-bit lane (bits entering from the next byte land in
  // the masked-off high nibble), then masked.
  const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(blk + 2)));
  return _mm256_and_si256(_mm256_srlv_epi32(t, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0f));
}

static inline float load_d(const uint8_t* blk) {
  uint16_t h; std::memcpy(&h, blk, 2);
  return _cvtsh_ss(h);
}

template <int WT, int RM, int RN>
static inline void tile_block(float* out, size_t ldo, const int8_t* xq, const float* xd, size_t K,
                              const uint8_t* w, size_t rb, const int32_t* x8pre = nullptr) {
  constexpr size_t BB = Q4_BYTES;
  constexpr bool PF = RM == 1 && RN == 4;
  const uint8_t* next = w + RN * rb;
  const size_t nb = K / QK;
  __m256 acc[RM][RN];
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t b = 0; b < nb; b++) {
    if constexpr (PF) prefetch_range(next + b * BB * RN, BB * RN);
    __m256i wq[RN];
    float dw[RN];
    for (int j = 0; j < RN; j++) {
      const uint8_t* blk = w + j * rb + b * BB;
      wq[j] = load_wq<WT>(blk);
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
      const __m256i x8 =
          x8pre ? _mm256_loadu_si256((const __m256i*)(x8pre + b * 8))
                : _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), ones), 3);
      for (int j = 0; j < 4; j++) {
        const __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq[j], xv), ones), x8);
        acc[0][j] = _mm256_fmadd_ps(dj[j], _mm256_cvtepi32_ps(s32), acc[0][j]);
      }
      continue;
    }
    for (int i = 0; i < RM; i++) {
      const __m256i xv = _mm256_loadu_si256((const __m256i*)(xq + i * K + b * QK));
      const float dx = xd[i * nb + b];
      // Σ x·(q − 8) = Σ x·q − 8·Σ x per lane of 4, all exact in int32.
      const __m256i x8 = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), ones), 3);
      for (int j = 0; j < RN; j++) {
        const __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq[j], xv), ones), x8);
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dw[j]), _mm256_cvtepi32_ps(s32), acc[i][j]);
      }
    }
  }
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) store_hsum(out + i * ldo + j, acc[i][j]);
}

// M > 1 tile with the per-block scales dx·dw (the scheme's f32 products) formed up front,
// vectorised over blocks, from the weight scales in f32 (dwf: RN rows of nb, converted once per
// row group): the block loop then broadcasts them from memory, and each (row, weight row, block)
// costs sign, maddubs, madd, convert and FMA. sc: scratch of RM·RN·nb floats.
constexpr size_t kMaxScaleBlocks = 256;

template <int WT, int RM, int RN>
static inline void tile_block_mr(float* out, size_t ldo, const int8_t* xq, const float* xd, size_t K,
                                 const uint8_t* w, size_t rb, const float* __restrict dwf, float* __restrict sc,
                                 PrefetchFeed& pf) {
  constexpr size_t BB = Q4_BYTES;
  const size_t nb = K / QK, nb8 = nb & ~(size_t)7;
  for (int i = 0; i < RM; i++) {
    for (int j = 0; j < RN; j++) {
      float* o = sc + (i * RN + j) * nb;
      const float *a = xd + i * nb, *d = dwf + j * nb;
      size_t b = 0;
      for (; b < nb8; b += 8) _mm256_storeu_ps(o + b, _mm256_mul_ps(_mm256_loadu_ps(a + b), _mm256_loadu_ps(d + b)));
      for (; b < nb; b++) o[b] = a[b] * d[b];
    }
  }
  __m256 acc[RM][RN];
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  PrefetchCursor pfc(pf);
  for (size_t b = 0; b < nb; b++) {
    pfc.step();
    __m256i wq[RN];
    for (int j = 0; j < RN; j++) wq[j] = load_wq<WT>(w + j * rb + b * BB);
    for (int i = 0; i < RM; i++) {
      const __m256i xv = _mm256_loadu_si256((const __m256i*)(xq + i * K + b * QK));
      const __m256i x8 = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), ones), 3);
      for (int j = 0; j < RN; j++) {
        const __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq[j], xv), ones), x8);
        acc[i][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(sc + (i * RN + j) * nb + b), _mm256_cvtepi32_ps(s32), acc[i][j]);
      }
    }
  }
  pfc.save(pf);
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) store_hsum(out + i * ldo + j, acc[i][j]);
}

// Q8_0 (one accumulator per output, see common.h). Per block and activation row, the RN weight
// rows' 8-lane partial sums (|w|·sign(x, w) through maddubs/madd, exact) are folded by three hadds
// and one 128-bit add into one xmm whose lane j is the exact block sum against weight row j; one
// FMA by dx·dw (the four f32 products in one multiply) then updates lane j of acc[i]. RN ≤ 4; the
// lanes of missing weight rows see zero sums and are not stored. `next`: the following tile's rows
// to prefetch (M = 1 decode, where short rows defeat the hardware prefetcher), or null.
template <int RM, int RN>
static inline void tile_q8(float* out, size_t ldo, const int8_t* xq, const float* xd, size_t K, const uint8_t* w,
                           size_t rb, const uint8_t* next) {
  static_assert(RN >= 1 && RN <= 4, "at most four weight rows per xmm");
  const size_t nb = K / QK;
  __m128 acc[RM];
  for (int i = 0; i < RM; i++) acc[i] = _mm_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  PrefetchCursor pfc(t_prefetch);
  for (size_t b = 0; b < nb; b++) {
    pfc.step();
    if (next) prefetch_range(next + b * Q8_BYTES * RN, Q8_BYTES * RN);
    __m256i aw[RN], wq[RN];
    uint16_t h[4] = {0, 0, 0, 0};
    for (int j = 0; j < RN; j++) {
      const uint8_t* blk = w + j * rb + b * Q8_BYTES;
      wq[j] = _mm256_loadu_si256((const __m256i*)(blk + 2));
      aw[j] = _mm256_sign_epi8(wq[j], wq[j]);
      std::memcpy(&h[j], blk, 2);
    }
    const uint64_t packed = (uint64_t)h[0] | ((uint64_t)h[1] << 16) | ((uint64_t)h[2] << 32) | ((uint64_t)h[3] << 48);
    const __m128 dw = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)packed));
    for (int i = 0; i < RM; i++) {
      const __m256i xv = _mm256_loadu_si256((const __m256i*)(xq + i * K + b * QK));
      __m256i s[4];
      for (int j = 0; j < 4; j++)
        s[j] = j < RN ? _mm256_madd_epi16(_mm256_maddubs_epi16(aw[j], _mm256_sign_epi8(xv, wq[j])), ones)
                      : _mm256_setzero_si256();
      const __m256i h4 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
      const __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(h4), _mm256_extracti128_si256(h4, 1));
      const __m128 d = _mm_mul_ps(_mm_set1_ps(xd[i * nb + b]), dw);
      acc[i] = _mm_fmadd_ps(d, _mm_cvtepi32_ps(sum), acc[i]);
    }
  }
  pfc.save(t_prefetch);
  for (int i = 0; i < RM; i++) {
    if constexpr (RN == 4) {
      _mm_storeu_ps(out + i * ldo, acc[i]);
    } else {
      alignas(16) float a[4];
      _mm_store_ps(a, acc[i]);
      for (int j = 0; j < RN; j++) out[i * ldo + j] = a[j];
    }
  }
}

// ------------------------------------------------------------------ K-quant dot types (x in Q8_K)

// One weight row against RM activation rows; see the K-quant scheme in common.h. Per super-block,
// each 32-element chunk t is unpacked once (unsigned quants in element order plus a vector of its
// int16 scales), then for each activation row maddubs → madd(scale) gives lane j = elements
// 4j..4j+3 of the chunk, summed over the 8 chunks in int32 (exact).
template <int WT, int RM>
static inline void tile_kquant(float* out, size_t ldo, const int8_t* xq, const float* xd, const int16_t* xbs, size_t K,
                               const uint8_t* w, const uint8_t* pf) {
  constexpr size_t BB = WT == T_Q4_K ? Q4K_BYTES : Q6K_BYTES;
  const size_t nb = K / QK_K;
  __m256 acc[RM];
  for (int i = 0; i < RM; i++) acc[i] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (size_t b = 0; b < nb; b++) {
    const uint8_t* blk = w + b * BB;
    if (pf) prefetch_range(pf + b * BB, BB);
    __m256i isum[RM];
    for (int i = 0; i < RM; i++) isum[i] = _mm256_setzero_si256();
    float d, dmin = 0.0f;
    __m256i mins32 = _mm256_setzero_si256();
    if constexpr (WT == T_Q4_K) {
      uint16_t h0, h1; std::memcpy(&h0, blk, 2); std::memcpy(&h1, blk + 2, 2);
      d = _cvtsh_ss(h0);
      dmin = _cvtsh_ss(h1);
      // 12 packed bytes → bytes 0..7 scales, 8..15 mins (the same bits as q4k_scales_mins).
      uint32_t u[4];
      std::memcpy(u, blk + 4, 12);
      const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
      u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
      const uint32_t aux = u[1] & k1;
      u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
      u[2] = aux;
      u[0] &= k1;
      const __m128i v = _mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]);
      mins32 = _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8));
      const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(v));  // 8 int16 scales, both halves
      const uint8_t* qs = blk + 16;
      for (int c = 0; c < 4; c++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i*)(qs + 32 * c));
        const __m256i q0 = _mm256_and_si256(raw, m4), q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        const __m256i s0 = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(((4 * c + 1) << 8) | (4 * c))));
        const __m256i s1 = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(((4 * c + 3) << 8) | (4 * c + 2))));
        for (int i = 0; i < RM; i++) {
          const int8_t* xb = xq + i * K + b * QK_K + 64 * c;
          const __m256i x0 = _mm256_loadu_si256((const __m256i*)xb), x1 = _mm256_loadu_si256((const __m256i*)(xb + 32));
          const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, x0), s0);
          const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, x1), s1);
          isum[i] = _mm256_add_epi32(isum[i], _mm256_add_epi32(p0, p1));
        }
      }
    } else {
      uint16_t h; std::memcpy(&h, blk + 208, 2);
      d = _cvtsh_ss(h);
      const __m128i sc8 = _mm_loadu_si128((const __m128i*)(blk + 192));
      const __m256i m30 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
      for (int n = 0; n < 2; n++) {
        const __m256i ql0 = _mm256_loadu_si256((const __m256i*)(blk + 64 * n));
        const __m256i ql1 = _mm256_loadu_si256((const __m256i*)(blk + 64 * n + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i*)(blk + 128 + 32 * n));
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
        q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
        for (int r = 0; r < 4; r++) {
          const int t = 4 * n + r;  // chunk: sub-blocks 2t (lanes 0..3) and 2t+1 (lanes 4..7)
          const __m128i sel = _mm_unpacklo_epi64(_mm_set1_epi8((char)(2 * t)), _mm_set1_epi8((char)(2 * t + 1)));
          const __m256i st = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, sel));
          for (int i = 0; i < RM; i++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i*)(xq + i * K + b * QK_K + 32 * t));
            // Σ (q − 32)·x per pair = maddubs(q, x) − maddubs(32, x), exact in int16.
            const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[r], xv), _mm256_maddubs_epi16(k32, xv));
            isum[i] = _mm256_add_epi32(isum[i], _mm256_madd_epi16(p, st));
          }
        }
      }
    }
    for (int i = 0; i < RM; i++) {
      const float dx = xd[i * nb + b];
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dx * d), _mm256_cvtepi32_ps(isum[i]), acc[i]);
      if constexpr (WT == T_Q4_K) {
        const __m256i bs = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i*)(xbs + i * (K / 32) + b * 8)));
        const __m256i mn = _mm256_mullo_epi32(mins32, bs);
        acc[i] = _mm256_fnmadd_ps(_mm256_set1_ps(dx * dmin), _mm256_cvtepi32_ps(mn), acc[i]);
      }
    }
  }
  for (int i = 0; i < RM; i++) store_hsum(out + i * ldo, acc[i]);
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

// Q8_0: weight rows in L2-sized groups; within a group, 4-row activation tiles sweep the group's
// weight rows four at a time.
static void range_q8(float* out, const PreparedX& x, const uint8_t* w, size_t N, size_t n0, size_t n1) {
  const size_t K = x.K, M = x.M, rb = row_bytes(T_Q8_0, K), nb = K / QK;
  if (M == 1) {
    size_t n = n0;
    for (; n + 4 <= n1; n += 4) tile_q8<1, 4>(out + n, N, x.q, x.d, K, w + n * rb, rb, w + (n + 4) * rb);
    for (; n < n1; n++) tile_q8<1, 1>(out + n, N, x.q, x.d, K, w + n * rb, rb, nullptr);
    return;
  }
  const size_t group = std::max<size_t>(4, (kL2Budget / rb) & ~(size_t)3);
  for (size_t g0 = n0; g0 < n1; g0 += group) {
    const size_t g1 = std::min(n1, g0 + group);
    for (size_t m = 0; m < M; m += 4) {
      const int rm = (int)std::min<size_t>(4, M - m);
      const int8_t* xq = x.q + m * K;
      const float* xd = x.d + m * nb;
      for (size_t n = g0; n < g1; n += 4) {
        float* o = out + m * N + n;
        const uint8_t* wn = w + n * rb;
        if (n + 4 <= g1) {
          switch (rm) {
            case 4: tile_q8<4, 4>(o, N, xq, xd, K, wn, rb, nullptr); break;
            case 3: tile_q8<3, 4>(o, N, xq, xd, K, wn, rb, nullptr); break;
            case 2: tile_q8<2, 4>(o, N, xq, xd, K, wn, rb, nullptr); break;
            default: tile_q8<1, 4>(o, N, xq, xd, K, wn, rb, nullptr); break;
          }
        } else {
          for (size_t j = n; j < g1; j++) {
            switch (rm) {
              case 4: tile_q8<4, 1>(o + (j - n), N, xq, xd, K, wn + (j - n) * rb, rb, nullptr); break;
              case 3: tile_q8<3, 1>(o + (j - n), N, xq, xd, K, wn + (j - n) * rb, rb, nullptr); break;
              case 2: tile_q8<2, 1>(o + (j - n), N, xq, xd, K, wn + (j - n) * rb, rb, nullptr); break;
              default: tile_q8<1, 1>(o + (j - n), N, xq, xd, K, wn + (j - n) * rb, rb, nullptr); break;
            }
          }
        }
      }
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
  // With nb <= kMaxScaleBlocks, 4 × 2 tiles take their scales from dwf (the group's weight scales
  // in f32) and sc (see tile_block_mr); the group then also fits dwf.
  constexpr size_t BB = Q4_BYTES, kScaleFloats = 8192;
  alignas(32) float dwf[kScaleFloats];
  alignas(32) float sc[4 * 2 * kMaxScaleBlocks];
  const bool pre = nb <= kMaxScaleBlocks;
  PrefetchFeed& pf = t_prefetch;
  const size_t pgroup = pre ? std::max<size_t>(2, std::min(group, (kScaleFloats / nb) & ~(size_t)1)) : group;
  for (size_t g0 = n0; g0 < n1; g0 += pgroup) {
    const size_t g1 = std::min(n1, g0 + pgroup);
    if (pre)
      for (size_t n = g0; n < g1; n++)
        for (size_t b = 0; b < nb; b++) dwf[(n - g0) * nb + b] = load_d(w + n * rb + b * BB);
    size_t m = 0;
    for (; m + 4 <= M; m += 4) {
      size_t n = g0;
      for (; n + 2 <= g1; n += 2) {
        if (pre) tile_block_mr<WT, 4, 2>(out + m * N + n, N, x.q + m * K, x.d + m * nb, K, w + n * rb, rb, dwf + (n - g0) * nb, sc, pf);
        else tile_block<WT, 4, 2>(out + m * N + n, N, x.q + m * K, x.d + m * nb, K, w + n * rb, rb);
      }
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

template <int WT>
static void range_kquant(float* out, const PreparedX& x, const uint8_t* w, size_t N, size_t n0, size_t n1) {
  const size_t K = x.K, M = x.M, rb = row_bytes(WT, K), nbk = K / QK_K, nb32 = K / 32;
  if (M == 1) {
    // Decode: one weight row at a time, prefetching the row 4 ahead (short rows defeat the
    // hardware prefetcher).
    for (size_t n = n0; n < n1; n++)
      tile_kquant<WT, 1>(out + n, N, x.q, x.d, x.bs, K, w + n * rb, n + 4 < n1 ? w + (n + 4) * rb : nullptr);
    return;
  }
  // Weight rows in L2-sized groups; each weight block is unpacked once per 4 activation rows.
  const size_t group = std::max<size_t>(1, kL2Budget / rb);
  for (size_t g0 = n0; g0 < n1; g0 += group) {
    const size_t g1 = std::min(n1, g0 + group);
    size_t m = 0;
    for (; m + 4 <= M; m += 4)
      for (size_t n = g0; n < g1; n++)
        tile_kquant<WT, 4>(out + m * N + n, N, x.q + m * K, x.d + m * nbk, x.bs + m * nb32, K, w + n * rb, nullptr);
    if (m < M) {
      for (size_t n = g0; n < g1; n++) {
        const size_t o = m * N + n;
        switch (M - m) {
          case 3: tile_kquant<WT, 3>(out + o, N, x.q + m * K, x.d + m * nbk, x.bs + m * nb32, K, w + n * rb, nullptr); break;
          case 2: tile_kquant<WT, 2>(out + o, N, x.q + m * K, x.d + m * nbk, x.bs + m * nb32, K, w + n * rb, nullptr); break;
          case 1: tile_kquant<WT, 1>(out + o, N, x.q + m * K, x.d + m * nbk, x.bs + m * nb32, K, w + n * rb, nullptr); break;
        }
      }
    }
  }
}

}  // namespace

using namespace avx2;

void avx2::matmul_range_avx2(float* out, const PreparedX& x, const uint8_t* w, int wType, size_t N,
                              size_t n0, size_t n1) {
  switch (wType) {
    case T_F32: range_float<T_F32>(out, x, w, N, n0, n1); break;
    case T_F16: range_float<T_F16>(out, x, w, N, n0, n1); break;
    case T_BF16: range_float<T_BF16>(out, x, w, N, n0, n1); break;
    case T_Q8_0: range_q8(out, x, w, N, n0, n1); break;
    case T_Q4_0: range_block<T_Q4_0>(out, x, w, N, n0, n1); break;
    case T_Q4_K: range_kquant<T_Q4_K>(out, x, w, N, n0, n1); break;
    case T_Q6_K: range_kquant<T_Q6_K>(out, x, w, N, n0, n1); break;
  }
}

const KernelTable kAvx2Kernels = {"avx2", matmul_range_avx2, OL_AVX2_TABLE_REST};

}  // namespace ol

#else  // not an x86 build with AVX2 flags: an empty table the addon never selects.
#include "common.h"
namespace ol {
const KernelTable kAvx2Kernels = {"avx2-unavailable", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
}  // namespace ol
#endif
