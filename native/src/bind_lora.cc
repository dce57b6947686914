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
#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "napi_args.h"
#include "threadpool.h"

namespace ol {

namespace {
constexpr size_t kMaxLoraRank = 1024;
constexpr size_t kColumnChunk = 256;
constexpr size_t kShrinkRows = 32;     // rows per shrink task of a segment
constexpr size_t kExpandRows = 48;     // rows per expand task of a segment
constexpr size_t kMinSegmentRows = 4;  // "auto": shorter runs are gathered

enum : int { kAuto = 0, kGathered = 1, kSegmented = 2 };
const char* const kPathNames[] = {"auto", "gathered", "segmented"};
std::atomic<int> g_loraPath{kAuto};

struct Term {
  int32_t row;
  float scale;
  const void* a;  // f32, or uint16 of `type`
  const void* b;
  size_t rank;
  int type;  // T_F32, T_F16 or T_BF16 (A and B alike)
};

float widen(const void* p, size_t i, int type) {
  if (type == T_F32) return ((const float*)p)[i];
  const uint16_t h = ((const uint16_t*)p)[i];
  return type == T_BF16 ? bf16_to_f32(h) : fp16_to_f32(h);
}

// A row's terms: order[begin .. end).
struct Group {
  int32_t row;
  size_t begin, end;
};

// Consecutive rows groups[group] .. groups[group + rows - 1] with one term list: segTerms[first ..
// first + count).
struct Segment {
  size_t group, rows, first, count;
};

struct SegTerm {
  const Term* t;
  size_t u, bp;  // offsets of U ([rows, rank]) and of B's panels
  const float* a;  // A in f32 (the term's own, or widened once per call)
};

// A task: rows [r0, r0 + block) of segment `seg` (and, for a shrink, its term `term`).
struct SegBlock {
  size_t seg, term, r0;
};

// Packs B's columns [n0, n1) (n0 a multiple of 8) into panels at bp.
struct Pack {
  const void* b;
  size_t rank, bp, n0, n1;
  int type;
};

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
}  // namespace

Napi::Value SetLoraPath(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "path must be \"auto\", \"gathered\" or \"segmented\"");
  const std::string s = info[0].As<Napi::String>().Utf8Value();
  for (int i = 0; i < 3; i++) {
    if (s == kPathNames[i]) {
      g_loraPath.store(i);
      return env.Undefined();
    }
  }
  throw_range(env, "path must be \"auto\", \"gathered\" or \"segmented\", got \"" + s + "\"");
}

