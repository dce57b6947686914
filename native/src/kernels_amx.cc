// AMX-INT8 kernel for the batched (M > 2) Q8_0 product; every other entry of the table is the
// AVX-512 one. Compiled on its own with the AMX and AVX-512 flags (see binding.gyp); the addon
// selects this table only when the CPU reports AMX-TILE/AMX-INT8 besides the AVX-512 table's
// features and the kernel grants the process the tile state (arch_prctl, see amx_enable).
//
// Same reduction scheme as common.h for Q8_0: TDPBSSD over one 32-element block gives the exact
// int32 block sum of every (weight row, activation row) pair of a 16 × 16 tile; each is then
// converted and added with one FMA by dx·dw, block after block, into one f32 accumulator.
//
// Tiles: A = 16 weight rows × one block (32 bytes each, read in place from the Q8_0 rows, stride =
// row bytes); B = 16 activation rows × one block, repacked as TDPBSSD wants it (8 rows of 64 bytes:
// row q holds bytes 4q..4q+3 of each activation row); C = 16 × 16 int32, C[n][m] = Σ w[n]·x[m].
// So accumulators are per weight row (a zmm over 16 activation rows) and the result is stored
// transposed.
#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__FMA__) && defined(__F16C__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 headers, see kernels_avx512.cc
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "common.h"
#include "kernels_avx2.h"

namespace ol {
namespace {

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

// GCC 12's tile intrinsics are asm statements without a memory clobber: without this fence the
// compiler may move the stores that build a B tile after its TILELOADD, or the loads of a stored C
// tile before its TILESTORED.
#define OL_TILE_FENCE() __asm__ __volatile__("" ::: "memory")

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tile registers: 0, 1 weights (A) of the even / odd block, 2, 3 activations (B), 4, 5 sums (C).
// Loaded at the start of every range and released at its end: another AMX user on the same thread
// (a library with its own tile shapes) then never sees ours, nor we theirs, and an idle thread
// carries no tile state through context switches.
static void configure_tiles() {
  TileConfig c;
  std::memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int t = 0; t < 2; t++) { c.rows[t] = 16; c.colsb[t] = QK; }
  for (int t = 2; t < 4; t++) { c.rows[t] = QK / 4; c.colsb[t] = 64; }
  for (int t = 4; t < 6; t++) { c.rows[t] = 16; c.colsb[t] = 64; }
  _tile_loadconfig(&c);
}

struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  void* get(size_t bytes) {
    if (bytes > cap) {
      std::free(p);
      const size_t c = (bytes + 4095) & ~(size_t)4095;
      p = std::aligned_alloc(64, c);
      cap = p ? c : 0;
    }
    return p;
  }
};

// Activations packed per 16-row tile t and block b: xb[(t·nb + b)·512 ..] the B tile, dx[(t·nb + b)·16 ..]
// the 16 rows' block scales (0 for the padding rows past M, whose bytes are 0 too). Kept per thread
// and reused while the thread runs more tasks of the same prepared activations (same id and rows).
struct PackedX {
  Scratch mem;
  uint64_t id = 0;
  const int8_t* q = nullptr;
  size_t M = 0, K = 0;
  const int8_t* xb = nullptr;
  const float* dx = nullptr;
};
thread_local PackedX t_packed;

