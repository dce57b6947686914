// AVX-512 VNNI kernel for the batched (M > 1) Q4_0 products; every other entry of the table is the
// AVX2 one (batched Q8_0 included: its block-exact scheme is the AVX2 tile_q8's, or AMX's in the amx
// table). The WT template parameter below is always T_Q4_0. Compiled on its own with the AVX-512 flags (see binding.gyp); the addon
// selects this table only when the CPU reports AVX-512 F/BW/VL/VNNI besides AVX2/FMA/F16C.
//
// Same reduction scheme as common.h, so the same bits as the reference and AVX2 kernels: a zmm
// holds the 8 lane accumulators of TWO activation rows against one weight row (lanes 0-7: row 2p,
// lanes 8-15: row 2p+1). Per block, vpdpbusd forms the exact integer Σ of 4 products per lane in
// one instruction, then the lanes get their FMA by dx·dw as the scheme says.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__FMA__) && defined(__F16C__)
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* helpers
// (GCC bug 105593, fixed in GCC 13); nothing in this file reads an uninitialised value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdlib>

#include "common.h"
#include "kernels_avx2.h"

namespace ol {
namespace {

// No std templates in this file (see native/README.md): their instances would carry AVX-512 code.
static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

// Activations rearranged in row pairs, per pair p and block b (a trailing odd row is paired with a
// zero row whose outputs are never stored):
//   xb[(p·nb + b)·64 ..]: row 2p's 32 bytes of block b, then row 2p+1's: x itself (the weight
//     nibbles 0..15 are vpdpbusd's unsigned operand; 8·Σx is subtracted).
//   dx[(p·nb + b)·16 ..]: the two rows' block scales, each repeated over its 8 lanes.
//   x8[(p·nb + b)·16 ..]: 8·Σ x over each lane's 4 elements, as int32.
struct PairedX {
  const uint8_t* xb;
  const float* dx;
  const int32_t* x8;
};

struct Scratch {
  void* p;
  size_t cap;
};
thread_local Scratch t_scratch = {nullptr, 0};

// Per-thread buffer, grown as needed and kept (pool threads live as long as the addon).
static void* scratch(size_t bytes) {
  if (bytes > t_scratch.cap) {
    std::free(t_scratch.p);
    const size_t cap = (bytes + 4095) & ~(size_t)4095;
    t_scratch.p = std::aligned_alloc(64, cap);
    t_scratch.cap = t_scratch.p ? cap : 0;
  }
  return t_scratch.p;
}

template <int WT>
static bool pair_rows(PairedX& px, const PreparedX& x) {
  const size_t M = x.M, K = x.K, nb = K / QK, P = (M + 1) / 2;
  static_assert(WT == T_Q4_0, "Q8_0 products use the block-exact kernels");
  const size_t xbBytes = P * nb * 64, dxBytes = P * nb * 64, x8Bytes = P * nb * 64;
  uint8_t* base = (uint8_t*)scratch(xbBytes + dxBytes + x8Bytes);
  if (!base) return false;
  uint8_t* xb = base;
  float* dx = (float*)(base + xbBytes);
  int32_t* x8 = (int32_t*)(base + xbBytes + dxBytes);
  const __m256i ones8 = _mm256_set1_epi8(1);
  for (size_t p = 0; p < P; p++) {
    for (int h = 0; h < 2; h++) {
      const size_t m = 2 * p + h;
      for (size_t b = 0; b < nb; b++) {
        const size_t o = p * nb + b;
        const __m256i v = m < M ? _mm256_loadu_si256((const __m256i*)(x.q + m * K + b * QK)) : _mm256_setzero_si256();
        const float d = m < M ? x.d[m * nb + b] : 0.0f;
        // 8·Σx per lane: vpdpbusd(1, x) sums each lane's 4 signed bytes exactly.
        const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones8, v);
        _mm256_store_si256((__m256i*)(x8 + o * 16 + h * 8), _mm256_slli_epi32(s, 3));
        _mm256_store_si256((__m256i*)(xb + o * 64 + h * 32), v);
        _mm256_store_ps(dx + o * 16 + h * 8, _mm256_set1_ps(d));
      }
    }
  }
  px.xb = xb;
  px.dx = dx;
  px.x8 = x8;
  return true;
}

// One Q4_0 weight block broadcast to both halves as nibbles 0..15 (low nibbles → elements 0..15,
// high → 16..31).
static inline __m512i load_w(const uint8_t* blk) {
  const __m512i t = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)(blk + 2)));
  const __m512i sh = _mm512_srlv_epi64(t, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
  return _mm512_and_si512(sh, _mm512_set1_epi8(0x0f));
}

// Lanes 0-7 → out[0], lanes 8-15 → out[ldo], each summed as hsum8.
static inline void store_pair(float* out, size_t ldo, __m512 acc, bool second) {
  avx2::store_hsum(out, _mm512_castps512_ps256(acc));
  if (second) avx2::store_hsum(out + ldo, _mm512_extractf32x8_ps(acc, 1));
}

