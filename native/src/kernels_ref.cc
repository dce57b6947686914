// Reference kernels: plain scalar C++, compiled without AVX flags and with -ffp-contract=off.
// They define the numerics (see the reduction scheme in common.h); the AVX2 kernels reproduce
// them bit for bit.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"

namespace ol {

// ---------------------------------------------------------------- quantization (ggml reference)

void quantize_row_q8_0(uint8_t* dst, const float* src, size_t K) {
  for (size_t b = 0; b < K / QK; b++) {
    const float* x = src + b * QK;
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t* blk = dst + b * Q8_BYTES;
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(blk, &dh, 2);
    for (int j = 0; j < QK; j++) blk[2 + j] = (uint8_t)(int8_t)std::roundf(x[j] * id);
  }
}

// Activations are quantized as ggml's x86 runtime path does (not its reference): the inverse scale
// is 127 / amax and values round to nearest, ties to even.
void quantize_row_q8_0_split(int8_t* q, float* d, const float* src, size_t K) {
  for (size_t b = 0; b < K / QK; b++) {
    const float* x = src + b * QK;
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = std::max(amax, std::fabs(x[j]));
    const float db = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    d[b] = fp16_to_f32(f32_to_fp16(db));
    for (int j = 0; j < QK; j++) q[b * QK + j] = (int8_t)std::nearbyint(x[j] * id);
  }
}

void quantize_row_q8_K_split(int8_t* q, float* d, int16_t* bs, const float* src, size_t K) {
  for (size_t b = 0; b < K / QK_K; b++) {
    const float* x = src + b * QK_K;
    int8_t* qb = q + b * QK_K;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK_K; j++) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (amax == 0.0f) {
      d[b] = 0.0f;
      for (int j = 0; j < QK_K; j++) qb[j] = 0;
    } else {
      const float iscale = -127.0f / max;
      for (int j = 0; j < QK_K; j++) qb[j] = (int8_t)std::min(127, (int)std::nearbyint(iscale * x[j]));
      d[b] = 1.0f / iscale;
    }
    for (int s = 0; s < QK_K / 32; s++) {
      int sum = 0;
      for (int j = 0; j < 32; j++) sum += qb[32 * s + j];
      bs[b * (QK_K / 32) + s] = (int16_t)sum;
    }
  }
}

void quantize_row_q4_0(uint8_t* dst, const float* src, size_t K) {
  for (size_t b = 0; b < K / QK; b++) {
    const float* x = src + b * QK;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
      if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t* blk = dst + b * Q4_BYTES;
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(blk, &dh, 2);
    for (int j = 0; j < QK / 2; j++) {
      const uint8_t x0 = (uint8_t)std::min(15, (int)(int8_t)(x[j] * id + 8.5f));
      const uint8_t x1 = (uint8_t)std::min(15, (int)(int8_t)(x[QK / 2 + j] * id + 8.5f));
      blk[2 + j] = (uint8_t)(x0 | (x1 << 4));
    }
  }
}

