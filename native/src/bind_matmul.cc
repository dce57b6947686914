// N-API bindings: matrix products, row lookup, (de)quantization. Contract: native/openlora_native.d.ts.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "lora_plan.h"
#include "napi_args.h"
#include "threadpool.h"

namespace ol {

struct MatmulScratch {
  std::vector<float> f, d;
  std::vector<int8_t> q;
  std::vector<int16_t> bs;
};

// Rounds or quantizes x [M, K] to wType's dot type (ggml's numerics), into `scratch` when it
// must be rewritten.
static PreparedX prepare_x(MatmulScratch& scratch, const float* xs, size_t M, size_t K, int wType) {
  static std::atomic<uint64_t> next_id{1};
  PreparedX px{};
  px.M = M;
  px.K = K;
  px.id = next_id.fetch_add(1, std::memory_order_relaxed);
  const size_t nth = (size_t)pool_threads();
  if (wType == T_Q8_0 || wType == T_Q4_0) {
    px.type = T_Q8_0;
    scratch.q.resize(M * K);
    scratch.d.resize(M * (K / QK));
    int8_t* q = scratch.q.data();
    float* d = scratch.d.data();
    const KernelTable* kq = g_kernels.load();
    if (M > 1 && nth > 1) {
      parallel_for(M, [&](size_t m) { kq->quantize_q8_split(q + m * K, d + m * (K / QK), xs + m * K, K); });
    } else {
      for (size_t m = 0; m < M; m++) kq->quantize_q8_split(q + m * K, d + m * (K / QK), xs + m * K, K);
    }
    px.q = q;
    px.d = d;
  } else if (is_kquant(wType)) {
    // Q8_K activations: the scalar reference quantizer for both kernel tables (O(M·K), small).
    px.type = T_Q8_K;
    scratch.q.resize(M * K);
    scratch.d.resize(M * (K / QK_K));
    scratch.bs.resize(M * (K / 32));
    int8_t* q = scratch.q.data();
    float* d = scratch.d.data();
    int16_t* bs = scratch.bs.data();
    auto qrow = [&](size_t m) { quantize_row_q8_K_split(q + m * K, d + m * (K / QK_K), bs + m * (K / 32), xs + m * K, K); };
    if (M > 1 && nth > 1) parallel_for(M, qrow);
    else for (size_t m = 0; m < M; m++) qrow(m);
    px.q = q;
    px.d = d;
    px.bs = bs;
  } else if (wType == T_F16 || wType == T_BF16) {
    px.type = T_F32;
    scratch.f.resize(M * K);
    float* f = scratch.f.data();
    if (wType == T_F16) g_kernels.load()->round_f16(f, xs, M * K);
    else g_kernels.load()->round_bf16(f, xs, M * K);
    px.f = f;
  } else {
    px.type = T_F32;
    px.f = xs;
  }
  return px;
}

struct Product {
  float* out;        // [M, N]
  const uint8_t* w;  // [N, K] of the shared wType
  size_t N;
};

// out_i = x·W_iᵀ for every product, in one parallel region. Tasks are chunks of output columns
// (weight rows) × blocks of activation rows; each output element is computed by exactly one task
// with the same operations whatever the split, so fusing products never changes a bit.
// plans (optional, one per product, null for none): each column task also runs the gathered LoRA
// rows' expands of its rows and columns right after writing them, their B bytes prefetched while
// its tiles compute (t_prefetch).
static void run_products(const PreparedX& px, int wType, const Product* ps, size_t np, LoraPlan* const* plans = nullptr) {
  const KernelTable* kt = g_kernels.load();
  const size_t M = px.M, K = px.K;
  const size_t nth = (size_t)pool_threads();
  const size_t MB = 64;
  const size_t mblocks = (M + MB - 1) / MB;
  size_t totalN = 0;
  for (size_t i = 0; i < np; i++) totalN += ps[i].N;
  size_t chunk = totalN;
  if (nth > 1) {
    const size_t target = std::max<size_t>(1, nth * 8 / mblocks);
    // Multiples of 16 columns once chunks are that wide (the AMX tiles take 16 weight rows).
    const size_t raw = (totalN + target - 1) / target;
    chunk = raw >= 16 ? (raw + 15) / 16 * 16 : std::max<size_t>(4, (raw + 3) / 4 * 4);
  }
  // first[i]: index of product i's first chunk; first[np]: total chunks.
  size_t first[9];
  first[0] = 0;
  for (size_t i = 0; i < np; i++) first[i + 1] = first[i] + (ps[i].N + chunk - 1) / chunk;
  const size_t nchunks = first[np];
  auto task = [&](size_t t) {
    const size_t c = t % nchunks, mb = t / nchunks;
    size_t i = 0;
    while (c >= first[i + 1]) i++;
    const Product& p = ps[i];
    const size_t n0 = (c - first[i]) * chunk, n1 = std::min(p.N, n0 + chunk);
    const size_t m0 = mb * MB, m1 = std::min(M, m0 + MB);
    PreparedX sub = px;
    sub.M = m1 - m0;
    if (px.type == T_Q8_0) {
      sub.q = px.q + m0 * K;
      sub.d = px.d + m0 * (K / QK);
    } else if (px.type == T_Q8_K) {
      sub.q = px.q + m0 * K;
      sub.d = px.d + m0 * (K / QK_K);
      sub.bs = px.bs + m0 * (K / 32);
    } else {
      sub.f = px.f + m0 * K;
    }
    const LoraPlan* plan = plans ? plans[i] : nullptr;
    if (!plan || !plan->has_gathered()) {
      kt->matmul_range(p.out + m0 * p.N, sub, p.w, wType, p.N, n0, n1);
      return;
    }
    static thread_local std::vector<PrefetchRange> ranges;
    ranges.clear();
    plan->b_ranges(ranges, m0, m1, n0, n1);
    t_prefetch.reset(ranges.data(), ranges.data() + ranges.size());
    kt->matmul_range(p.out + m0 * p.N, sub, p.w, wType, p.N, n0, n1);
    t_prefetch.reset();
    plan->expand_rows(m0, m1, n0, n1);
  };
  parallel_for(nchunks * mblocks, task);
}

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto out = typed<float>(info, 0, "out", napi_float32_array);
  auto x = typed<const float>(info, 1, "x", napi_float32_array);
  auto w = typed<const uint8_t>(info, 2, "w", napi_uint8_array);
  const int wType = wtype_arg(info, 3, "wType");
  const size_t M = (size_t)integer(info, 4, "M", 0, INT32_MAX);
  const size_t N = (size_t)integer(info, 5, "N", 0, INT32_MAX);
  const size_t K = (size_t)integer(info, 6, "K", 0, INT32_MAX);
  const int blk = type_block(wType);
  if (K % blk != 0)
    throw_range(env, "K = " + std::to_string(K) + " must be a multiple of " + std::to_string(blk) + " for " + type_name(wType));
  expect_len(env, x, (uint64_t)M * K, "x", "M * K");
  expect_len(env, out, (uint64_t)M * N, "out", "M * N");
  expect_len(env, w, (uint64_t)N * row_bytes(wType, K), "w", "N * row bytes of wType for K");
  disjoint(env, out, x, "out", "x");
  disjoint(env, out, w, "out", "w");
  if (M == 0 || N == 0) return env.Undefined();
  if (K == 0) {
    std::fill(out.data, out.data + M * N, 0.0f);
    return env.Undefined();
  }
  static thread_local MatmulScratch scratch;
  const PreparedX px = prepare_x(scratch, x.data, M, K, wType);
  const Product p{out.data, w.data, N};
  run_products(px, wType, &p, 1);
  return env.Undefined();
}