Napi::Value GetLoraPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), kPathNames[g_loraPath.load()]);
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
  const Napi::Array as = info[7].As<Napi::Array>(), bs = info[8].As<Napi::Array>();
  const size_t T = rows.length;
  const bool typed16 = info.Length() > 9 && !info[9].IsUndefined();
  View<const int32_t> types{};
  if (typed16) {
    types = typed<const int32_t>(info, 9, "termTypes", napi_int32_array);
    expect_len(env, types, T, "termTypes", "termRows.length");
  }
  expect_len(env, y, (uint64_t)M * N, "y", "M * N");
  expect_len(env, x, (uint64_t)M * K, "x", "M * K");
  expect_len(env, scales, T, "termScales", "termRows.length");
  if (as.Length() != T || bs.Length() != T) throw_range(env, "As and Bs must have one matrix per term");
  disjoint(env, y, x, "y", "x");

  std::vector<Term> terms(T);
  Napi::Value prevA, prevB;  // consecutive terms often share their matrices (a prefill chunk)
  for (size_t t = 0; t < T; t++) {
    const int32_t r = rows.data[t];
    if (r < 0 || (size_t)r >= M) throw_range(env, "termRows[" + std::to_string(t) + "] = " + std::to_string(r) + " is outside 0.." + std::to_string(M));
    const Napi::Value av = as.Get((uint32_t)t), bv = bs.Get((uint32_t)t);
    const int type = typed16 ? types.data[t] : T_F32;
    const auto name = [t](const char* m) { return std::string(m) + "[" + std::to_string(t) + "]"; };
    if (type != T_F32 && type != T_F16 && type != T_BF16)
      throw_range(env, name("termTypes") + " = " + std::to_string(type) + " is not F32 (0), F16 (1) or BF16 (30)");
    if (t > 0 && av.StrictEquals(prevA) && bv.StrictEquals(prevB) && type == terms[t - 1].type) {
      terms[t] = Term{r, scales.data[t], terms[t - 1].a, terms[t - 1].b, terms[t - 1].rank, type};
      continue;
    }
    const napi_typedarray_type want = type == T_F32 ? napi_float32_array : napi_uint16_array;
    const char* wantName = type == T_F32 ? " must be a Float32Array" : " must be a Uint16Array (termTypes says 16-bit)";
    if (!av.IsTypedArray() || av.As<Napi::TypedArray>().TypedArrayType() != want) throw_type(env, name("As") + wantName);
    if (!bv.IsTypedArray() || bv.As<Napi::TypedArray>().TypedArrayType() != want) throw_type(env, name("Bs") + wantName);
    const Napi::TypedArray a = av.As<Napi::TypedArray>(), b = bv.As<Napi::TypedArray>();
    const size_t alen = a.ElementLength();
    if (alen == 0 || alen % K != 0) throw_range(env, name("As") + " length must be rank * K (K = " + std::to_string(K) + ")");
    const size_t rank = alen / K;
    if (rank > kMaxLoraRank) throw_range(env, name("As") + " has rank " + std::to_string(rank) + " > " + std::to_string(kMaxLoraRank));
    if (b.ElementLength() != N * rank) throw_range(env, name("Bs") + " length must be N * rank = " + std::to_string(N * rank));
    const uint8_t* ap = (const uint8_t*)a.ArrayBuffer().Data() + a.ByteOffset();
    const uint8_t* bp = (const uint8_t*)b.ArrayBuffer().Data() + b.ByteOffset();
    const uint8_t* yp = (const uint8_t*)y.data;
    const size_t ybytes = y.length * sizeof(float);
    const auto inside = [](const uint8_t* p, size_t n, const uint8_t* q, size_t m) { return p < q + m && q < p + n; };
    if (inside(ap, a.ByteLength(), yp, ybytes) || inside(bp, b.ByteLength(), yp, ybytes)) throw_range(env, "y must not overlap the adapter matrices");
    terms[t] = Term{r, scales.data[t], ap, bp, rank, type};
    prevA = av;
    prevB = bv;
  }
  if (T == 0) return env.Undefined();

  const KernelTable* kt = g_kernels.load();
  // Each row's terms, in list order.
  std::vector<size_t> order(T);
  for (size_t t = 0; t < T; t++) order[t] = t;
  std::stable_sort(order.begin(), order.end(), [&](size_t p, size_t q) { return terms[p].row < terms[q].row; });
  std::vector<Group> groups;
  for (size_t i = 0; i < T; i++) {
    if (i == 0 || terms[order[i]].row != terms[order[i - 1]].row) groups.push_back({terms[order[i]].row, i, i});
    groups.back().end = i + 1;
  }

  // Runs of consecutive rows with the same term list become segments.
  const int path = g_loraPath.load();
  const auto same_list = [&](const Group& p, const Group& q) {
    if (q.end - q.begin != p.end - p.begin) return false;
    for (size_t i = 0; i < p.end - p.begin; i++) {
      const Term &s = terms[order[p.begin + i]], &t = terms[order[q.begin + i]];
      if (s.a != t.a || s.b != t.b || s.rank != t.rank || s.type != t.type || f32_bits(s.scale) != f32_bits(t.scale)) return false;
    }
    return true;
  };
  std::vector<size_t> gathered;  // groups
  std::vector<Segment> segments;
  std::vector<SegTerm> segTerms;
  for (size_t g = 0; g < groups.size();) {
    size_t e = g + 1;
    if (path != kGathered)
      while (e < groups.size() && groups[e].row == groups[e - 1].row + 1 && same_list(groups[g], groups[e])) e++;
    if (path == kSegmented || (path == kAuto && e - g >= kMinSegmentRows)) {
      segments.push_back({g, e - g, segTerms.size(), groups[g].end - groups[g].begin});
      for (size_t i = groups[g].begin; i < groups[g].end; i++) segTerms.push_back({&terms[order[i]], 0, 0, nullptr});
    } else {
      for (size_t i = g; i < e; i++) gathered.push_back(i);
    }
    g = e;
  }

  // Scratch: u of the gathered terms, U of the segment terms, each distinct segment B in panels.
  std::vector<size_t> uOffset(T);
  size_t uTotal = 0;
  for (size_t g : gathered)
    for (size_t i = groups[g].begin; i < groups[g].end; i++) uOffset[order[i]] = uTotal, uTotal += terms[order[i]].rank;
  std::map<std::tuple<const void*, size_t, int>, size_t> bpOf;
  // 16-bit A of segment terms → offset of its f32 copy; keyed like B's panels by what defines the
  // copy (a view of the same memory with another rank or type is another matrix).
  using AKey = std::tuple<const void*, size_t, int>;
  std::map<AKey, size_t> a32Of;
  const auto akey = [](const Term* t) { return AKey{t->a, t->rank, t->type}; };
  size_t a32Total = 0;
  std::vector<Pack> packs;
  const size_t N8 = ceil_div(N, 8) * 8;
  size_t bpTotal = 0;
  for (const Segment& sg : segments) {
    for (size_t p = sg.first; p < sg.first + sg.count; p++) {
      SegTerm& st = segTerms[p];
      st.u = uTotal;
      uTotal += sg.rows * st.t->rank;
      const auto key = std::make_tuple(st.t->b, st.t->rank, st.t->type);
      auto it = bpOf.find(key);
      if (it == bpOf.end()) {
        it = bpOf.emplace(key, bpTotal).first;
        for (size_t n0 = 0; n0 < N; n0 += kColumnChunk)
          packs.push_back({st.t->b, st.t->rank, bpTotal, n0, std::min(N, n0 + kColumnChunk), st.t->type});
        bpTotal += N8 * st.t->rank;
      }
      st.bp = it->second;
      if (st.t->type != T_F32 && a32Of.emplace(akey(st.t), a32Total).second) a32Total += st.t->rank * K;
    }
  }
  static thread_local std::vector<float> u, bp, a32;
  u.resize(uTotal);
  bp.resize(bpTotal);
  a32.resize(a32Total);
  // Raw pointers for the tasks: u, bp and a32 are this thread's; a pool worker's would be empty.
  float* ud = u.data();
  float* bpd = bp.data();
  float* a32d = a32.data();
  const float* xd = x.data;
  float* yd = y.data;

  // Phase 0: 16-bit A matrices of segments widened once (a segment's rows all reuse them).
  if (a32Total) {
    std::vector<std::pair<const Term*, size_t>> widenA;  // one term per copy, with its offset
    for (const SegTerm& st : segTerms)
      if (st.t->type != T_F32) widenA.push_back({st.t, a32Of.find(akey(st.t))->second});
    std::sort(widenA.begin(), widenA.end(), [](const auto& p, const auto& q) { return p.second < q.second; });
    widenA.erase(std::unique(widenA.begin(), widenA.end(), [](const auto& p, const auto& q) { return p.second == q.second; }), widenA.end());
    parallel_for(widenA.size(), [&](size_t i) {
      const Term* t = widenA[i].first;
      float* dst = a32d + widenA[i].second;
      for (size_t k = 0; k < t->rank * K; k++) dst[k] = widen(t->a, k, t->type);
    });
  }
  for (SegTerm& st : segTerms) st.a = st.t->type == T_F32 ? (const float*)st.t->a : a32d + a32Of.find(akey(st.t))->second;

  // Phase 1: shrinks (gathered terms, then segment row blocks) and B packing.
  std::vector<size_t> gatheredTerms;
  for (size_t g : gathered)
    for (size_t i = groups[g].begin; i < groups[g].end; i++) gatheredTerms.push_back(order[i]);
  std::vector<SegBlock> segShrink;
  for (size_t s = 0; s < segments.size(); s++)
    for (size_t p = segments[s].first; p < segments[s].first + segments[s].count; p++)
      for (size_t r = 0; r < segments[s].rows; r += kShrinkRows) segShrink.push_back({s, p, r});
  parallel_for(gatheredTerms.size() + segShrink.size() + packs.size(), [&](size_t i) {
    if (i < gatheredTerms.size()) {
      const Term& m = terms[gatheredTerms[i]];
      float* out = ud + uOffset[gatheredTerms[i]];
      const float* xr = xd + (size_t)m.row * K;
      if (m.type == T_F32) kt->dot_rows_f32(out, (const float*)m.a, xr, K, m.rank);
      else kt->dot_rows_h(out, (const uint16_t*)m.a, xr, K, m.rank, m.type);
      return;
    }
    i -= gatheredTerms.size();
    if (i < segShrink.size()) {
      const SegTerm& st = segTerms[segShrink[i].term];
      const Segment& sg = segments[segShrink[i].seg];
      const size_t r0 = segShrink[i].r0, rows = std::min(kShrinkRows, sg.rows - r0);
      const size_t row = (size_t)groups[sg.group].row + r0;
      kt->lora_shrink_f32(ud + st.u + r0 * st.t->rank, xd + row * K, rows, st.a, st.t->rank, K);
      return;
    }
    const Pack& pk = packs[i - segShrink.size()];
    float* out = bpd + pk.bp;
    for (size_t n = pk.n0; n < (pk.n1 == N ? N8 : pk.n1); n++)
      for (size_t k = 0; k < pk.rank; k++) out[(n / 8) * 8 * pk.rank + 8 * k + n % 8] = n < N ? widen(pk.b, n * pk.rank + k, pk.type) : 0.0f;
  });

  // Phase 2: expands, tasks = (gathered rows | segment row blocks) × column chunks.
  const size_t chunks = ceil_div(N, kColumnChunk);
  std::vector<SegBlock> segExpand;
  for (size_t s = 0; s < segments.size(); s++)
    for (size_t r = 0; r < segments[s].rows; r += kExpandRows) segExpand.push_back({s, 0, r});
  parallel_for((gathered.size() + segExpand.size()) * chunks, [&](size_t task) {
    const size_t c = task % chunks, n0 = c * kColumnChunk, n1 = std::min(N, n0 + kColumnChunk);
    size_t w = task / chunks;
    if (w < gathered.size()) {
      const Group& g = groups[gathered[w]];
      float* yr = yd + (size_t)g.row * N;
      float delta[kColumnChunk];
      for (size_t i = g.begin; i < g.end; i++) {
        const Term& m = terms[order[i]];
        const float* um = ud + uOffset[order[i]];
        if (m.type == T_F32) kt->dot_rows_f32(delta, (const float*)m.b + n0 * m.rank, um, m.rank, n1 - n0);
        else kt->dot_rows_h(delta, (const uint16_t*)m.b + n0 * m.rank, um, m.rank, n1 - n0, m.type);
        for (size_t n = n0; n < n1; n++) yr[n] = yr[n] + m.scale * delta[n - n0];
      }
      return;
    }
    w -= gathered.size();
    const Segment& sg = segments[segExpand[w].seg];
    const size_t r0 = segExpand[w].r0, rows = std::min(kExpandRows, sg.rows - r0);
    float* yr = yd + ((size_t)groups[sg.group].row + r0) * N + n0;
    for (size_t p = sg.first; p < sg.first + sg.count; p++) {
      const SegTerm& st = segTerms[p];
      kt->lora_expand_f32(yr, N, ud + st.u + r0 * st.t->rank, rows, st.t->rank, bpd + st.bp + n0 * st.t->rank, n1 - n0, st.t->scale);
    }
  });
  return env.Undefined();
}

}  // namespace ol
