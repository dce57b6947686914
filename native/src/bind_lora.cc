// N-API binding of the heterogeneous LoRA kernel: in one call, every row of a batch may carry no
// adapter, one, or a weighted list of several, each with its own rank.
//
//   for each term t, in list order:   y[r_t, :] += s_t · B_t · (A_t · x[r_t, :])
//   A_t: [rank_t, K], B_t: [N, rank_t] (row-major f32), s_t = weight · alpha/rank (resolved by the caller)
//
// Phase 1 (shrink, one task per term): u_t = A_t · x[r_t]; phase 2 (expand, tasks = rows × column
// chunks): each row applies its own terms in list order. Every value is reduced in the fixed 8-lane
// order of the kernel table's dot_f32, so a row's result depends only on its own terms — not on the
// batch, on how rows are grouped by adapter, or on the thread count.
#include <algorithm>
#include <string>
#include <vector>

#include "napi_args.h"
#include "threadpool.h"

namespace ol {

namespace {
constexpr size_t kMaxLoraRank = 1024;
constexpr size_t kColumnChunk = 256;

struct Term {
  int32_t row;
  float scale;
  const float* a;
  const float* b;
  size_t rank;
  size_t uOffset;
};
}  // namespace

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
    throw_type(env, "loraApply(y, x, M, K, N, termRows, termScales, As: Float32Array[], Bs: Float32Array[])");
  const Napi::Array as = info[7].As<Napi::Array>(), bs = info[8].As<Napi::Array>();
  const size_t T = rows.length;
  expect_len(env, y, (uint64_t)M * N, "y", "M * N");
  expect_len(env, x, (uint64_t)M * K, "x", "M * K");
  expect_len(env, scales, T, "termScales", "termRows.length");
  if (as.Length() != T || bs.Length() != T) throw_range(env, "As and Bs must have one matrix per term");
  disjoint(env, y, x, "y", "x");

  std::vector<Term> terms(T);
  size_t uTotal = 0;
  for (size_t t = 0; t < T; t++) {
    const std::string at = "As[" + std::to_string(t) + "]", bt = "Bs[" + std::to_string(t) + "]";
    const Napi::Value av = as.Get((uint32_t)t), bv = bs.Get((uint32_t)t);
    if (!av.IsTypedArray() || av.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) throw_type(env, at + " must be a Float32Array");
    if (!bv.IsTypedArray() || bv.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) throw_type(env, bt + " must be a Float32Array");
    Napi::Float32Array a = av.As<Napi::Float32Array>(), b = bv.As<Napi::Float32Array>();
    const size_t alen = a.ElementLength();
    if (alen == 0 || alen % K != 0) throw_range(env, at + " length must be rank * K (K = " + std::to_string(K) + ")");
    const size_t rank = alen / K;
    if (rank > kMaxLoraRank) throw_range(env, at + " has rank " + std::to_string(rank) + " > " + std::to_string(kMaxLoraRank));
    if (b.ElementLength() != N * rank) throw_range(env, bt + " length must be N * rank = " + std::to_string(N * rank));
    const int32_t r = rows.data[t];
    if (r < 0 || (size_t)r >= M) throw_range(env, "termRows[" + std::to_string(t) + "] = " + std::to_string(r) + " is outside 0.." + std::to_string(M));
    const auto inside = [](const float* p, size_t n, const float* q, size_t m) { return p < q + m && q < p + n; };
    if (inside(a.Data(), alen, y.data, y.length) || inside(b.Data(), N * rank, y.data, y.length)) throw_range(env, "y must not overlap the adapter matrices");
    terms[t] = Term{r, scales.data[t], a.Data(), b.Data(), rank, uTotal};
    uTotal += rank;
  }
  if (T == 0) return env.Undefined();

  const KernelTable* kt = g_kernels.load();
  static thread_local std::vector<float> u;
  u.resize(uTotal);
  float* ud = u.data();
  const float* xd = x.data;
  parallel_for(T, [&](size_t t) {
    const Term& m = terms[t];
    kt->dot_rows_f32(ud + m.uOffset, m.a, xd + (size_t)m.row * K, K, m.rank);
  });

  // Terms grouped by row, each row's terms kept in list order.
  std::vector<size_t> order(T);
  for (size_t t = 0; t < T; t++) order[t] = t;
  std::stable_sort(order.begin(), order.end(), [&](size_t p, size_t q) { return terms[p].row < terms[q].row; });
  std::vector<size_t> groupStart;
  for (size_t i = 0; i < T; i++)
    if (i == 0 || terms[order[i]].row != terms[order[i - 1]].row) groupStart.push_back(i);
  groupStart.push_back(T);
  const size_t groups = groupStart.size() - 1, chunks = (N + kColumnChunk - 1) / kColumnChunk;
  float* yd = y.data;
  parallel_for(groups * chunks, [&](size_t task) {
    const size_t g = task / chunks, c = task % chunks;
    const size_t n0 = c * kColumnChunk, n1 = std::min(N, n0 + kColumnChunk);
    float* yr = yd + (size_t)terms[order[groupStart[g]]].row * N;
    float delta[kColumnChunk];
    for (size_t i = groupStart[g]; i < groupStart[g + 1]; i++) {
      const Term& m = terms[order[i]];
      kt->dot_rows_f32(delta, m.b + n0 * m.rank, ud + m.uOffset, m.rank, n1 - n0);
      for (size_t n = n0; n < n1; n++) yr[n] = yr[n] + m.scale * delta[n - n0];
    }
  });
  return env.Undefined();
}

}  // namespace ol
