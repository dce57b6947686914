// The heterogeneous LoRA update of one product (y[M, N] += per-row terms, see bind_lora.cc for the
// math and the two paths), validated and planned once, then run in phases:
//   widen (16-bit A of segments, once per call) → shrink (u = A·x per gathered term, U = X·Aᵀ per
//   segment block, B packing) → expand (gathered rows × column chunks, segment blocks × chunks).
// The phases are task lists, so one parallel region can run the tasks of several plans, and a
// matmul can run a gathered row's expand for columns [n0, n1) right after it has written them
// (matmulMulti with LoRA): same arithmetic, same bits, but the B matrices are fetched while the
// base product's tiles compute (see PrefetchFeed in common.h).
#pragma once
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "napi_args.h"

namespace ol {

struct LoraTerm {
  int32_t row;
  float scale;
  const void* a;  // [rank, K]: f32, or uint16 of `type`
  const void* b;  // [N, rank]
  size_t rank;
  int type;  // T_F32, T_F16 or T_BF16 (A and B alike)
};

// Validates one term list against y [M, N] (yBytes at y) and x [M, K]; `what` prefixes messages.
std::vector<LoraTerm> parse_lora_terms(const Napi::Env& env, View<const int32_t> rows, View<const float> scales,
                                       const Napi::Array& as, const Napi::Array& bs, const View<const int32_t>* types,
                                       size_t M, size_t K, size_t N, const void* y, size_t yBytes,
                                       const std::string& what);

// Resolves a term list of registered pairs (loraRegister ids) for a product with K inputs and N
// outputs; throws on unknown ids or a shape mismatch.
std::vector<LoraTerm> registered_lora_terms(const Napi::Env& env, View<const int32_t> rows, View<const float> scales,
                                            View<const int32_t> ids, size_t M, size_t K, size_t N, const void* y,
                                            size_t yBytes, const std::string& what);

// Per-call scratch of one plan (kept between calls to avoid reallocation).
struct LoraScratch {
  std::vector<float> u, bp, a32;
};

enum : int { kLoraAuto = 0, kLoraGathered = 1, kLoraSegmented = 2 };
int lora_path();  // the setLoraPath choice
void set_lora_path(int path);

class LoraPlan {
 public:
  LoraPlan(std::vector<LoraTerm> terms, float* y, const float* x, size_t M, size_t K, size_t N, LoraScratch& scratch);

  size_t widen_tasks() const { return widenA_.size(); }
  void widen(size_t i);
  void resolve_segment_a();  // after the widen phase
  size_t shrink_tasks() const { return gatheredTerms_.size() + segShrink_.size() + packs_.size(); }
  void shrink(size_t i);
  size_t gathered_expand_tasks() const { return gathered_.size() * chunks_; }
  void gathered_expand(size_t task);
  size_t segment_expand_tasks() const { return segExpand_.size() * chunks_; }
  void segment_expand(size_t task);

  // Gathered rows in [m0, m1), columns [n0, n1) (the caller's y values there are final).
  void expand_rows(size_t m0, size_t m1, size_t n0, size_t n1) const;
  // The B bytes expand_rows(m0, m1, n0, n1) will read, as (address, bytes) ranges.
  void b_ranges(std::vector<PrefetchRange>& out, size_t m0, size_t m1, size_t n0, size_t n1) const;
  bool has_gathered() const { return !gathered_.empty(); }

 private:
  struct Group {  // a row's terms: order_[begin .. end)
    int32_t row;
    size_t begin, end;
  };
  struct Segment {  // consecutive rows groups_[group ..] with one term list segTerms_[first .. first + count)
    size_t group, rows, first, count;
  };
  struct SegTerm {
    const LoraTerm* t;
    size_t u, bp;    // offsets of U ([rows, rank]) and of B's panels
    const float* a;  // A in f32 (the term's own, or widened once per call)
  };
  struct SegBlock {  // rows [r0, r0 + block) of segment `seg` (and, for a shrink, its term `term`)
    size_t seg, term, r0;
  };
  struct Pack {  // packs B's columns [n0, n1) (n0 a multiple of 8) into panels at bp
    const void* b;
    size_t rank, bp, n0, n1;
    int type;
  };
  void expand_group(const Group& g, size_t n0, size_t n1) const;

  std::vector<LoraTerm> terms_;
  float* y_;
  const float* x_;
  size_t M_, K_, N_, chunks_;
  std::vector<size_t> order_, uOffset_, gathered_, gatheredTerms_;
  std::vector<Group> groups_;
  std::vector<Segment> segments_;
  std::vector<SegTerm> segTerms_;
  std::vector<SegBlock> segShrink_, segExpand_;
  std::vector<Pack> packs_;
  std::vector<std::pair<const LoraTerm*, size_t>> widenA_;  // one term per f32 copy, with its offset
  std::map<std::tuple<const void*, size_t, int>, size_t> a32Of_;
  float *u_, *bp_, *a32_;
  const KernelTable* kt_;
};

// Runs the phases of several plans, each phase as one parallel region: widen, shrink, and (when
// expandGathered) all expands. Without it the caller runs the gathered expands (expand_rows) and
// then run_lora_segment_expands.
void run_lora_plans(LoraPlan* const* plans, size_t n, bool expandGathered);
void run_lora_segment_expands(LoraPlan* const* plans, size_t n);

}  // namespace ol
