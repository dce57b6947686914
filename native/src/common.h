// Shared definitions for the openlora kernels: type ids, block layouts, scalar fp16/bf16
// conversions, the kernel table, and THE reduction scheme every dot product follows.
//
// Reduction scheme (identical in the reference and AVX2 kernels, for every M, tile and thread):
//   * Float dot types (F32, F16, BF16 weights): eight f32 lane accumulators, initially +0.
//     Element k (in increasing order) updates lane k % 8 with acc = fma(x[k], w[k], acc), where
//     x and w are the values already rounded to the dot type and widened to f32.
//   * Block dot types (Q8_0, Q4_0 weights; x quantized to Q8_0): for each block b of 32 (in
//     order) and each lane j < 8, the exact integer s = Σ_{i<4} xq[32b+4j+i]·wq[32b+4j+i]
//     updates lane j with acc = fma(dx_b · dw_b, (float)s, acc) (dx_b · dw_b an f32 product).
//   * The result is hsum8(acc) = ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)).
// All kernel TUs are compiled with -ffp-contract=off so nothing else fuses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cmath>

namespace ol {

enum : int { T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_BF16 = 30 };

constexpr int QK = 32;           // block size of Q8_0 / Q4_0
constexpr int Q8_BYTES = 34;     // fp16 d + 32 int8
constexpr int Q4_BYTES = 18;     // fp16 d + 16 bytes of nibbles

static inline bool type_supported(int t) {
  return t == T_F32 || t == T_F16 || t == T_Q4_0 || t == T_Q8_0 || t == T_BF16;
}
static inline int type_block(int t) { return (t == T_Q4_0 || t == T_Q8_0) ? QK : 1; }
static inline int type_block_bytes(int t) {
  switch (t) {
    case T_F32: return 4;
    case T_F16: return 2;
    case T_BF16: return 2;
    case T_Q8_0: return Q8_BYTES;
    case T_Q4_0: return Q4_BYTES;
    default: return 0;
  }
}
static inline size_t row_bytes(int t, size_t K) { return K / type_block(t) * type_block_bytes(t); }
static inline const char* type_name(int t) {
  switch (t) {
    case T_F32: return "F32";
    case T_F16: return "F16";
    case T_BF16: return "BF16";
    case T_Q8_0: return "Q8_0";
    case T_Q4_0: return "Q4_0";
    default: return "unknown";
  }
}

// ---- scalar conversions (exact IEEE round-to-nearest-even, same as F16C) ----
static inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

static inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {
    if (man == 0) return bits_f32(sign);
    // subnormal: value = man * 2^-24 (exact in f32)
    float v = (float)man * 5.9604644775390625e-08f;
    return (h & 0x8000) ? -v : v;
  }
  return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t f32_to_fp16(float f) {
  uint32_t x = f32_bits(f);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) {  // inf or nan
    if (x == 0x7f800000u) return sign | 0x7c00;
    return sign | 0x7e00 | (uint16_t)((x >> 13) & 0x3ff);
  }
  if (x >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520 -> inf
  if (x < 0x38800000u) {                       // below the smallest normal half (2^-14)
    if (x < 0x33000000u) return sign;          // < 2^-25: rounds to 0 (2^-25 exactly ties to 0)
    const uint32_t e = x >> 23;                // 102..112
    const uint32_t m = (x & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;            // value = m * 2^(e-150); half ulp 2^-24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1))) r++;
    return sign | (uint16_t)r;
  }
  // normal
  uint32_t r = ((x >> 13) - (112u << 10));  // rebias exponent
  const uint32_t rem = x & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
  return sign | (uint16_t)r;
}

static inline float round_to_fp16(float f) { return fp16_to_f32(f32_to_fp16(f)); }

// RMS-norm scale of a row as ggml computes it: x² rounded to f32, summed in f64 in order, the mean
// rounded to f32, then 1 / sqrt(mean + eps) in f32. A row-length sequential sum is cheap next to
// the matrix products, and matching ggml here keeps the later Q8_0 rounding of activations aligned.
static inline float rms_scale(const float* x, size_t dim, float eps) {
  double sum = 0.0;
  for (size_t i = 0; i < dim; i++) {
    const float sq = x[i] * x[i];
    sum += (double)sq;
  }
  const float mean = (float)(sum / (double)dim);
  return 1.0f / std::sqrt(mean + eps);
}

// Attention keeps one head of q on the stack.
constexpr int kMaxAttnHeadDim = 1024;

static inline float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet nan
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

static inline float hsum8(const float a[8]) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// Activations prepared once per matmul call, shared by every task.
struct PreparedX {
  int type;               // T_F32 (f32 values, possibly rounded to f16/bf16) or T_Q8_0
  size_t M, K;
  const float* f;         // [M, K] when type == T_F32
  const int8_t* q;        // [M, K] quantized values when type == T_Q8_0
  const float* d;         // [M, K/32] block scales (fp16-rounded) when type == T_Q8_0
};

// Computes out[m, n] for all m < M and n in [n0, n1).
typedef void (*MatmulRangeFn)(float* out, const PreparedX& x, const uint8_t* w, int wType,
                              size_t N, size_t n0, size_t n1);
// q·k dot over headDim for `count` consecutive positions; see attention.
struct AttnArgs {
  float* out; const float* q; const uint16_t* kPool; const uint16_t* vPool;
  const int32_t* rowSeq; const int32_t* rowPos; const int32_t* blockTables; const int32_t* tableOffsets;
  int nHeads, nKvHeads, headDim, blockSize; float scale;
};
typedef void (*AttnTaskFn)(const AttnArgs& a, int t, int h, float* scratch);
typedef void (*RmsNormRowFn)(float* out, const float* x, const float* w, size_t dim, float eps);

struct KernelTable {
  const char* name;
  MatmulRangeFn matmul_range;
  AttnTaskFn attn_task;
  RmsNormRowFn rms_norm_row;
  // Activation preparation for matmul; results identical to the reference functions.
  void (*quantize_q8_split)(int8_t* q, float* d, const float* src, size_t K);
  void (*round_f16)(float* dst, const float* src, size_t n);
  void (*round_bf16)(float* dst, const float* src, size_t n);
  uint64_t (*read_sum)(const uint8_t* p, size_t bytes);  // bandwidth probe
  void (*to_f16)(uint16_t* dst, const float* src, size_t n);  // round to nearest even (KV cache)
};

// Implemented in kernels_ref.cc / kernels_avx2.cc.
extern const KernelTable kRefKernels;
extern const KernelTable kAvx2Kernels;

// Reference helpers used by both tables (kernels_ref.cc).
void quantize_row_q8_0(uint8_t* dst, const float* src, size_t K);      // ggml's reference rounding
void quantize_row_q4_0(uint8_t* dst, const float* src, size_t K);
void quantize_row_q8_0_split(int8_t* q, float* d, const float* src, size_t K);  // for activations
void dequantize_row(float* dst, const uint8_t* src, int type, size_t K);
void round_row_f16(float* dst, const float* src, size_t K);
void round_row_bf16(float* dst, const float* src, size_t K);
void rope_ref(float* x, const int32_t* positions, size_t rows, int nHeads, int headDim, int ropeDim,
              bool neox, const float* invFreq);
void silu_mul_ref(float* out, const float* gate, const float* up, size_t n);
void add_ref(float* out, const float* a, const float* b, size_t n);
void add_bias_ref(float* x, const float* bias, size_t rows, size_t dim);

// Memory bandwidth probe (kernels_ref.cc): sums `bytes` bytes of `p` as uint64 words.
uint64_t read_sum_u64(const uint8_t* p, size_t bytes);

}  // namespace ol
