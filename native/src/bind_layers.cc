// N-API bindings: normalization, rotary embedding, KV cache, attention, elementwise ops.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "napi_args.h"
#include "threadpool.h"

namespace ol {

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto out = typed<float>(info, 0, "out", napi_float32_array);
  auto x = typed<const float>(info, 1, "x", napi_float32_array);
  auto w = typed<const float>(info, 2, "weight", napi_float32_array);
  const size_t rows = (size_t)integer(info, 3, "rows", 0, INT32_MAX);
  const size_t dim = (size_t)integer(info, 4, "dim", 1, INT32_MAX);
  const float eps = (float)number(info, 5, "eps");
  expect_len(env, x, (uint64_t)rows * dim, "x", "rows * dim");
  expect_len(env, out, (uint64_t)rows * dim, "out", "rows * dim");
  expect_len(env, w, dim, "weight", "dim");
  same_or_disjoint(env, out, x, "out", "x");
  disjoint(env, out, w, "out", "weight");
  const KernelTable* kt = g_kernels.load();
  float* o = out.data;
  const float* xs = x.data;
  const float* ws = w.data;
  // Tasks of whole groups of four rows (the SIMD kernels sum four rows at once), about 16K elements
  // each: below that a parallel region costs more than it saves.
  const size_t per = std::max<size_t>(4, (16384 / dim) & ~(size_t)3);
  const size_t ntasks = (rows + per - 1) / per;
  parallel_for(ntasks, [&](size_t t) {
    const size_t r0 = t * per, r1 = std::min(rows, r0 + per);
    kt->rms_norm_rows(o + r0 * dim, xs + r0 * dim, ws, r1 - r0, dim, eps);
  });
  return env.Undefined();
}

// The cos/sin of every position's angles, computed by rope_angles once per position instead of once
// per call (every layer ropes q and k of the same positions): one table per calling thread (each
// engine is one JS thread), rebuilt when invFreq changes, grown to the largest position seen up to
// kMaxTablePositions (beyond, or for negative positions, rope_ref computes them as before).
struct RopeAngles {
  std::vector<float> inv, cs, sn;
  size_t positions = 0;
};
constexpr size_t kMaxTablePositions = 1 << 16;

static const RopeAngles* rope_table(const int32_t* pos, size_t rows, const float* inv, int half) {
  static thread_local RopeAngles t;
  int32_t hi = -1;
  for (size_t r = 0; r < rows; r++) {
    if (pos[r] < 0) return nullptr;
    hi = std::max(hi, pos[r]);
  }
  if ((size_t)hi >= kMaxTablePositions || half == 0) return nullptr;
  if (t.inv.size() != (size_t)half || std::memcmp(t.inv.data(), inv, half * sizeof(float)) != 0) {
    t.inv.assign(inv, inv + half);
    t.cs.clear();
    t.sn.clear();
    t.positions = 0;
  }
  if ((size_t)hi >= t.positions) {
    const size_t n = std::min(kMaxTablePositions, std::max<size_t>((size_t)hi + 1, 2 * t.positions));
    t.cs.resize(n * half);
    t.sn.resize(n * half);
    for (size_t p = t.positions; p < n; p++) rope_angles(&t.cs[p * half], &t.sn[p * half], (float)p, inv, half);
    t.positions = n;
  }
  return &t;
}

Napi::Value Rope(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto x = typed<float>(info, 0, "x", napi_float32_array);
  auto pos = typed<const int32_t>(info, 1, "positions", napi_int32_array);
  const int nHeads = (int)integer(info, 2, "nHeads", 1, 1 << 16);
  const int headDim = (int)integer(info, 3, "headDim", 1, 1 << 16);
  const int ropeDim = (int)integer(info, 4, "ropeDim", 0, headDim);
  if (info.Length() < 6 || !info[5].IsBoolean()) throw_type(env, "neox must be a boolean");
  const bool neox = info[5].As<Napi::Boolean>().Value();
  auto inv = typed<const float>(info, 6, "invFreq", napi_float32_array);
  if (ropeDim % 2 != 0) throw_range(env, "ropeDim = " + std::to_string(ropeDim) + " must be even");
  expect_len(env, x, (uint64_t)pos.length * nHeads * headDim, "x", "positions.length * nHeads * headDim");
  expect_len(env, inv, (uint64_t)ropeDim / 2, "invFreq", "ropeDim / 2");
  const size_t rows = pos.length;
  const size_t per = std::max<size_t>(1, 4096 / ((size_t)nHeads * headDim));
  const size_t ntasks = (rows + per - 1) / per;
  float* xs = x.data;
  const int half = ropeDim / 2;
  const RopeAngles* table = rope_table(pos.data, rows, inv.data, half);
  parallel_for(ntasks, [&](size_t t) {
    const size_t r0 = t * per, r1 = std::min(rows, r0 + per);
    float* xr = xs + r0 * nHeads * headDim;
    if (!table) {
      rope_ref(xr, pos.data + r0, r1 - r0, nHeads, headDim, ropeDim, neox, inv.data);
      return;
    }
    for (size_t r = r0; r < r1; r++) {
      const size_t o = (size_t)pos.data[r] * half;
      rope_with_angles(xr + (r - r0) * nHeads * headDim, 1, nHeads, headDim, ropeDim, neox, table->cs.data() + o,
                       table->sn.data() + o);
    }
  });
  return env.Undefined();
}

