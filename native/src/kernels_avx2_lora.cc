// AVX2 LoRA kernels for a segment of rows that share an adapter (prefill): the shrink and expand
// as small register-tiled matrix products. Each output element is computed with exactly the
// arithmetic of dot_f32 (common.h's 8-lane scheme), so the segmented path is bit-identical to the
// gathered one and to the reference twins in kernels_ref.cc.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cmath>

#include "kernels_avx2.h"

namespace ol {
namespace avx2 {
namespace {

// Shrink tile: R rows of x × J rows of A. Each 8-float chunk of an A row is loaded once per tile
// and used for R rows; each accumulator is one dot_f32 (lane k % 8 of element k).
template <int R, int J>
inline void shrink_tile(float* u, size_t rank, const float* x, const float* a, size_t K) {
  __m256 acc[R][J];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < J; j++) acc[i][j] = _mm256_setzero_ps();
  const size_t K8 = K & ~(size_t)7;
  for (size_t k = 0; k < K8; k += 8) {
    __m256 av[J];
    for (int j = 0; j < J; j++) av[j] = _mm256_loadu_ps(a + j * K + k);
    for (int i = 0; i < R; i++) {
      const __m256 xv = _mm256_loadu_ps(x + i * K + k);
      for (int j = 0; j < J; j++) acc[i][j] = _mm256_fmadd_ps(av[j], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < R; i++) {
    for (int j = 0; j < J; j++) {
      alignas(32) float l[8];
      _mm256_store_ps(l, acc[i][j]);
      for (size_t k = K8; k < K; k++) l[k % 8] = std::fma(a[j * K + k], x[i * K + k], l[k % 8]);
      u[i * rank + j] = hsum8(l);
    }
  }
}

template <int R>
inline void shrink_rows(float* u, size_t rank, const float* x, const float* a, size_t K) {
  size_t j = 0;
  for (; j + 3 <= rank; j += 3) shrink_tile<R, 3>(u + j, rank, x, a + j * K, K);
  if (rank - j == 2) shrink_tile<R, 2>(u + j, rank, x, a + j * K, K);
  if (rank - j == 1) shrink_tile<R, 1>(u + j, rank, x, a + j * K, K);
}

// Expand tile: R rows × one panel of 8 columns. The 8 columns sit in the vector lanes and each of
// dot_f32's eight lane accumulators is its own register, so the lane sum hsum8 becomes vertical
// adds: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). Even lanes are done first, then odd ones, to keep
// 4R accumulators live (4R + 2 registers for R = 3). Element k of the panel's columns is p + 8k
// (panels keep B's columns contiguous: strided rows of a transposed B would share L1 sets).
// `mask` limits the last panel to its columns (the others compute on zero padding, not stored).
template <int R, bool Masked>
__attribute__((always_inline)) inline void expand_tile(float* y, size_t ldy, const float* u, size_t rank,
                                                       const float* p, __m256 vs, __m256i mask) {
  __m256 half[2][R];
  const size_t rank8 = rank & ~(size_t)7;
  for (int h = 0; h < 2; h++) {
    __m256 acc[R][4];
    for (int i = 0; i < R; i++)
      for (int q = 0; q < 4; q++) acc[i][q] = _mm256_setzero_ps();
    const auto step = [&](int q, size_t k) {
      const __m256 b = _mm256_loadu_ps(p + 8 * k);
      for (int i = 0; i < R; i++) acc[i][q] = _mm256_fmadd_ps(b, _mm256_broadcast_ss(u + i * rank + k), acc[i][q]);
    };
    for (size_t k0 = 0; k0 < rank8; k0 += 8)
      for (int q = 0; q < 4; q++) step(q, k0 + 2 * q + h);
    for (int q = 0; q < 4; q++)
      if (rank8 + 2 * q + h < rank) step(q, rank8 + 2 * q + h);
    // lane 2q + h lives in acc[q]: lanes (0,4,2,6) or (1,5,3,7) are q = (0,2,1,3).
    for (int i = 0; i < R; i++)
      half[h][i] = _mm256_add_ps(_mm256_add_ps(acc[i][0], acc[i][2]), _mm256_add_ps(acc[i][1], acc[i][3]));
  }
  for (int i = 0; i < R; i++) {
    const __m256 delta = _mm256_add_ps(half[0][i], half[1][i]);
    float* yr = y + i * ldy;
    if (Masked) {
      const __m256 yv = _mm256_maskload_ps(yr, mask);
      _mm256_maskstore_ps(yr, mask, _mm256_add_ps(yv, _mm256_mul_ps(vs, delta)));
    } else {
      _mm256_storeu_ps(yr, _mm256_add_ps(_mm256_loadu_ps(yr), _mm256_mul_ps(vs, delta)));
    }
  }
}

template <int R>
inline void expand_rows(float* y, size_t ldy, const float* u, size_t rank, const float* bp, size_t cols, __m256 vs) {
  const __m256i none = _mm256_setzero_si256();
  size_t n = 0;
  for (; n + 8 <= cols; n += 8) expand_tile<R, false>(y + n, ldy, u, rank, bp + n * rank, vs, none);
  if (n < cols) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(cols - n)), lane);
    expand_tile<R, true>(y + n, ldy, u, rank, bp + n * rank, vs, mask);
  }
}

}  // namespace

void lora_shrink_avx2(float* u, const float* x, size_t rows, const float* a, size_t rank, size_t K) {
  size_t i = 0;
  for (; i + 4 <= rows; i += 4) shrink_rows<4>(u + i * rank, rank, x + i * K, a, K);
  switch (rows - i) {
    case 3: shrink_rows<3>(u + i * rank, rank, x + i * K, a, K); break;
    case 2: shrink_rows<2>(u + i * rank, rank, x + i * K, a, K); break;
    case 1: shrink_rows<1>(u + i * rank, rank, x + i * K, a, K); break;
    default: break;
  }
}

void lora_expand_avx2(float* y, size_t ldy, const float* u, size_t rows, size_t rank, const float* bp, size_t cols,
                      float s) {
  const __m256 vs = _mm256_set1_ps(s);
  size_t i = 0;
  for (; i + 3 <= rows; i += 3) expand_rows<3>(y + i * ldy, ldy, u + i * rank, rank, bp, cols, vs);
  if (rows - i == 2) expand_rows<2>(y + i * ldy, ldy, u + i * rank, rank, bp, cols, vs);
  if (rows - i == 1) expand_rows<1>(y + i * ldy, ldy, u + i * rank, rank, bp, cols, vs);
}

}  // namespace avx2
}  // namespace ol
#endif
