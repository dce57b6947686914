#include "lora_plan.h"

#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <utility>

namespace ol {

namespace {
constexpr size_t kMaxLoraRank = 1024;
constexpr size_t kColumnChunk = 256;
constexpr size_t kShrinkRows = 32;     // rows per shrink task of a segment
constexpr size_t kExpandRows = 48;     // rows per expand task of a segment
constexpr size_t kMinSegmentRows = 4;  // "auto": shorter runs are gathered

float widen(const void* p, size_t i, int type) {
  if (type == T_F32) return ((const float*)p)[i];
  const uint16_t h = ((const uint16_t*)p)[i];
  return type == T_BF16 ? bf16_to_f32(h) : fp16_to_f32(h);
}

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
size_t elt_bytes(int type) { return type == T_F32 ? 4 : 2; }
}  // namespace

namespace {
std::atomic<int> g_loraPath{kLoraAuto};
}  // namespace
int lora_path() { return g_loraPath.load(); }
void set_lora_path(int path) { g_loraPath.store(path); }

std::vector<LoraTerm> parse_lora_terms(const Napi::Env& env, View<const int32_t> rows, View<const float> scales,
                                       const Napi::Array& as, const Napi::Array& bs, const View<const int32_t>* types,
                                       size_t M, size_t K, size_t N, const void* y, size_t yBytes,
                                       const std::string& what) {
  const size_t T = rows.length;
  if (types) expect_len(env, *types, T, (what + "termTypes").c_str(), "termRows.length");
  expect_len(env, scales, T, (what + "termScales").c_str(), "termRows.length");
  if (as.Length() != T || bs.Length() != T) throw_range(env, what + "As and Bs must have one matrix per term");
  std::vector<LoraTerm> terms(T);
  // One napi_get_typedarray_info per matrix (the C++ wrapper's accessors each repeat it): this
  // runs for every term of every LoRA'd product of every step.
  const auto matrix = [&](const Napi::Array& arr, size_t t, const char* which, int type, size_t& len) -> const uint8_t* {
    const std::string name = what + which + "[" + std::to_string(t) + "]";
    const char* wrongKind = type == T_F32 ? " must be a Float32Array" : " must be a Uint16Array (termTypes says 16-bit)";
    napi_value v;
    bool isTa = false;
    if (napi_get_element(env, arr, (uint32_t)t, &v) != napi_ok || napi_is_typedarray(env, v, &isTa) != napi_ok || !isTa)
      throw_type(env, name + wrongKind);
    napi_typedarray_type tt;
    void* data = nullptr;
    if (napi_get_typedarray_info(env, v, &tt, &len, &data, nullptr, nullptr) != napi_ok) throw_type(env, name + " is not readable");
    if (tt != (type == T_F32 ? napi_float32_array : napi_uint16_array)) throw_type(env, name + wrongKind);
    if (!data && len) throw_type(env, name + " has a detached buffer");
    return (const uint8_t*)data;
  };
  const auto inside = [](const uint8_t* p, size_t n, const uint8_t* q, size_t m) { return p < q + m && q < p + n; };
  for (size_t t = 0; t < T; t++) {
    const int32_t r = rows.data[t];
    if (r < 0 || (size_t)r >= M)
      throw_range(env, what + "termRows[" + std::to_string(t) + "] = " + std::to_string(r) + " is outside 0.." + std::to_string(M));
    const int type = types ? types->data[t] : T_F32;
    const auto name = [&](const char* m) { return what + m + "[" + std::to_string(t) + "]"; };
    if (type != T_F32 && type != T_F16 && type != T_BF16)
      throw_range(env, name("termTypes") + " = " + std::to_string(type) + " is not F32 (0), F16 (1) or BF16 (30)");
    size_t alen = 0, blen = 0;
    const uint8_t* ap = matrix(as, t, "As", type, alen);
    const uint8_t* bp = matrix(bs, t, "Bs", type, blen);
    const size_t esz = type == T_F32 ? 4 : 2;
    if (t > 0 && ap == terms[t - 1].a && bp == terms[t - 1].b && type == terms[t - 1].type && alen == terms[t - 1].rank * K) {
      terms[t] = LoraTerm{r, scales.data[t], ap, bp, terms[t - 1].rank, type};
      continue;
    }
    if (alen == 0 || alen % K != 0) throw_range(env, name("As") + " length must be rank * K (K = " + std::to_string(K) + ")");
    const size_t rank = alen / K;
    if (rank > kMaxLoraRank) throw_range(env, name("As") + " has rank " + std::to_string(rank) + " > " + std::to_string(kMaxLoraRank));
    if (blen != N * rank) throw_range(env, name("Bs") + " length must be N * rank = " + std::to_string(N * rank));
    if (inside(ap, alen * esz, (const uint8_t*)y, yBytes) || inside(bp, blen * esz, (const uint8_t*)y, yBytes))
      throw_range(env, what + "y must not overlap the adapter matrices");
    terms[t] = LoraTerm{r, scales.data[t], ap, bp, rank, type};
  }
  return terms;
}

LoraPlan::LoraPlan(std::vector<LoraTerm> terms, float* y, const float* x, size_t M, size_t K, size_t N,
                   LoraScratch& scratch)
    : terms_(std::move(terms)), y_(y), x_(x), M_(M), K_(K), N_(N), chunks_(ceil_div(N, kColumnChunk)), kt_(g_kernels.load()) {
  const size_t T = terms_.size();
  // Each row's terms, in list order.
  order_.resize(T);
  for (size_t t = 0; t < T; t++) order_[t] = t;
  std::stable_sort(order_.begin(), order_.end(), [&](size_t p, size_t q) { return terms_[p].row < terms_[q].row; });
  for (size_t i = 0; i < T; i++) {
    if (i == 0 || terms_[order_[i]].row != terms_[order_[i - 1]].row) groups_.push_back({terms_[order_[i]].row, i, i});
    groups_.back().end = i + 1;
  }

  // Runs of consecutive rows with the same term list become segments.
  const int path = lora_path();
  const auto same_list = [&](const Group& p, const Group& q) {
    if (q.end - q.begin != p.end - p.begin) return false;
    for (size_t i = 0; i < p.end - p.begin; i++) {
      const LoraTerm &s = terms_[order_[p.begin + i]], &t = terms_[order_[q.begin + i]];
      if (s.a != t.a || s.b != t.b || s.rank != t.rank || s.type != t.type || f32_bits(s.scale) != f32_bits(t.scale)) return false;
    }
    return true;
  };
  for (size_t g = 0; g < groups_.size();) {
    size_t e = g + 1;
    if (path != kLoraGathered)
      while (e < groups_.size() && groups_[e].row == groups_[e - 1].row + 1 && same_list(groups_[g], groups_[e])) e++;
    if (path == kLoraSegmented || (path == kLoraAuto && e - g >= kMinSegmentRows)) {
      segments_.push_back({g, e - g, segTerms_.size(), groups_[g].end - groups_[g].begin});
      for (size_t i = groups_[g].begin; i < groups_[g].end; i++) segTerms_.push_back({&terms_[order_[i]], 0, 0, nullptr});
    } else {
      for (size_t i = g; i < e; i++) gathered_.push_back(i);
    }
    g = e;
  }

  // Scratch: u of the gathered terms, U of the segment terms, each distinct segment B in panels,
  // each distinct 16-bit segment A in f32 — keyed by what defines the copy (a view of the same
  // memory with another rank or type is another matrix).
  uOffset_.resize(T);
  size_t uTotal = 0;
  for (size_t g : gathered_)
    for (size_t i = groups_[g].begin; i < groups_[g].end; i++) uOffset_[order_[i]] = uTotal, uTotal += terms_[order_[i]].rank;
  std::map<std::tuple<const void*, size_t, int>, size_t> bpOf;
  size_t a32Total = 0, bpTotal = 0;
  const size_t N8 = ceil_div(N, 8) * 8;
  for (const Segment& sg : segments_) {
    for (size_t p = sg.first; p < sg.first + sg.count; p++) {
      SegTerm& st = segTerms_[p];
      st.u = uTotal;
      uTotal += sg.rows * st.t->rank;
      auto it = bpOf.find({st.t->b, st.t->rank, st.t->type});
      if (it == bpOf.end()) {
        it = bpOf.emplace(std::make_tuple(st.t->b, st.t->rank, st.t->type), bpTotal).first;
        for (size_t n0 = 0; n0 < N; n0 += kColumnChunk)
          packs_.push_back({st.t->b, st.t->rank, bpTotal, n0, std::min(N, n0 + kColumnChunk), st.t->type});
        bpTotal += N8 * st.t->rank;
      }
      st.bp = it->second;
      if (st.t->type != T_F32 && a32Of_.emplace(std::make_tuple(st.t->a, st.t->rank, st.t->type), a32Total).second) {
        widenA_.push_back({st.t, a32Total});
        a32Total += st.t->rank * K;
      }
    }
  }
  scratch.u.resize(uTotal);
  scratch.bp.resize(bpTotal);
  scratch.a32.resize(a32Total);
  u_ = scratch.u.data();
  bp_ = scratch.bp.data();
  a32_ = scratch.a32.data();
  for (size_t g : gathered_)
    for (size_t i = groups_[g].begin; i < groups_[g].end; i++) gatheredTerms_.push_back(order_[i]);
  for (size_t s = 0; s < segments_.size(); s++) {
    for (size_t p = segments_[s].first; p < segments_[s].first + segments_[s].count; p++)
      for (size_t r = 0; r < segments_[s].rows; r += kShrinkRows) segShrink_.push_back({s, p, r});
    for (size_t r = 0; r < segments_[s].rows; r += kExpandRows) segExpand_.push_back({s, 0, r});
  }
}

void LoraPlan::widen(size_t i) {
  const LoraTerm* t = widenA_[i].first;
  float* dst = a32_ + widenA_[i].second;
  for (size_t k = 0; k < t->rank * K_; k++) dst[k] = ol::widen(t->a, k, t->type);
}

void LoraPlan::resolve_segment_a() {
  for (SegTerm& st : segTerms_)
    st.a = st.t->type == T_F32 ? (const float*)st.t->a : a32_ + a32Of_.find({st.t->a, st.t->rank, st.t->type})->second;
}

void LoraPlan::shrink(size_t i) {
  if (i < gatheredTerms_.size()) {
    const LoraTerm& m = terms_[gatheredTerms_[i]];
    float* out = u_ + uOffset_[gatheredTerms_[i]];
    const float* xr = x_ + (size_t)m.row * K_;
    if (m.type == T_F32) kt_->dot_rows_f32(out, (const float*)m.a, xr, K_, m.rank);
    else kt_->dot_rows_h(out, (const uint16_t*)m.a, xr, K_, m.rank, m.type);
    return;
  }
  i -= gatheredTerms_.size();
  if (i < segShrink_.size()) {
    const SegTerm& st = segTerms_[segShrink_[i].term];
    const Segment& sg = segments_[segShrink_[i].seg];
    const size_t r0 = segShrink_[i].r0, rows = std::min(kShrinkRows, sg.rows - r0);
    const size_t row = (size_t)groups_[sg.group].row + r0;
    kt_->lora_shrink_f32(u_ + st.u + r0 * st.t->rank, x_ + row * K_, rows, st.a, st.t->rank, K_);
    return;
  }
  const Pack& pk = packs_[i - segShrink_.size()];
  float* out = bp_ + pk.bp;
  const size_t N8 = ceil_div(N_, 8) * 8;
  for (size_t n = pk.n0; n < (pk.n1 == N_ ? N8 : pk.n1); n++)
    for (size_t k = 0; k < pk.rank; k++)
      out[(n / 8) * 8 * pk.rank + 8 * k + n % 8] = n < N_ ? ol::widen(pk.b, n * pk.rank + k, pk.type) : 0.0f;
}

// y[row, n0..n1) += each term's s · (B·u), the row's terms in list order (n1 − n0 ≤ kColumnChunk).
void LoraPlan::expand_group(const Group& g, size_t n0, size_t n1) const {
  float* yr = y_ + (size_t)g.row * N_;
  float delta[kColumnChunk];
  for (size_t i = g.begin; i < g.end; i++) {
    const LoraTerm& m = terms_[order_[i]];
    const float* um = u_ + uOffset_[order_[i]];
    if (m.type == T_F32) kt_->dot_rows_f32(delta, (const float*)m.b + n0 * m.rank, um, m.rank, n1 - n0);
    else kt_->dot_rows_h(delta, (const uint16_t*)m.b + n0 * m.rank, um, m.rank, n1 - n0, m.type);
    for (size_t n = n0; n < n1; n++) yr[n] = yr[n] + m.scale * delta[n - n0];
  }
}

void LoraPlan::gathered_expand(size_t task) {
  const size_t c = task % chunks_, n0 = c * kColumnChunk;
  expand_group(groups_[gathered_[task / chunks_]], n0, std::min(N_, n0 + kColumnChunk));
}

void LoraPlan::segment_expand(size_t task) {
  const size_t c = task % chunks_, n0 = c * kColumnChunk, n1 = std::min(N_, n0 + kColumnChunk);
  const SegBlock& blk = segExpand_[task / chunks_];
  const Segment& sg = segments_[blk.seg];
  const size_t rows = std::min(kExpandRows, sg.rows - blk.r0);
  float* yr = y_ + ((size_t)groups_[sg.group].row + blk.r0) * N_ + n0;
  for (size_t p = sg.first; p < sg.first + sg.count; p++) {
    const SegTerm& st = segTerms_[p];
    kt_->lora_expand_f32(yr, N_, u_ + st.u + blk.r0 * st.t->rank, rows, st.t->rank, bp_ + st.bp + n0 * st.t->rank,
                         n1 - n0, st.t->scale);
  }
}

void LoraPlan::expand_rows(size_t m0, size_t m1, size_t n0, size_t n1) const {
  for (size_t g : gathered_) {
    const Group& gr = groups_[g];
    if ((size_t)gr.row < m0 || (size_t)gr.row >= m1) continue;
    for (size_t c0 = n0; c0 < n1; c0 += kColumnChunk) expand_group(gr, c0, std::min(n1, c0 + kColumnChunk));
  }
}

void LoraPlan::b_ranges(std::vector<PrefetchRange>& out, size_t m0, size_t m1, size_t n0, size_t n1) const {
  for (size_t g : gathered_) {
    const Group& gr = groups_[g];
    if ((size_t)gr.row < m0 || (size_t)gr.row >= m1) continue;
    for (size_t i = gr.begin; i < gr.end; i++) {
      const LoraTerm& m = terms_[order_[i]];
      const size_t e = elt_bytes(m.type) * m.rank;
      out.push_back({(const char*)m.b + n0 * e, (n1 - n0) * e});
    }
  }
}

void run_lora_plans(LoraPlan* const* plans, size_t n, bool expandGathered) {
  const auto over = [&](auto count, auto run) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += count(*plans[i]);
    parallel_for(total, [&](size_t t) {
      size_t i = 0;
      for (size_t c; t >= (c = count(*plans[i])); i++) t -= c;
      run(*plans[i], t);
    });
  };
  over([](const LoraPlan& p) { return p.widen_tasks(); }, [](LoraPlan& p, size_t t) { p.widen(t); });
  for (size_t i = 0; i < n; i++) plans[i]->resolve_segment_a();
  over([](const LoraPlan& p) { return p.shrink_tasks(); }, [](LoraPlan& p, size_t t) { p.shrink(t); });
  if (expandGathered)
    over([](const LoraPlan& p) { return p.gathered_expand_tasks() + p.segment_expand_tasks(); }, [](LoraPlan& p, size_t t) {
      if (t < p.gathered_expand_tasks()) p.gathered_expand(t);
      else p.segment_expand(t - p.gathered_expand_tasks());
    });
}

void run_lora_segment_expands(LoraPlan* const* plans, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += plans[i]->segment_expand_tasks();
  parallel_for(total, [&](size_t t) {
    size_t i = 0;
    for (size_t c; t >= (c = plans[i]->segment_expand_tasks()); i++) t -= c;
    plans[i]->segment_expand(t);
  });
}

}  // namespace ol