Napi::Value KvStore(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto kp = typed<uint16_t>(info, 0, "kPool", napi_uint16_array);
  auto vp = typed<uint16_t>(info, 1, "vPool", napi_uint16_array);
  auto k = typed<const float>(info, 2, "k", napi_float32_array);
  auto v = typed<const float>(info, 3, "v", napi_float32_array);
  auto slots = typed<const int32_t>(info, 4, "slots", napi_int32_array);
  const size_t kvDim = (size_t)integer(info, 5, "kvDim", 1, INT32_MAX);
  if (kp.length % kvDim != 0) throw_range(env, "kPool length is not a multiple of kvDim");
  expect_len(env, vp, kp.length, "vPool", "kPool.length");
  const size_t numSlots = kp.length / kvDim, T = slots.length;
  expect_len(env, k, (uint64_t)T * kvDim, "k", "slots.length * kvDim");
  expect_len(env, v, (uint64_t)T * kvDim, "v", "slots.length * kvDim");
  disjoint(env, kp, vp, "kPool", "vPool");
  for (size_t t = 0; t < T; t++)
    if (slots.data[t] < 0 || (size_t)slots.data[t] >= numSlots)
      throw_range(env, "slots[" + std::to_string(t) + "] = " + std::to_string(slots.data[t]) + " is outside 0.." +
                           std::to_string(numSlots) + " (pool slots)");
  const KernelTable* kt = g_kernels.load();
  for (size_t t = 0; t < T; t++) {
    kt->to_f16(kp.data + (size_t)slots.data[t] * kvDim, k.data + t * kvDim, kvDim);
    kt->to_f16(vp.data + (size_t)slots.data[t] * kvDim, v.data + t * kvDim, kvDim);
  }
  return env.Undefined();
}

// ---------------------------------------------------------------- attention