// RP row pairs × RN weight rows. dwf: the RN rows' block scales in f32 (row j at dwf + j·nb).
template <int WT, int RP, int RN>
static inline void tile(float* out, size_t ldo, size_t rowsLeft, const PairedX& x, size_t p0, size_t nb,
                        const uint8_t* w, size_t rb, const float* __restrict dwf, PrefetchFeed& pf) {
  constexpr size_t BB = Q4_BYTES;
  __m512 acc[RP][RN];
  for (int i = 0; i < RP; i++)
    for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
  PrefetchCursor pfc(pf);
  for (size_t b = 0; b < nb; b++) {
    pfc.step();
    __m512i wv[RN];
    for (int j = 0; j < RN; j++) wv[j] = load_w(w + j * rb + b * BB);
    for (int i = 0; i < RP; i++) {
      const size_t o = (p0 + i) * nb + b;
      const __m512i xv = _mm512_load_si512((const void*)(x.xb + o * 64));
      const __m512 dxv = _mm512_load_ps(x.dx + o * 16);
      const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_load_si512((const void*)(x.x8 + o * 16)));
      for (int j = 0; j < RN; j++) {
        const __m512i s = _mm512_dpbusd_epi32(start, wv[j], xv);
        const __m512 sc = _mm512_mul_ps(dxv, _mm512_set1_ps(dwf[j * nb + b]));
        acc[i][j] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(s), acc[i][j]);
      }
    }
  }
  pfc.save(pf);
  for (int i = 0; i < RP; i++) {
    const size_t r = 2 * i;
    if (r >= rowsLeft) break;
    for (int j = 0; j < RN; j++) store_pair(out + r * ldo + j, ldo, acc[i][j], r + 1 < rowsLeft);
  }
}

constexpr size_t kL2Budget = 192 * 1024;  // bytes of weight rows swept per activation tile
constexpr size_t kScaleFloats = 8192;
constexpr int kRP = 4, kRN = 3;

template <int WT>
static void range_block_vnni(float* out, const PreparedX& x, const uint8_t* w, size_t N, size_t n0, size_t n1) {
  constexpr size_t BB = Q4_BYTES;
  const size_t K = x.K, M = x.M, nb = K / QK, rb = row_bytes(WT, K), P = (M + 1) / 2;
  PairedX px;
  if (nb > kScaleFloats / kRN || !pair_rows<WT>(px, x)) {
    avx2::matmul_range_avx2(out, x, w, WT, N, n0, n1);
    return;
  }
  alignas(64) float dwf[kScaleFloats];
  PrefetchFeed& pf = t_prefetch;
  const size_t group = max_sz(kRN, min_sz(kL2Budget / rb, kScaleFloats / nb) / kRN * kRN);
  for (size_t g0 = n0; g0 < n1; g0 += group) {
    const size_t g1 = min_sz(n1, g0 + group);
    for (size_t n = g0; n < g1; n++)
      for (size_t b = 0; b < nb; b++) dwf[(n - g0) * nb + b] = _cvtsh_ss(*(const uint16_t*)(w + n * rb + b * BB));
    for (size_t p = 0; p < P; p += kRP) {
      const size_t m = 2 * p, rowsLeft = M - m;
      float* o = out + m * N;
      size_t n = g0;
      const int rp = (int)min_sz(kRP, P - p);
      for (; n + kRN <= g1; n += kRN) {
        const float* d = dwf + (n - g0) * nb;
        switch (rp) {
          case 4: tile<WT, 4, kRN>(o + n, N, rowsLeft, px, p, nb, w + n * rb, rb, d, pf); break;
          case 3: tile<WT, 3, kRN>(o + n, N, rowsLeft, px, p, nb, w + n * rb, rb, d, pf); break;
          case 2: tile<WT, 2, kRN>(o + n, N, rowsLeft, px, p, nb, w + n * rb, rb, d, pf); break;
          default: tile<WT, 1, kRN>(o + n, N, rowsLeft, px, p, nb, w + n * rb, rb, d, pf); break;
        }
      }
      for (; n < g1; n++) {
        const float* d = dwf + (n - g0) * nb;
        switch (rp) {
          case 4: tile<WT, 4, 1>(o + n, N, rowsLeft, px, p, nb, w + n * rb, rb, d, pf); break;
          case 3: tile<WT, 3, 1>(o + n, N, rowsLeft, px, p, nb, w + n * rb, rb, d, pf); break;
          case 2: tile<WT, 2, 1>(o + n, N, rowsLeft, px, p, nb, w + n * rb, rb, d, pf); break;
          default: tile<WT, 1, 1>(o + n, N, rowsLeft, px, p, nb, w + n * rb, rb, d, pf); break;
        }
      }
    }
  }
}

static void matmul_range_avx512(float* out, const PreparedX& x, const uint8_t* w, int wType, size_t N, size_t n0,
                                size_t n1) {
  if (x.M > 1 && wType == T_Q4_0) return range_block_vnni<T_Q4_0>(out, x, w, N, n0, n1);
  avx2::matmul_range_avx2(out, x, w, wType, N, n0, n1);
}
}  // namespace

using namespace avx2;

const KernelTable kAvx512Kernels = {"avx512", matmul_range_avx512, OL_AVX2_TABLE_REST};

}  // namespace ol

#else  // not an x86 build with AVX-512 flags: an empty table the addon never selects.
#include "common.h"
namespace ol {
const KernelTable kAvx512Kernels = {"avx512-unavailable", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr, nullptr, nullptr, nullptr};
}  // namespace ol
#endif