static bool pack_x(const PreparedX& x) {
  PackedX& p = t_packed;
  if (p.xb && p.id == x.id && x.id != 0 && p.q == x.q && p.M == x.M && p.K == x.K) return true;
  const size_t nb = x.K / QK, T = (x.M + 15) / 16;
  uint8_t* base = (uint8_t*)p.mem.get(T * nb * (512 + 64));
  if (!base) return false;
  int8_t* xb = (int8_t*)base;
  float* dx = (float*)(base + T * nb * 512);
  const __m256i lanes = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);  // in int32 units: 64 bytes apart
  for (size_t t = 0; t < T; t++) {
    for (size_t b = 0; b < nb; b++) {
      int8_t* tile = xb + (t * nb + b) * 512;
      float* d = dx + (t * nb + b) * 16;
      for (size_t r = 0; r < 16; r++) {
        const size_t m = 16 * t + r;
        if (m < x.M) {
          const __m256i v = _mm256_loadu_si256((const __m256i*)(x.q + m * x.K + b * QK));
          _mm256_i32scatter_epi32((int*)(tile + 4 * r), lanes, v, 4);
          d[r] = x.d[m * nb + b];
        } else {
          for (int q = 0; q < QK / 4; q++) std::memset(tile + 64 * q + 4 * r, 0, 4);
          d[r] = 0.0f;
        }
      }
    }
  }
  p.id = x.id;
  p.q = x.q;
  p.M = x.M;
  p.K = x.K;
  p.xb = xb;
  p.dx = dx;
  return true;
}

// acc[j] (lanes = the tile's 16 activation rows) += (dx · dw_j) · C[j] for one block's C tile.
static inline void accumulate(__m512 acc[16], const int32_t* c, const float* dx, const float* dw) {
  const __m512 dxv = _mm512_load_ps(dx);
  for (int j = 0; j < 16; j++) {
    const __m512 sc = _mm512_mul_ps(dxv, _mm512_set1_ps(dw[j]));
    acc[j] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(_mm512_load_si512((const void*)(c + 16 * j))), acc[j]);
  }
}

// Block b of the next 16 weight rows (`next`, stride rb) requested into L2 while this tile computes
// its block b: the tile loads otherwise wait on 16 slow streams the hardware prefetcher follows
// late (about 5% off a product whose weights come from DRAM).
static inline void prefetch_block(const uint8_t* next, size_t rb, size_t b) {
  if (!next) return;
  for (int j = 0; j < 16; j++) _mm_prefetch((const char*)(next + j * rb + b * Q8_BYTES + 32), _MM_HINT_T1);
}

// One block's tile product into C tile `c` from weight tile `a` and activation tile `x` (tile
// numbers are immediates, hence a macro).
#define OL_TILE_BLOCK(c, a, x, b)                 \
  do {                                            \
    _tile_zero(c);                                \
    _tile_loadd(a, wa + (b) * Q8_BYTES, rb);      \
    _tile_loadd(x, xb + (b) * 512, 64);           \
    _tile_dpbssd(c, a, x);                        \
  } while (0)

// 16 weight rows (A tiles read from wa, stride rb; their scales dwf[b·16 + j]) against one packed
// 16-row activation tile; out[r·N + j] for r < rows, j < cols. Software-pipelined: block b + 1's
// tile product is issued before block b's sums are stored and accumulated, so the tile unit's
// latency hides behind the vector work.
static void tile16(float* out, size_t N, size_t rows, size_t cols, const uint8_t* wa, size_t rb, const int8_t* xb,
                   const float* dx, const float* dwf, size_t nb, PrefetchCursor& pfc, const uint8_t* next) {
  alignas(64) int32_t c[2][256];
  __m512 acc[16];
  for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
  OL_TILE_FENCE();
  OL_TILE_BLOCK(4, 0, 2, 0);
  size_t b = 0;
  // Block b is in C tile `cur`: issue block b + 1 into the other C tile, then store and accumulate b.
#define OL_TILE_STEP(cur, other, oa, ox, buf)            \
  pfc.step();                                           \
  prefetch_block(next, rb, b);                          \
  if (b + 1 < nb) OL_TILE_BLOCK(other, oa, ox, b + 1);  \
  _tile_stored(cur, c[buf], 64);                        \
  OL_TILE_FENCE();                                      \
  accumulate(acc, c[buf], dx + b * 16, dwf + b * 16);   \
  if (++b == nb) break
  for (;;) {
    OL_TILE_STEP(4, 5, 1, 3, 0);
    OL_TILE_STEP(5, 4, 0, 2, 1);
  }
#undef OL_TILE_STEP
  // Transposed store: column r of the 16 accumulators is output row r.
  alignas(64) float t[256];
  for (int j = 0; j < 16; j++) _mm512_store_ps(t + 16 * j, acc[j]);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(16));
  const __mmask16 keep = (__mmask16)((1u << cols) - 1);
  for (size_t r = 0; r < rows; r++) {
    const __m512 v = _mm512_i32gather_ps(_mm512_add_epi32(idx, _mm512_set1_epi32((int)r)), t, 4);
    _mm512_mask_storeu_ps(out + r * N, keep, v);
  }
}
#undef OL_TILE_BLOCK

