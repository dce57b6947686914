// Shared definitions for the openlora kernels: type ids, block layouts, scalar fp16/bf16
// conversions, the kernel table, and THE reduction scheme every dot product follows.
//
// Reduction scheme (identical in the reference and AVX2 kernels, for every M, tile and thread):
//   * Float dot types (F32, F16, BF16 weights): eight f32 lane accumulators, initially +0.
//     Element k (in increasing order) updates lane k % 8 with acc = fma(x[k], w[k], acc), where
//     x and w are the values already rounded to the dot type and widened to f32.
//   * Q8_0 weights (x quantized to Q8_0): ONE f32 accumulator, initially +0. For each block b of
//     32 (in order), the exact integer s = Σ_{i<32} xq[32b+i]·wq[32b+i] updates it with
//     acc = fma(dx_b · dw_b, (float)s, acc) (dx_b · dw_b an f32 product); the result is acc (no
//     lanes, no final sum). A whole block per integer sum is what AMX tiles compute (TDPBSSD over
//     K = 32), and what the AVX2 kernels reach with one horizontal integer sum per block.
//   * Q4_0 weights (x quantized to Q8_0): for each block b of 32 (in order) and each lane j < 8,
//     the exact integer s = Σ_{i<4} xq[32b+4j+i]·wq[32b+4j+i] updates lane j with
//     acc = fma(dx_b · dw_b, (float)s, acc) (dx_b · dw_b an f32 product).
//   * K-quant dot types (Q4_K, Q6_K weights; x quantized to Q8_K, see quantize_row_q8_K_split):
//     for each 256-element super-block b (in order), with e the element index inside b and
//     lane(e) = (e % 32) / 4 (so lane j holds elements 4j..4j+3 of every 32-element chunk):
//       S_j = Σ_{e: lane(e) = j} sc(e) · wq(e) · xq(e)        (exact in int32)
//     where, for Q6_K, wq = q6 − 32 and sc = the int8 scale of the 16-element sub-block e / 16; for
//     Q4_K, wq = the 4-bit quant (0..15) and sc = the 6-bit scale of the 32-element sub-block
//     e / 32. Then, per lane j < 8 in this order:
//       acc_j = fma(dx_b · d_b, (float)S_j, acc_j)
//     and for Q4_K additionally, with Mn_j = m_j · Σ_{e in sub-block j} xq(e) (m_j the 6-bit min
//     of sub-block j; exact int32):
//       acc_j = fma(−(dx_b · dmin_b), (float)Mn_j, acc_j)
//     dx_b is the Q8_K block scale (f32), d_b / dmin_b the weight's fp16 scales widened to f32,
//     and each product is one f32 multiply (the negation is exact).
//   * Except for Q8_0, the result is hsum8(acc) = ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)).
// All kernel TUs are compiled with -ffp-contract=off so nothing else fuses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cmath>