Napi::Value Attention(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto out = typed<float>(info, 0, "out", napi_float32_array);
  auto q = typed<const float>(info, 1, "q", napi_float32_array);
  auto kp = typed<const uint16_t>(info, 2, "kPool", napi_uint16_array);
  auto vp = typed<const uint16_t>(info, 3, "vPool", napi_uint16_array);
  auto rowSeq = typed<const int32_t>(info, 4, "rowSeq", napi_int32_array);
  auto rowPos = typed<const int32_t>(info, 5, "rowPos", napi_int32_array);
  auto tables = typed<const int32_t>(info, 6, "blockTables", napi_int32_array);
  auto offs = typed<const int32_t>(info, 7, "tableOffsets", napi_int32_array);
  const int nHeads = (int)integer(info, 8, "nHeads", 1, 1 << 16);
  const int nKvHeads = (int)integer(info, 9, "nKvHeads", 1, 1 << 16);
  const int headDim = (int)integer(info, 10, "headDim", 1, kMaxAttnHeadDim);
  const int blockSize = (int)integer(info, 11, "blockSize", 1, 1 << 24);
  const float scale = (float)number(info, 12, "scale");
  if (nHeads % nKvHeads != 0)
    throw_range(env, "nHeads = " + std::to_string(nHeads) + " must be a multiple of nKvHeads = " + std::to_string(nKvHeads));
  const size_t T = rowSeq.length, kvDim = (size_t)nKvHeads * headDim;
  expect_len(env, rowPos, T, "rowPos", "rowSeq.length");
  expect_len(env, q, (uint64_t)T * nHeads * headDim, "q", "T * nHeads * headDim");
  expect_len(env, out, (uint64_t)T * nHeads * headDim, "out", "T * nHeads * headDim");
  if (kp.length % kvDim != 0) throw_range(env, "kPool length is not a multiple of nKvHeads * headDim");
  expect_len(env, vp, kp.length, "vPool", "kPool.length");
  disjoint(env, out, q, "out", "q");
  disjoint(env, out, kp, "out", "kPool");
  disjoint(env, out, vp, "out", "vPool");
  const uint64_t numSlots = kp.length / kvDim;
  for (size_t t = 0; t < T; t++) {
    const int32_t s = rowSeq.data[t], pos = rowPos.data[t];
    const std::string row = "row " + std::to_string(t);
    if (s < 0 || (size_t)s >= offs.length)
      throw_range(env, row + ": rowSeq = " + std::to_string(s) + " is outside tableOffsets (" + std::to_string(offs.length) + ")");
    if (pos < 0) throw_range(env, row + ": rowPos = " + std::to_string(pos) + " is negative");
    const int64_t off = offs.data[s];
    const int64_t nblk = (int64_t)pos / blockSize + 1;
    if (off < 0 || off + nblk > (int64_t)tables.length)
      throw_range(env, row + ": its block table (offset " + std::to_string(off) + ", " + std::to_string(nblk) +
                           " blocks for position " + std::to_string(pos) + ") lies outside blockTables (" +
                           std::to_string(tables.length) + ")");
    for (int64_t j = 0; j < nblk; j++) {
      const int64_t b = tables.data[off + j];
      const int64_t used = j + 1 < nblk ? blockSize : (int64_t)pos % blockSize + 1;
      if (b < 0 || (uint64_t)(b * blockSize + used) > numSlots)
        throw_range(env, row + ": block " + std::to_string(b) + " (table entry " + std::to_string(off + j) +
                             ") is outside the pools (" + std::to_string(numSlots) + " slots)");
    }
  }
  AttnArgs a{out.data, q.data, kp.data, vp.data, rowSeq.data, rowPos.data, tables.data, offs.data,
             nHeads, nKvHeads, headDim, blockSize, scale};
  const KernelTable* kt = g_kernels.load();
  // One task per (row, KV head): the query heads sharing that KV head run together, so a call claims
  // a third (Qwen3/SmolLM2 groups) of the tasks it would per query head; each head's arithmetic is
  // unchanged.
  const int group = nHeads / nKvHeads;
  parallel_for(T * nKvHeads, [&](size_t task) {
    static thread_local std::vector<float> scores;
    const int t = (int)(task / nKvHeads), g = (int)(task % nKvHeads);
    if (scores.size() < (size_t)a.rowPos[t] + 1) scores.resize((size_t)a.rowPos[t] + 1);
    for (int h = g * group; h < (g + 1) * group; h++) kt->attn_task(a, t, h, scores.data());
  });
  return env.Undefined();
}

// ---------------------------------------------------------------- elementwise

// Elements per task: an add is memory-bound and cheaper alone than split below ~32K elements;
// silu's exp polynomial is worth splitting from ~8K.
constexpr size_t kElemChunk = 1 << 15, kSiluChunk = 1 << 13, kScanChunk = 1 << 16;

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto out = typed<float>(info, 0, "out", napi_float32_array);
  auto g = typed<const float>(info, 1, "gate", napi_float32_array);
  auto u = typed<const float>(info, 2, "up", napi_float32_array);
  expect_len(env, g, out.length, "gate", "out.length");
  expect_len(env, u, out.length, "up", "out.length");
  same_or_disjoint(env, out, g, "out", "gate");
  same_or_disjoint(env, out, u, "out", "up");
  const size_t n = out.length;
  const KernelTable* kt = g_kernels.load();
  parallel_for((n + kSiluChunk - 1) / kSiluChunk, [&](size_t c) {
    const size_t e0 = c * kSiluChunk, e1 = std::min(n, e0 + kSiluChunk);
    kt->silu_mul(out.data + e0, g.data + e0, u.data + e0, e1 - e0);
  });
  return env.Undefined();
}

Napi::Value Argmax(const Napi::CallbackInfo& info) {
  auto x = typed<const float>(info, 0, "x", napi_float32_array);
  return Napi::Number::New(info.Env(), (double)g_kernels.load()->argmax(x.data, x.length));
}

