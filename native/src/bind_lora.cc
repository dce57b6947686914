// N-API binding of the heterogeneous LoRA kernel: in one call, every row of a batch may carry no
// adapter, one, or a weighted list of several, each with its own rank.
//
//   for each term t, in list order:   y[r_t, :] += s_t · B_t · (A_t · x[r_t, :])
//   A_t: [rank_t, K], B_t: [N, rank_t] (row-major; f32, or f16 / bf16 when termTypes says so: the
//   values widen to f32 exactly, so a 16-bit adapter gives the same bits as its f32 copy at half
//   the bytes), s_t = weight · alpha/rank (resolved by the caller)
//
// Two ways to compute it, chosen per run of rows (setLoraPath):
//  * gathered (decode: each row its own adapter): phase 1 shrinks u_t = A_t · x[r_t] per term,
//    phase 2 expands row by row (tasks = rows × column chunks), each row's terms in list order;
//  * segmented (prefill: a run of consecutive rows with the same term list): the shrink
//    U = X · Aᵀ and the expand Y += s · U · Bᵀ run as register-tiled products over the run
//    (kernel table lora_shrink_f32 / lora_expand_f32; B packed in 8-column panels once per call).
// Every value is reduced in the fixed 8-lane order of the kernel table's dot_f32 either way, so
// a row's result depends only on its own terms — not on the batch, on how rows are grouped, on
// which path they take, or on the thread count.
#include <string>

#include "lora_plan.h"

namespace ol {

namespace {
const char* const kPathNames[] = {"auto", "gathered", "segmented"};
}  // namespace

Napi::Value SetLoraPath(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "path must be \"auto\", \"gathered\" or \"segmented\"");
  const std::string s = info[0].As<Napi::String>().Utf8Value();
  for (int i = 0; i < 3; i++) {
    if (s == kPathNames[i]) {
      set_lora_path(i);
      return env.Undefined();
    }
  }
  throw_range(env, "path must be \"auto\", \"gathered\" or \"segmented\", got \"" + s + "\"");
}

Napi::Value GetLoraPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), kPathNames[lora_path()]);
}

// ---------------------------------------------------------------- registered adapter matrices
// An adapter's (A, B) pairs registered once (when it is loaded) and named by id in matmulMulti's
// term lists, so a decode step does not re-read thousands of typed-array objects through N-API
// (~150 µs per call measured with 32 terms × 3 products). The registry holds a strong reference
// to both arrays until loraRelease; ids are per thread (per N-API environment) and reused only
// after release.
namespace {
struct Registered {
  const void* a;
  const void* b;
  size_t rank, K, N;
  int type;
  napi_ref ra, rb;  // null when the slot is free
};
struct Registry {
  std::vector<Registered> items;
  std::vector<uint32_t> freeIds;
};
Registry& registry(const Napi::Env& env) {
  Registry* r = env.GetInstanceData<Registry>();
  if (!r) {
    r = new Registry();
    env.SetInstanceData(r);  // deleted with the environment
  }
  return *r;
}
}  // namespace

Napi::Value LoraRegister(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const int type = (int)integer(info, 2, "type", 0, 1 << 20);
  if (type != T_F32 && type != T_F16 && type != T_BF16) throw_range(env, "type must be F32 (0), F16 (1) or BF16 (30)");
  const napi_typedarray_type want = type == T_F32 ? napi_float32_array : napi_uint16_array;
  auto a = typed<const uint8_t>(info, 0, "a", want);  // element pointers; lengths in elements of `want`
  auto b = typed<const uint8_t>(info, 1, "b", want);
  const size_t K = (size_t)integer(info, 3, "K", 1, INT32_MAX);
  const size_t N = (size_t)integer(info, 4, "N", 1, INT32_MAX);
  if (a.length == 0 || a.length % K != 0) throw_range(env, "a length must be rank * K (K = " + std::to_string(K) + ")");
  const size_t rank = a.length / K;
  if (rank > 1024) throw_range(env, "a has rank " + std::to_string(rank) + " > 1024");
  if (b.length != N * rank) throw_range(env, "b length must be N * rank = " + std::to_string(N * rank));
  Registered e{a.data, b.data, rank, K, N, type, nullptr, nullptr};
  if (napi_create_reference(env, info[0], 1, &e.ra) != napi_ok || napi_create_reference(env, info[1], 1, &e.rb) != napi_ok)
    throw_type(env, "cannot reference the matrices");
  Registry& r = registry(env);
  uint32_t id;
  if (!r.freeIds.empty()) {
    id = r.freeIds.back();
    r.freeIds.pop_back();
    r.items[id] = e;
  } else {
    id = (uint32_t)r.items.size();
    r.items.push_back(e);
  }
  return Napi::Number::New(env, id);
}