namespace ol {

enum : int { T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_Q4_K = 12, T_Q6_K = 14, T_Q8_K = 15, T_BF16 = 30 };

constexpr int QK = 32;           // block size of Q8_0 / Q4_0
constexpr int Q8_BYTES = 34;     // fp16 d + 32 int8
constexpr int Q4_BYTES = 18;     // fp16 d + 16 bytes of nibbles
constexpr int QK_K = 256;        // super-block size of the K-quants
// Q4_K: fp16 d, fp16 dmin, 12 bytes of 6-bit scales and mins (8 sub-blocks of 32), 128 bytes of
// nibbles (bytes 32c..32c+31: low nibbles = elements 64c..64c+31, high = 64c+32..64c+63).
constexpr int Q4K_BYTES = 144;
// Q6_K: 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales (sub-blocks of 16),
// fp16 d. value = d · scale · (q − 32).
constexpr int Q6K_BYTES = 210;

static inline bool is_kquant(int t) { return t == T_Q4_K || t == T_Q6_K; }
static inline bool type_supported(int t) {
  return t == T_F32 || t == T_F16 || t == T_Q4_0 || t == T_Q8_0 || t == T_BF16 || is_kquant(t);
}
static inline bool type_quantizable(int t) { return !is_kquant(t) && type_supported(t); }
static inline int type_block(int t) { return (t == T_Q4_0 || t == T_Q8_0) ? QK : is_kquant(t) ? QK_K : 1; }
static inline int type_block_bytes(int t) {
  switch (t) {
    case T_F32: return 4;
    case T_F16: return 2;
    case T_BF16: return 2;
    case T_Q8_0: return Q8_BYTES;
    case T_Q4_0: return Q4_BYTES;
    case T_Q4_K: return Q4K_BYTES;
    case T_Q6_K: return Q6K_BYTES;
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
    case T_Q4_K: return "Q4_K";
    case T_Q6_K: return "Q6_K";
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

// Q4_K's 12 packed bytes -> 8 six-bit scales and 8 six-bit mins (ggml's get_scale_min_k4).
static inline void q4k_scales_mins(const uint8_t* s12, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; j++) {
    sc[j] = s12[j] & 63;
    mn[j] = s12[j + 4] & 63;
  }
  for (int j = 4; j < 8; j++) {
    sc[j] = (uint8_t)((s12[j + 4] & 0x0f) | ((s12[j - 4] >> 6) << 4));
    mn[j] = (uint8_t)((s12[j + 4] >> 4) | ((s12[j] >> 6) << 4));
  }
}

static inline float hsum8(const float a[8]) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// Activations prepared once per matmul call, shared by every task.
struct PreparedX {
  int type;               // T_F32 (f32 values, possibly rounded to f16/bf16), T_Q8_0 or T_Q8_K
  size_t M, K;
  const float* f;         // [M, K] when type == T_F32
  const int8_t* q;        // [M, K] quantized values when type == T_Q8_0 / T_Q8_K
  const float* d;         // [M, K/32] block scales (fp16-rounded) for T_Q8_0; [M, K/256] (f32) for T_Q8_K
  const int16_t* bs;      // [M, K/32] sums of q over each 32 elements when type == T_Q8_K
  uint64_t id;            // unique per preparation (0: none), so kernels may cache a repacked x per thread
};

// Memory a matmul task should pull into L2 while its tiles compute (LoRA B rows it will read next):
// the batched Q8_0/Q4_0 kernels issue at most one 64-byte prefetch per weight block of a tile
// (from cur towards end, then advance() to the next range), so a memory-bound read overlaps a
// compute-bound one. Set per task by the caller (matmulMulti with LoRA) in the thread's
// t_prefetch; empty otherwise. Performance only: prefetches never change a result.
struct PrefetchRange {
  const char* p;
  size_t bytes;
};
struct PrefetchFeed {
  const char* cur = nullptr;
  const char* end = nullptr;
  const PrefetchRange* next = nullptr;
  const PrefetchRange* last = nullptr;
  void advance() {
    if (next == last) return;
    cur = next->p;
    end = next->p + next->bytes;
    ++next;
  }
  void reset(const PrefetchRange* first = nullptr, const PrefetchRange* stop = nullptr) {
    cur = end = nullptr;
    next = first;
    last = stop;
    advance();
  }
};
extern thread_local PrefetchFeed t_prefetch;  // threadpool.cc

// A kernel's working copy of the feed's current range, held in registers across its block loop
// (one compare per block when the feed is empty); save() hands the position back.
struct PrefetchCursor {
  const char* cur;
  const char* end;
  explicit PrefetchCursor(const PrefetchFeed& f) : cur(f.cur), end(f.end) {}
  inline void step() {
    if (cur < end) {
      __builtin_prefetch(cur, 0, 2);
      cur += 64;
    }
  }
  void save(PrefetchFeed& f) const {
    f.cur = cur;
    if (cur >= end) f.advance();
  }
};

// e^x for silu in a fixed sequence of f32 operations that the SIMD kernels repeat lane for lane
// (so every table gives the same bits): Cephes' expf reduction and degree-6 polynomial (about
// 1 ulp), x first clamped to [−87.3365479, 88] as max(lo, x) then min(hi, x) do (a NaN passes
// through). Above 88 the clamp returns e^88 instead of overflowing, which only changes silu(g) for
// g < −88, where it is below 1e−36 in magnitude either way.
static inline float exp_poly(float x) {
  if (x != x) return x;
  x = -87.3365479f > x ? -87.3365479f : x;
  x = 88.0f < x ? 88.0f : x;
  const float n = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fma(n, -0.693359375f, x);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  const float z = r * r;
  p = std::fma(p, z, r);
  p = p + 1.0f;
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

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
// rows × dim, each row normalised as rms_scale says (one sequential f64 sum per row).
typedef void (*RmsNormRowsFn)(float* out, const float* x, const float* w, size_t rows, size_t dim, float eps);

struct KernelTable {
  const char* name;
  MatmulRangeFn matmul_range;
  AttnTaskFn attn_task;
  RmsNormRowsFn rms_norm_rows;
  // Activation preparation for matmul; results identical to the reference functions.
  void (*quantize_q8_split)(int8_t* q, float* d, const float* src, size_t K);
  void (*round_f16)(float* dst, const float* src, size_t n);
  void (*round_bf16)(float* dst, const float* src, size_t n);
  uint64_t (*read_sum)(const uint8_t* p, size_t bytes);  // bandwidth probe
  void (*to_f16)(uint16_t* dst, const float* src, size_t n);  // round to nearest even (KV cache)
  // Σ a[i]·b[i] in the fixed 8-lane scheme (lane i % 8, fma, then hsum8); used by LoRA.
  float (*dot_f32)(const float* a, const float* b, size_t n);
  // out[i] = dot_f32(rows + i·n, v, n) for i < count: the same arithmetic, several rows at once.
  void (*dot_rows_f32)(float* out, const float* rows, const float* v, size_t n, size_t count);
  // LoRA on a segment (rows sharing an adapter), element for element the same arithmetic as
  // dot_f32: u[i·rank + j] = dot_f32(a + j·K, x + i·K, K) for i < rows, j < rank.
  void (*lora_shrink_f32)(float* u, const float* x, size_t rows, const float* a, size_t rank, size_t K);
  // y[i·ldy + n] = y[i·ldy + n] + s · dot_f32(B[n], u + i·rank, rank) for i < rows, n < cols, with B
  // packed in panels of 8 columns, B[n][k] = bp[(n / 8)·8·rank + 8·k + n % 8], the last panel
  // zero-padded to 8 columns.
  void (*lora_expand_f32)(float* y, size_t ldy, const float* u, size_t rows, size_t rank, const float* bp,
                          size_t cols, float s);
  // out[i] = silu(gate[i]) · up[i] = (g / (1 + exp_poly(−g))) · up[i], g = gate[i] (see exp_poly).
  void (*silu_mul)(float* out, const float* gate, const float* up, size_t n);
  // The first index of the largest element (NaN never wins; 0 when none exceeds −inf).
  size_t (*argmax)(const float* x, size_t n);
  // dot_rows_f32 on 16-bit rows (type T_F16 or T_BF16): each element widened to f32 exactly, then
  // the same arithmetic, so the result equals dot_rows_f32 on the widened rows bit for bit.
  void (*dot_rows_h)(float* out, const uint16_t* rows, const float* v, size_t n, size_t count, int type);
  // The index of the first of n elements of type T_F32, T_F16 or T_BF16 whose bits with the sign
  // cleared exceed `limit` (as unsigned integers); n when none does. For non-negative floats the
  // bit order is the value order and NaN/infinity lie above every finite value, so with `limit` =
  // the bits of a finite bound M this finds the first element that is NaN, infinite or |v| > M.
  size_t (*first_above)(const void* data, size_t n, int type, uint32_t limit);
};

// Implemented in kernels_ref.cc / kernels_avx2.cc / kernels_avx512.cc (the AVX2 table with
// AVX-512 VNNI batched Q4_0 products).
extern const KernelTable kRefKernels;
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
// The AVX-512 table with AMX-INT8 batched Q8_0 products (kernels_amx.cc); usable only after
// amx_enable() returned true (the kernel granted this process the AMX tile state).
extern const KernelTable kAmxKernels;
bool amx_enable();

// Reference helpers used by both tables (kernels_ref.cc).
void quantize_row_q8_0(uint8_t* dst, const float* src, size_t K);      // ggml's reference rounding
void quantize_row_q4_0(uint8_t* dst, const float* src, size_t K);
void quantize_row_q8_0_split(int8_t* q, float* d, const float* src, size_t K);  // for activations
// Q8_K activations (ggml's quantize_row_q8_K_ref, which ggml's x86 runtime also uses): per 256,
// max = the first element of largest |x|, iscale = −127 / max, q = min(127, nearest-even(iscale·x)),
// d = 1 / iscale (f32); all zero when max == 0. bs[i] = Σ q over elements 32i..32i+31.
void quantize_row_q8_K_split(int8_t* q, float* d, int16_t* bs, const float* src, size_t K);
void dequantize_row(float* dst, const uint8_t* src, int type, size_t K);
void round_row_f16(float* dst, const float* src, size_t K);
void round_row_bf16(float* dst, const float* src, size_t K);
void rope_ref(float* x, const int32_t* positions, size_t rows, int nHeads, int headDim, int ropeDim,
              bool neox, const float* invFreq);
void silu_mul_ref(float* out, const float* gate, const float* up, size_t n);
size_t argmax_ref(const float* x, size_t n);
size_t first_above_ref(const void* data, size_t n, int type, uint32_t limit);
// cs[i] = cos(p · invFreq[i]), sn[i] = sin(p · invFreq[i]) for i < half: the angles rope_ref uses.
void rope_angles(float* cs, float* sn, float p, const float* invFreq, int half);
// rope_ref with the angles of row r at cs + r·half, sn + r·half (the same arithmetic).
void rope_with_angles(float* x, size_t rows, int nHeads, int headDim, int ropeDim, bool neox, const float* cs,
                      const float* sn);
void add_ref(float* out, const float* a, const float* b, size_t n);
void add_bias_ref(float* x, const float* bias, size_t rows, size_t dim);

// Memory bandwidth probe (kernels_ref.cc): sums `bytes` bytes of `p` as uint64 words.
uint64_t read_sum_u64(const uint8_t* p, size_t bytes);

}  // namespace ol