// The bits of the largest finite value of `type` that is <= maxAbs (maxAbs >= 0): non-negative
// floats order like their bits, so a binary search over the bits finds it exactly.
static uint32_t limit_bits(int type, double maxAbs) {
  const uint32_t top = type == T_F32 ? 0x7f7fffffu : type == T_BF16 ? 0x7f7fu : 0x7bffu;
  auto value = [type](uint32_t b) -> double {
    return type == T_F32 ? (double)bits_f32(b) : type == T_BF16 ? (double)bf16_to_f32((uint16_t)b) : (double)fp16_to_f32((uint16_t)b);
  };
  uint32_t lo = 0, hi = top;  // value(lo) = 0 <= maxAbs; find the largest b with value(b) <= maxAbs
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo + 1) / 2;
    if (value(mid) <= maxAbs) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

Napi::Value FirstOutOfRange(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int type = (int)integer(info, 1, "type", 0, 1 << 20);
  const double maxAbs = number(info, 2, "maxAbs");
  if (!(maxAbs >= 0)) throw_range(env, "maxAbs must be a number >= 0 (Infinity: finiteness only)");
  size_t n = 0;
  const void* data = nullptr;
  if (type == T_F32) {
    auto x = typed<const float>(info, 0, "x", napi_float32_array);
    data = x.data, n = x.length;
  } else if (type == T_F16 || type == T_BF16) {
    auto x = typed<const uint16_t>(info, 0, "x", napi_uint16_array);
    data = x.data, n = x.length;
  } else {
    throw_range(env, "type must be F32 (0), F16 (1) or BF16 (30), got " + std::to_string(type));
  }
  // Long arrays (a step's logits: rows × vocab) are scanned in chunks across the pool; the answer is
  // the first chunk's first hit, whichever thread found it.
  const KernelTable* kt = g_kernels.load();
  const uint32_t limit = limit_bits(type, maxAbs);
  const size_t elem = type == T_F32 ? 4 : 2;
  size_t i = n;
  if (n <= kScanChunk) {
    i = kt->first_above(data, n, type, limit);
  } else {
    const size_t tasks = (n + kScanChunk - 1) / kScanChunk;
    std::vector<size_t> hit(tasks);
    parallel_for(tasks, [&](size_t c) {
      const size_t e0 = c * kScanChunk, e1 = std::min(n, e0 + kScanChunk);
      hit[c] = e0 + kt->first_above((const uint8_t*)data + e0 * elem, e1 - e0, type, limit);
    });
    for (size_t c = 0; c < tasks; c++) {
      if (hit[c] < std::min(n, (c + 1) * kScanChunk)) { i = hit[c]; break; }
    }
  }
  return Napi::Number::New(env, i == n ? -1.0 : (double)i);
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto out = typed<float>(info, 0, "out", napi_float32_array);
  auto a = typed<const float>(info, 1, "a", napi_float32_array);
  auto b = typed<const float>(info, 2, "b", napi_float32_array);
  expect_len(env, a, out.length, "a", "out.length");
  expect_len(env, b, out.length, "b", "out.length");
  same_or_disjoint(env, out, a, "out", "a");
  same_or_disjoint(env, out, b, "out", "b");
  const size_t n = out.length;
  parallel_for((n + kElemChunk - 1) / kElemChunk, [&](size_t c) {
    const size_t e0 = c * kElemChunk, e1 = std::min(n, e0 + kElemChunk);
    add_ref(out.data + e0, a.data + e0, b.data + e0, e1 - e0);
  });
  return env.Undefined();
}

Napi::Value AddBias(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto x = typed<float>(info, 0, "x", napi_float32_array);
  auto bias = typed<const float>(info, 1, "bias", napi_float32_array);
  const size_t rows = (size_t)integer(info, 2, "rows", 0, INT32_MAX);
  const size_t dim = (size_t)integer(info, 3, "dim", 0, INT32_MAX);
  expect_len(env, x, (uint64_t)rows * dim, "x", "rows * dim");
  expect_len(env, bias, dim, "bias", "dim");
  disjoint(env, x, bias, "x", "bias");
  add_bias_ref(x.data, bias.data, rows, dim);
  return env.Undefined();
}

// ---------------------------------------------------------------- benchmark helper

}  // namespace ol