void dequantize_row(float* dst, const uint8_t* src, int type, size_t K) {
  switch (type) {
    case T_F32: std::memcpy(dst, src, K * 4); break;
    case T_F16:
      for (size_t i = 0; i < K; i++) { uint16_t h; std::memcpy(&h, src + 2 * i, 2); dst[i] = fp16_to_f32(h); }
      break;
    case T_BF16:
      for (size_t i = 0; i < K; i++) { uint16_t h; std::memcpy(&h, src + 2 * i, 2); dst[i] = bf16_to_f32(h); }
      break;
    case T_Q8_0:
      for (size_t b = 0; b < K / QK; b++) {
        const uint8_t* blk = src + b * Q8_BYTES;
        uint16_t dh; std::memcpy(&dh, blk, 2);
        const float d = fp16_to_f32(dh);
        for (int j = 0; j < QK; j++) dst[b * QK + j] = (float)(int8_t)blk[2 + j] * d;
      }
      break;
    case T_Q4_0:
      for (size_t b = 0; b < K / QK; b++) {
        const uint8_t* blk = src + b * Q4_BYTES;
        uint16_t dh; std::memcpy(&dh, blk, 2);
        const float d = fp16_to_f32(dh);
        for (int j = 0; j < QK / 2; j++) {
          dst[b * QK + j] = (float)((int)(blk[2 + j] & 0x0f) - 8) * d;
          dst[b * QK + QK / 2 + j] = (float)((int)(blk[2 + j] >> 4) - 8) * d;
        }
      }
      break;
    case T_Q4_K:  // ggml's dequantize_row_q4_K
      for (size_t b = 0; b < K / QK_K; b++) {
        const uint8_t* blk = src + b * Q4K_BYTES;
        uint16_t h0, h1; std::memcpy(&h0, blk, 2); std::memcpy(&h1, blk + 2, 2);
        const float d = fp16_to_f32(h0), dmin = fp16_to_f32(h1);
        uint8_t sc[8], mn[8];
        q4k_scales_mins(blk + 4, sc, mn);
        const uint8_t* qs = blk + 16;
        float* y = dst + b * QK_K;
        for (int c = 0; c < 4; c++) {
          const float d1 = d * sc[2 * c], m1 = dmin * mn[2 * c];
          const float d2 = d * sc[2 * c + 1], m2 = dmin * mn[2 * c + 1];
          for (int l = 0; l < 32; l++) y[64 * c + l] = d1 * (float)(qs[32 * c + l] & 0x0f) - m1;
          for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d2 * (float)(qs[32 * c + l] >> 4) - m2;
        }
      }
      break;
    case T_Q6_K:  // ggml's dequantize_row_q6_K
      for (size_t b = 0; b < K / QK_K; b++) {
        const uint8_t* blk = src + b * Q6K_BYTES;
        uint16_t h; std::memcpy(&h, blk + 208, 2);
        const float d = fp16_to_f32(h);
        float* y = dst + b * QK_K;
        for (int n = 0; n < 2; n++) {
          const uint8_t* ql = blk + 64 * n;
          const uint8_t* qh = blk + 128 + 32 * n;
          const int8_t* sc = (const int8_t*)(blk + 192 + 8 * n);
          for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = (int)((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
            const int q2 = (int)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[128 * n + l] = d * (float)sc[is] * (float)q1;
            y[128 * n + l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[128 * n + l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[128 * n + l + 96] = d * (float)sc[is + 6] * (float)q4;
          }
        }
      }
      break;
  }
}

// Integer weights of one K-quant super-block in element order, with each element's scale (and,
// for Q4_K, the 8 sub-block mins). See the reduction scheme in common.h.
static void kquant_unpack(const uint8_t* blk, int wType, int8_t wq[QK_K], int16_t sc[QK_K], int16_t mn[8], float* d,
                   float* dmin) {
  if (wType == T_Q4_K) {
    uint16_t h0, h1; std::memcpy(&h0, blk, 2); std::memcpy(&h1, blk + 2, 2);
    *d = fp16_to_f32(h0);
    *dmin = fp16_to_f32(h1);
    uint8_t s8[8], m8[8];
    q4k_scales_mins(blk + 4, s8, m8);
    for (int j = 0; j < 8; j++) mn[j] = m8[j];
    for (int c = 0; c < 4; c++) {
      for (int l = 0; l < 32; l++) {
        wq[64 * c + l] = (int8_t)(blk[16 + 32 * c + l] & 0x0f);
        wq[64 * c + 32 + l] = (int8_t)(blk[16 + 32 * c + l] >> 4);
      }
    }
    for (int e = 0; e < QK_K; e++) sc[e] = s8[e / 32];
  } else {
    uint16_t h; std::memcpy(&h, blk + 208, 2);
    *d = fp16_to_f32(h);
    *dmin = 0.0f;
    for (int j = 0; j < 8; j++) mn[j] = 0;
    for (int n = 0; n < 2; n++) {
      const uint8_t* ql = blk + 64 * n;
      const uint8_t* qh = blk + 128 + 32 * n;
      for (int l = 0; l < 32; l++) {
        wq[128 * n + l] = (int8_t)(((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32);
        wq[128 * n + l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
        wq[128 * n + l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        wq[128 * n + l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    for (int e = 0; e < QK_K; e++) sc[e] = (int8_t)blk[192 + e / 16];
  }
}

void round_row_f16(float* dst, const float* src, size_t K) {
  for (size_t i = 0; i < K; i++) dst[i] = fp16_to_f32(f32_to_fp16(src[i]));
}
void round_row_bf16(float* dst, const float* src, size_t K) {
  for (size_t i = 0; i < K; i++) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
}

// ---------------------------------------------------------------- matmul

// Loads weight element k of row `row` as f32 (float dot types only).
static inline float w_at(const uint8_t* row, int wType, size_t k) {
  if (wType == T_F32) { float f; std::memcpy(&f, row + 4 * k, 4); return f; }
  uint16_t h; std::memcpy(&h, row + 2 * k, 2);
  return wType == T_F16 ? fp16_to_f32(h) : bf16_to_f32(h);
}

static float dot_float_ref(const float* x, const uint8_t* wrow, int wType, size_t K) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t k = 0; k < K; k++) acc[k % 8] = std::fma(x[k], w_at(wrow, wType, k), acc[k % 8]);
  return hsum8(acc);
}

static float dot_block_ref(const int8_t* xq, const float* xd, const uint8_t* wrow, int wType, size_t K) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const size_t bpb = (size_t)type_block_bytes(wType);
  for (size_t b = 0; b < K / QK; b++) {
    const uint8_t* blk = wrow + b * bpb;
    uint16_t dh; std::memcpy(&dh, blk, 2);
    int8_t wq[QK];
    if (wType == T_Q8_0) {
      for (int j = 0; j < QK; j++) wq[j] = (int8_t)blk[2 + j];
    } else {
      for (int j = 0; j < QK / 2; j++) {
        wq[j] = (int8_t)((blk[2 + j] & 0x0f) - 8);
        wq[j + QK / 2] = (int8_t)((blk[2 + j] >> 4) - 8);
      }
    }
    const float d = xd[b] * fp16_to_f32(dh);
    const int8_t* xb = xq + b * QK;
    if (wType == T_Q8_0) {
      int32_t s = 0;
      for (int j = 0; j < QK; j++) s += (int32_t)xb[j] * (int32_t)wq[j];
      acc[0] = std::fma(d, (float)s, acc[0]);
      continue;
    }
    for (int j = 0; j < 8; j++) {
      int s = 0;
      for (int i = 0; i < 4; i++) s += (int)xb[4 * j + i] * (int)wq[4 * j + i];
      acc[j] = std::fma(d, (float)s, acc[j]);
    }
  }
  return wType == T_Q8_0 ? acc[0] : hsum8(acc);
}

static float dot_kquant_ref(const int8_t* xq, const float* xd, const int16_t* xbs, const uint8_t* wrow, int wType,
                            size_t K) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const size_t bpb = (size_t)type_block_bytes(wType);
  int8_t wq[QK_K];
  int16_t sc[QK_K], mn[8];
  for (size_t b = 0; b < K / QK_K; b++) {
    float d, dmin;
    kquant_unpack(wrow + b * bpb, wType, wq, sc, mn, &d, &dmin);
    const int8_t* xb = xq + b * QK_K;
    int32_t S[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int e = 0; e < QK_K; e++) S[(e % 32) / 4] += (int32_t)sc[e] * (int32_t)wq[e] * (int32_t)xb[e];
    const float dd = xd[b] * d;
    for (int j = 0; j < 8; j++) acc[j] = std::fma(dd, (float)S[j], acc[j]);
    if (wType == T_Q4_K) {
      const float dm = -(xd[b] * dmin);
      for (int j = 0; j < 8; j++) {
        const int32_t Mn = (int32_t)mn[j] * (int32_t)xbs[b * 8 + j];
        acc[j] = std::fma(dm, (float)Mn, acc[j]);
      }
    }
  }
  return hsum8(acc);
}

static void matmul_range_ref(float* out, const PreparedX& x, const uint8_t* w, int wType, size_t N,
                             size_t n0, size_t n1) {
  const size_t K = x.K, rb = row_bytes(wType, K);
  for (size_t n = n0; n < n1; n++) {
    const uint8_t* wrow = w + n * rb;
    for (size_t m = 0; m < x.M; m++) {
      out[m * N + n] = x.type == T_Q8_K ? dot_kquant_ref(x.q + m * K, x.d + m * (K / QK_K), x.bs + m * (K / 32), wrow, wType, K)
                       : x.type == T_Q8_0
                           ? dot_block_ref(x.q + m * K, x.d + m * (K / QK), wrow, wType, K)
                           : dot_float_ref(x.f + m * K, wrow, wType, K);
    }
  }
}

// ---------------------------------------------------------------- attention

// One (row, head): scores over positions 0..pos, softmax, weighted sum of V.
// scratch holds at least pos + 1 floats.
static void attn_task_ref(const AttnArgs& a, int t, int h, float* scores) {
  const int D = a.headDim, group = a.nHeads / a.nKvHeads, kvh = h / group;
  const size_t kvDim = (size_t)a.nKvHeads * D;
  const float* q_in = a.q + ((size_t)t * a.nHeads + h) * D;
  float* out = a.out + ((size_t)t * a.nHeads + h) * D;
  const int32_t pos = a.rowPos[t];
  const int32_t* table = a.blockTables + a.tableOffsets[a.rowSeq[t]];
  // Products with the f16 cache round their other operand to f16 first, as ggml does.
  float q[kMaxAttnHeadDim];
  for (int d = 0; d < D; d++) q[d] = round_to_fp16(q_in[d]);
  float mx = -INFINITY;
  for (int32_t p = 0; p <= pos; p++) {
    const size_t slot = (size_t)table[p / a.blockSize] * a.blockSize + p % a.blockSize;
    const uint16_t* k = a.kPool + slot * kvDim + (size_t)kvh * D;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int d = 0; d < D; d++) acc[d % 8] = std::fma(q[d], fp16_to_f32(k[d]), acc[d % 8]);
    const float s = hsum8(acc) * a.scale;
    scores[p] = s;
    mx = std::max(mx, s);
  }
  float sum = 0.0f;
  for (int32_t p = 0; p <= pos; p++) {
    scores[p] = exp_poly(scores[p] - mx);
    sum += scores[p];
  }
  const float inv = 1.0f / sum;
  for (int d = 0; d < D; d++) out[d] = 0.0f;
  for (int32_t p = 0; p <= pos; p++) {
    const size_t slot = (size_t)table[p / a.blockSize] * a.blockSize + p % a.blockSize;
    const uint16_t* v = a.vPool + slot * kvDim + (size_t)kvh * D;
    const float pr = round_to_fp16(scores[p] * inv);
    for (int d = 0; d < D; d++) out[d] = std::fma(pr, fp16_to_f32(v[d]), out[d]);
  }
}

// ---------------------------------------------------------------- rmsNorm

static void rms_norm_rows_ref(float* out, const float* x, const float* w, size_t rows, size_t dim, float eps) {
  for (size_t r = 0; r < rows; r++) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    const float scale = rms_scale(xr, dim, eps);
    for (size_t i = 0; i < dim; i++) o[i] = (xr[i] * scale) * w[i];
  }
}

// ---------------------------------------------------------------- elementwise (shared by both tables)

void rope_angles(float* cs, float* sn, float p, const float* invFreq, int half) {
  for (int i = 0; i < half; i++) {
    const float ang = p * invFreq[i];
    cs[i] = std::cos(ang);
    sn[i] = std::sin(ang);
  }
}

void rope_with_angles(float* x, size_t rows, int nHeads, int headDim, int ropeDim, bool neox, const float* cs,
                      const float* sn) {
  const int half = ropeDim / 2;
  for (size_t r = 0; r < rows; r++) {
    const float* c = cs + r * half;
    const float* s = sn + r * half;
    for (int h = 0; h < nHeads; h++) {
      float* v = x + (r * nHeads + h) * (size_t)headDim;
      for (int i = 0; i < half; i++) {
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        v[i0] = a * c[i] - b * s[i];
        v[i1] = a * s[i] + b * c[i];
      }
    }
  }
}

void rope_ref(float* x, const int32_t* positions, size_t rows, int nHeads, int headDim, int ropeDim,
              bool neox, const float* invFreq) {
  const int half = ropeDim / 2;
  std::vector<float> cs(half), sn(half);
  for (size_t r = 0; r < rows; r++) {
    rope_angles(cs.data(), sn.data(), (float)positions[r], invFreq, half);
    rope_with_angles(x + r * nHeads * (size_t)headDim, 1, nHeads, headDim, ropeDim, neox, cs.data(), sn.data());
  }
}

void silu_mul_ref(float* out, const float* gate, const float* up, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float g = gate[i];
    out[i] = (g / (1.0f + exp_poly(-g))) * up[i];
  }
}

size_t first_above_ref(const void* data, size_t n, int type, uint32_t limit) {
  if (type == T_F32) {
    const uint32_t* w = (const uint32_t*)data;
    for (size_t i = 0; i < n; i++)
      if ((w[i] & 0x7fffffffu) > limit) return i;
    return n;
  }
  const uint16_t* h = (const uint16_t*)data;
  for (size_t i = 0; i < n; i++)
    if ((uint32_t)(h[i] & 0x7fffu) > limit) return i;
  return n;
}

size_t argmax_ref(const float* x, size_t n) {
  size_t best = 0;
  float bestV = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (x[i] > bestV) {
      bestV = x[i];
      best = i;
    }
  }
  return best;
}

void add_ref(float* out, const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void add_bias_ref(float* x, const float* bias, size_t rows, size_t dim) {
  for (size_t r = 0; r < rows; r++)
    for (size_t i = 0; i < dim; i++) x[r * dim + i] += bias[i];
}

uint64_t read_sum_u64(const uint8_t* p, size_t bytes) {
  const uint64_t* w = (const uint64_t*)p;
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t n = bytes / 8, i = 0;
  for (; i + 4 <= n; i += 4) { s0 += w[i]; s1 += w[i + 1]; s2 += w[i + 2]; s3 += w[i + 3]; }
  for (; i < n; i++) s0 += w[i];
  return s0 + s1 + s2 + s3;
}

static void to_f16_ref(uint16_t* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = f32_to_fp16(src[i]);
}

static float dot_f32_ref(const float* a, const float* b, size_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < n; i++) acc[i % 8] = std::fma(a[i], b[i], acc[i % 8]);
  return hsum8(acc);
}

static void dot_rows_f32_ref(float* out, const float* rows, const float* v, size_t n, size_t count) {
  for (size_t i = 0; i < count; i++) out[i] = dot_f32_ref(rows + i * n, v, n);
}

static void dot_rows_h_ref(float* out, const uint16_t* rows, const float* v, size_t n, size_t count, int type) {
  for (size_t i = 0; i < count; i++) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t k = 0; k < n; k++) {
      const uint16_t h = rows[i * n + k];
      acc[k % 8] = std::fma(type == T_BF16 ? bf16_to_f32(h) : fp16_to_f32(h), v[k], acc[k % 8]);
    }
    out[i] = hsum8(acc);
  }
}