// matmulMulti(outs[], x, ws[], wType, M, K): out_i = x·W_iᵀ for up to 8 weights of one type
// sharing the input (q/k/v, gate/up). x is prepared once and all products share one parallel
// region; results are bit-identical to separate matmul calls.
Napi::Value MatmulMulti(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsArray() || !info[2].IsArray())
    throw_type(env, "matmulMulti(outs: Float32Array[], x: Float32Array, ws: Uint8Array[], wType, M, K)");
  const Napi::Array outsArr = info[0].As<Napi::Array>();
  const Napi::Array wsArr = info[2].As<Napi::Array>();
  auto x = typed<const float>(info, 1, "x", napi_float32_array);
  const int wType = wtype_arg(info, 3, "wType");
  const size_t M = (size_t)integer(info, 4, "M", 0, INT32_MAX);
  const size_t K = (size_t)integer(info, 5, "K", 1, INT32_MAX);
  const size_t np = outsArr.Length();
  if (np == 0 || np > 8 || wsArr.Length() != np) throw_range(env, "matmulMulti: outs and ws must have the same length, 1..8");
  const int blk = type_block(wType);
  if (K % blk != 0)
    throw_range(env, "K = " + std::to_string(K) + " must be a multiple of " + std::to_string(blk) + " for " + type_name(wType));
  expect_len(env, x, (uint64_t)M * K, "x", "M * K");
  const size_t rb = row_bytes(wType, K);
  Product ps[8];
  for (size_t i = 0; i < np; i++) {
    const Napi::Value ov = outsArr.Get((uint32_t)i), wv = wsArr.Get((uint32_t)i);
    if (!ov.IsTypedArray() || ov.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw_type(env, "outs[" + std::to_string(i) + "] must be a Float32Array");
    if (!wv.IsTypedArray() || wv.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw_type(env, "ws[" + std::to_string(i) + "] must be a Uint8Array");
    Napi::Float32Array o = ov.As<Napi::Float32Array>();
    const Napi::Uint8Array w = wv.As<Napi::Uint8Array>();
    if (w.ElementLength() % rb != 0)
      throw_range(env, "ws[" + std::to_string(i) + "] length is not a whole number of rows of K = " + std::to_string(K));
    const size_t N = w.ElementLength() / rb;
    if (o.ElementLength() != M * N)
      throw_range(env, "outs[" + std::to_string(i) + "] length must be M * N = " + std::to_string(M * N));
    ps[i] = Product{o.Data(), w.Data(), N};
    const auto overlaps = [](const void* a, size_t an, const void* b, size_t bn) {
      const char *pa = (const char*)a, *pb = (const char*)b;
      return pa < pb + bn && pb < pa + an;
    };
    if (overlaps(o.Data(), o.ByteLength(), x.data, M * K * 4) || overlaps(o.Data(), o.ByteLength(), w.Data(), w.ByteLength()))
      throw_range(env, "outs[" + std::to_string(i) + "] overlaps x or a weight");
    for (size_t j = 0; j < i; j++)
      if (overlaps(o.Data(), o.ByteLength(), ps[j].out, M * ps[j].N * 4)) throw_range(env, "outs overlap each other");
  }
  // LoRA terms per product (optional): outs[i] += the loraApply update of lora[i], fused.
  static thread_local LoraScratch loraScratch[8];
  std::vector<LoraPlan> plans;
  plans.reserve(np);
  LoraPlan* planOf[8] = {};
  const bool withLora = info.Length() > 6 && !info[6].IsUndefined() && !info[6].IsNull();
  if (withLora) {
    if (!info[6].IsArray() || info[6].As<Napi::Array>().Length() != np)
      throw_type(env, "lora must be an array with one entry (a term list, or null) per product");
    const Napi::Array specs = info[6].As<Napi::Array>();
    for (size_t i = 0; i < np; i++) {
      const Napi::Value v = specs.Get((uint32_t)i);
      if (v.IsUndefined() || v.IsNull()) continue;
      const std::string what = "lora[" + std::to_string(i) + "].";
      if (!v.IsObject()) throw_type(env, what.substr(0, what.size() - 1) + " must be {rows, scales, ids} or null");
      const Napi::Object o = v.As<Napi::Object>();
      const auto rows = typed_value<const int32_t>(env, o.Get("rows"), what + "rows", napi_int32_array);
      const auto scales = typed_value<const float>(env, o.Get("scales"), what + "scales", napi_float32_array);
      const auto ids = typed_value<const int32_t>(env, o.Get("ids"), what + "ids", napi_int32_array);
      std::vector<LoraTerm> terms = registered_lora_terms(env, rows, scales, ids, M, K, ps[i].N, ps[i].out, M * ps[i].N * sizeof(float), what);
      if (terms.empty()) continue;
      plans.emplace_back(std::move(terms), ps[i].out, x.data, M, K, ps[i].N, loraScratch[i]);
      planOf[i] = &plans.back();
    }
  }
  if (M == 0) return env.Undefined();
  static thread_local MatmulScratch scratch;
  const PreparedX px = prepare_x(scratch, x.data, M, K, wType);
  if (plans.empty()) {
    run_products(px, wType, ps, np);
    return env.Undefined();
  }
  std::vector<LoraPlan*> list;
  for (LoraPlan& p : plans) list.push_back(&p);
  run_lora_plans(list.data(), list.size(), false);
  run_products(px, wType, ps, np, planOf);
  run_lora_segment_expands(list.data(), list.size());
  return env.Undefined();
}


// ---------------------------------------------------------------- getRows, quantize, dequantize

Napi::Value GetRows(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto out = typed<float>(info, 0, "out", napi_float32_array);
  auto w = typed<const uint8_t>(info, 1, "w", napi_uint8_array);
  const int wType = wtype_arg(info, 2, "wType");
  const size_t K = (size_t)integer(info, 3, "K", 1, INT32_MAX);
  auto ids = typed<const int32_t>(info, 4, "ids", napi_int32_array);
  if (K % type_block(wType) != 0)
    throw_range(env, "K = " + std::to_string(K) + " must be a multiple of " + std::to_string(type_block(wType)) +
                         " for " + type_name(wType));
  const size_t rb = row_bytes(wType, K);
  if (w.length % rb != 0)
    throw_range(env, "w has " + std::to_string(w.length) + " bytes, not a whole number of rows of " +
                         std::to_string(rb) + " bytes");
  const size_t rows = w.length / rb;
  expect_len(env, out, (uint64_t)ids.length * K, "out", "ids.length * K");
  disjoint(env, out, w, "out", "w");
  for (size_t i = 0; i < ids.length; i++) {
    if (ids.data[i] < 0 || (size_t)ids.data[i] >= rows)
      throw_range(env, "ids[" + std::to_string(i) + "] = " + std::to_string(ids.data[i]) + " is outside 0.." +
                           std::to_string(rows) + " (rows of w)");
  }
  for (size_t i = 0; i < ids.length; i++) dequantize_row(out.data + i * K, w.data + (size_t)ids.data[i] * rb, wType, K);
  return env.Undefined();
}

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto dst = typed<uint8_t>(info, 0, "dst", napi_uint8_array);
  auto src = typed<const float>(info, 1, "src", napi_float32_array);
  const int type = wtype_arg(info, 2, "type");
  if (!type_quantizable(type))
    throw_range(env, std::string("quantize does not support ") + type_name(type) +
                         " (K-quant weights are read-only: dequantize, getRows and matmul accept them)");
  const size_t blk = type_block(type);
  if (src.length % blk != 0)
    throw_range(env, "src length " + std::to_string(src.length) + " is not a multiple of the block size " +
                         std::to_string(blk) + " of " + type_name(type));
  expect_len(env, dst, row_bytes(type, src.length), "dst", "bytes of src in the type");
  disjoint(env, dst, src, "dst", "src");
  // Blocks are independent: chunk the work across threads.
  const size_t chunk = 1 << 16;  // elements, a multiple of every block size
  const size_t nchunks = (src.length + chunk - 1) / chunk;
  uint8_t* d = dst.data;
  const float* s = src.data;
  const size_t n = src.length;
  parallel_for(nchunks, [&](size_t c) {
    const size_t e0 = c * chunk, e1 = std::min(n, e0 + chunk), len = e1 - e0;
    uint8_t* o = d + row_bytes(type, e0);
    const float* in = s + e0;
    switch (type) {
      case T_F32: std::memcpy(o, in, len * 4); break;
      case T_F16:
        for (size_t i = 0; i < len; i++) { const uint16_t h = f32_to_fp16(in[i]); std::memcpy(o + 2 * i, &h, 2); }
        break;
      case T_BF16:
        for (size_t i = 0; i < len; i++) { const uint16_t h = f32_to_bf16(in[i]); std::memcpy(o + 2 * i, &h, 2); }
        break;
      case T_Q8_0: quantize_row_q8_0(o, in, len); break;
      case T_Q4_0: quantize_row_q4_0(o, in, len); break;
    }
  });
  return env.Undefined();
}

Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto dst = typed<float>(info, 0, "dst", napi_float32_array);
  auto src = typed<const uint8_t>(info, 1, "src", napi_uint8_array);
  const int type = wtype_arg(info, 2, "type");
  const size_t bb = type_block_bytes(type), blk = type_block(type);
  if (src.length % bb != 0)
    throw_range(env, "src has " + std::to_string(src.length) + " bytes, not a multiple of " + std::to_string(bb) +
                         " (bytes per block of " + type_name(type) + ")");
  expect_len(env, dst, (uint64_t)(src.length / bb) * blk, "dst", "elements in src");
  disjoint(env, dst, src, "dst", "src");
  const size_t chunk = 1 << 16;
  const size_t n = dst.length, nchunks = (n + chunk - 1) / chunk;
  float* d = dst.data;
  const uint8_t* s = src.data;
  parallel_for(nchunks, [&](size_t c) {
    const size_t e0 = c * chunk, e1 = std::min(n, e0 + chunk);
    dequantize_row(d + e0, s + row_bytes(type, e0), type, e1 - e0);
  });
  return env.Undefined();
}

// ---------------------------------------------------------------- rmsNorm, rope, kvStore

}  // namespace ol