static void range_q8_amx(float* out, const PreparedX& x, const uint8_t* w, size_t N, size_t n0, size_t n1) {
  const size_t K = x.K, M = x.M, nb = K / QK, rb = row_bytes(T_Q8_0, K), T = (M + 15) / 16;
  constexpr size_t kMaxBlocks = 512;  // dwf on the stack: 16 rows × kMaxBlocks scales
  if (nb > kMaxBlocks || !pack_x(x)) {
    avx2::matmul_range_avx2(out, x, w, T_Q8_0, N, n0, n1);
    return;
  }
  configure_tiles();
  const PackedX& px = t_packed;
  alignas(64) float dwf[16 * kMaxBlocks];
  static thread_local Scratch padded;  // a short last group of weight rows, zero-padded to 16
  PrefetchCursor pfc(t_prefetch);
  for (size_t n = n0; n < n1; n += 16) {
    const size_t cols = min_sz(16, n1 - n);
    const uint8_t* wa = w + n * rb + 2;
    if (cols < 16) {
      uint8_t* pad = (uint8_t*)padded.get(16 * rb);
      if (!pad) {
        pfc.save(t_prefetch);
        _tile_release();
        avx2::matmul_range_avx2(out, x, w, T_Q8_0, N, n, n1);
        return;
      }
      std::memcpy(pad, w + n * rb, cols * rb);
      std::memset(pad + cols * rb, 0, (16 - cols) * rb);
      wa = pad + 2;
    }
    // The 16 rows' block scales: one gather of the 4 bytes at each block's start (fp16 d and the
    // first two quants), narrowed to the low halves.
    const __m512i rowOff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32((int)rb));
    for (size_t b = 0; b < nb; b++) {
      const __m512i d4 = _mm512_i32gather_epi32(rowOff, (const void*)(wa - 2 + b * Q8_BYTES), 1);
      _mm512_store_ps(dwf + b * 16, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d4)));
    }
    for (size_t t = 0; t < T; t++) {
      const size_t rows = min_sz(16, M - 16 * t);
      const uint8_t* next = t == 0 && n + 16 < n1 ? w + (n + 16) * rb : nullptr;
      tile16(out + 16 * t * N + n, N, rows, cols, wa, rb, px.xb + t * nb * 512, px.dx + t * nb * 16, dwf, nb, pfc, next);
    }
  }
  _tile_release();
  pfc.save(t_prefetch);
}

static void matmul_range_amx(float* out, const PreparedX& x, const uint8_t* w, int wType, size_t N, size_t n0,
                             size_t n1) {
  // Two rows are as fast on the AVX2 kernel (a tile's fixed cost per block is 16 weight rows'
  // accumulators, whatever M); from three on the tiles win (bench/kernels.ts).
  if (x.M > 2 && wType == T_Q8_0) return range_q8_amx(out, x, w, N, n0, n1);
  kAvx512Kernels.matmul_range(out, x, w, wType, N, n0, n1);
}
}  // namespace

bool amx_enable() {
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}

using namespace avx2;

const KernelTable kAmxKernels = {"amx", matmul_range_amx, OL_AVX2_TABLE_REST};

}  // namespace ol

#else  // not an x86 build with AMX flags: an empty table the addon never selects.
#include "common.h"
namespace ol {
bool amx_enable() { return false; }
const KernelTable kAmxKernels = {"amx-unavailable", nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                 nullptr, nullptr, nullptr, nullptr};
}  // namespace ol
#endif