static void lora_shrink_ref(float* u, const float* x, size_t rows, const float* a, size_t rank, size_t K) {
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < rank; j++) u[i * rank + j] = dot_f32_ref(a + j * K, x + i * K, K);
}

static void lora_expand_ref(float* y, size_t ldy, const float* u, size_t rows, size_t rank, const float* bp,
                            size_t cols, float s) {
  for (size_t i = 0; i < rows; i++) {
    for (size_t n = 0; n < cols; n++) {
      const float* bn = bp + (n / 8) * 8 * rank + n % 8;  // B[n][k] = bn[8·k]
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (size_t k = 0; k < rank; k++) acc[k % 8] = std::fma(bn[8 * k], u[i * rank + k], acc[k % 8]);
      y[i * ldy + n] = y[i * ldy + n] + s * hsum8(acc);
    }
  }
}

const KernelTable kRefKernels = {"reference",      matmul_range_ref, attn_task_ref,  rms_norm_rows_ref,
                                 quantize_row_q8_0_split, round_row_f16, round_row_bf16, read_sum_u64,
                                 to_f16_ref, dot_f32_ref, dot_rows_f32_ref, lora_shrink_ref, lora_expand_ref,
                                 silu_mul_ref, argmax_ref, dot_rows_h_ref, first_above_ref};

}  // namespace ol
