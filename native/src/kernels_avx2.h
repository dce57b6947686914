// Internal to the AVX2 kernel library: the kernels kernels_avx2_ops.cc defines for the table in
// kernels_avx2.cc, shared with the AVX-512 table (kernels_avx512.cc). Compiled only with AVX2/FMA/F16C
// (or AVX-512) flags.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.h"

#include <immintrin.h>

namespace ol {
namespace avx2 {
// *dst = ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)), the same order as hsum8. static inline: each
// kernel library keeps its own copy, compiled with its own flags.
static inline void store_hsum(float* dst, __m256 acc) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  *dst = _mm_cvtss_f32(lo);
}

// The AVX2 table's matrix product (the AVX-512 table delegates to it for what it does not cover).
void matmul_range_avx2(float* out, const PreparedX& x, const uint8_t* w, int wType, size_t N, size_t n0, size_t n1);
void attn_task_avx2(const AttnArgs& a, int t, int h, float* scores);
void rms_norm_rows_avx2(float* out, const float* x, const float* w, size_t rows, size_t dim, float eps);
void quantize_q8_split_avx2(int8_t* q, float* d, const float* src, size_t K);
void round_f16_avx2(float* dst, const float* src, size_t n);
void round_bf16_avx2(float* dst, const float* src, size_t n);
uint64_t read_sum_avx2(const uint8_t* p, size_t bytes);
void to_f16_avx2(uint16_t* dst, const float* src, size_t n);
float dot_f32_avx2(const float* a, const float* b, size_t n);
void dot_rows_f32_avx2(float* out, const float* rows, const float* v, size_t n, size_t count);
void dot_rows_h_avx2(float* out, const uint16_t* rows, const float* v, size_t n, size_t count, int type);
void silu_mul_avx2(float* out, const float* gate, const float* up, size_t n);
size_t argmax_avx2(const float* x, size_t n);
size_t first_above_avx2(const void* data, size_t n, int type, uint32_t limit);
void lora_shrink_avx2(float* u, const float* x, size_t rows, const float* a, size_t rank, size_t K);
void lora_expand_avx2(float* y, size_t ldy, const float* u, size_t rows, size_t rank, const float* bp, size_t cols,
                      float s);
}  // namespace avx2
}  // namespace ol

// Every KernelTable entry after the name and the matrix product, as the AVX2 table has them; the
// AVX-512 and AMX tables differ from it only in the product.
#define OL_AVX2_TABLE_REST                                                                                        \
  ol::avx2::attn_task_avx2, ol::avx2::rms_norm_rows_avx2, ol::avx2::quantize_q8_split_avx2,                    \
      ol::avx2::round_f16_avx2, ol::avx2::round_bf16_avx2, ol::avx2::read_sum_avx2, ol::avx2::to_f16_avx2,     \
      ol::avx2::dot_f32_avx2, ol::avx2::dot_rows_f32_avx2, ol::avx2::lora_shrink_avx2, ol::avx2::lora_expand_avx2, \
      ol::avx2::silu_mul_avx2, ol::avx2::argmax_avx2, ol::avx2::dot_rows_h_avx2, ol::avx2::first_above_avx2