Napi::Value LoraRelease(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  Registry& r = registry(env);
  const size_t id = (size_t)integer(info, 0, "id", 0, INT32_MAX);
  if (id >= r.items.size() || !r.items[id].ra) throw_range(env, "no registered LoRA matrices with id " + std::to_string(id));
  napi_delete_reference(env, r.items[id].ra);
  napi_delete_reference(env, r.items[id].rb);
  r.items[id] = Registered{};
  r.freeIds.push_back((uint32_t)id);
  return env.Undefined();
}

std::vector<LoraTerm> registered_lora_terms(const Napi::Env& env, View<const int32_t> rows, View<const float> scales,
                                            View<const int32_t> ids, size_t M, size_t K, size_t N, const void* y,
                                            size_t yBytes, const std::string& what) {
  const Registry& r = registry(env);
  expect_len(env, scales, rows.length, (what + "scales").c_str(), "rows.length");
  expect_len(env, ids, rows.length, (what + "ids").c_str(), "rows.length");
  std::vector<LoraTerm> terms(rows.length);
  for (size_t t = 0; t < rows.length; t++) {
    const int32_t row = rows.data[t], id = ids.data[t];
    const std::string at = "[" + std::to_string(t) + "]";
    if (row < 0 || (size_t)row >= M) throw_range(env, what + "rows" + at + " = " + std::to_string(row) + " is outside 0.." + std::to_string(M));
    if (id < 0 || (size_t)id >= r.items.size() || !r.items[id].ra)
      throw_range(env, what + "ids" + at + " = " + std::to_string(id) + " is not a registered LoRA pair");
    const Registered& e = r.items[id];
    if (e.K != K || e.N != N)
      throw_range(env, what + "ids" + at + " is a pair for K = " + std::to_string(e.K) + ", N = " + std::to_string(e.N) +
                           ", the product has K = " + std::to_string(K) + ", N = " + std::to_string(N));
    const size_t esz = e.type == T_F32 ? 4 : 2;
    const auto inside = [&](const void* p, size_t n) { return (const char*)p < (const char*)y + yBytes && (const char*)y < (const char*)p + n; };
    if (inside(e.a, e.rank * K * esz) || inside(e.b, N * e.rank * esz)) throw_range(env, what + "ids" + at + ": the output overlaps its matrices");
    terms[t] = LoraTerm{row, scales.data[t], e.a, e.b, e.rank, e.type};
  }
  return terms;
}

Napi::Value LoraApply(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto y = typed<float>(info, 0, "y", napi_float32_array);
  auto x = typed<const float>(info, 1, "x", napi_float32_array);
  const size_t M = (size_t)integer(info, 2, "M", 0, INT32_MAX);
  const size_t K = (size_t)integer(info, 3, "K", 1, INT32_MAX);
  const size_t N = (size_t)integer(info, 4, "N", 1, INT32_MAX);
  auto rows = typed<const int32_t>(info, 5, "termRows", napi_int32_array);
  auto scales = typed<const float>(info, 6, "termScales", napi_float32_array);
  if (info.Length() < 9 || !info[7].IsArray() || !info[8].IsArray())
    throw_type(env, "loraApply(y, x, M, K, N, termRows, termScales, As: (Float32Array | Uint16Array)[], Bs: (Float32Array | Uint16Array)[], termTypes?: Int32Array)");
  View<const int32_t> types{};
  const bool typed16 = info.Length() > 9 && !info[9].IsUndefined();
  if (typed16) types = typed<const int32_t>(info, 9, "termTypes", napi_int32_array);
  expect_len(env, y, (uint64_t)M * N, "y", "M * N");
  expect_len(env, x, (uint64_t)M * K, "x", "M * K");
  disjoint(env, y, x, "y", "x");
  std::vector<LoraTerm> terms = parse_lora_terms(env, rows, scales, info[7].As<Napi::Array>(), info[8].As<Napi::Array>(),
                                                 typed16 ? &types : nullptr, M, K, N, y.data, y.length * sizeof(float), "");
  if (terms.empty()) return env.Undefined();
  static thread_local LoraScratch scratch;
  LoraPlan plan(std::move(terms), y.data, x.data, M, K, N, scratch);
  LoraPlan* p = &plan;
  run_lora_plans(&p, 1, true);
  return env.Undefined();
}

}  // namespace ol
