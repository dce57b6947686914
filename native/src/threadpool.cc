#include "threadpool.h"

#include "common.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace ol {

thread_local PrefetchFeed t_prefetch;

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long an idle worker spins before sleeping. Decode issues kernels back to back (tens of
// microseconds apart), so a short spin avoids a futex wake per kernel; a long one would steal a
// core from the rest of the process on this small machine.
constexpr auto kSpin = std::chrono::microseconds(200);

constexpr uint32_t kClosed = 0xffffffffu;

struct Pool {
  std::vector<std::thread> workers;
  // Job counter: high 32 bits = generation, low 32 bits = next task index. A task is claimed
  // by a CAS that checks the generation, so a worker late from a previous job can never claim
  // a task of the next one.
  std::atomic<uint64_t> counter{0};
  std::atomic<size_t> done{0};
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  std::atomic<size_t> ntasks{0};
  std::atomic<bool> stop{false};
  std::atomic<int> sleepers{0};
  std::mutex m;
  std::condition_variable cv;
  std::mutex run_mutex;  // one job at a time
  int nthreads = 1;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers may outlive static destruction order
  return *p;
}

inline uint32_t gen_of(uint64_t v) { return (uint32_t)(v >> 32); }
inline uint32_t idx_of(uint64_t v) { return (uint32_t)v; }

void work_on(Pool& p, uint32_t gen) {
  for (;;) {
    uint64_t v = p.counter.load(std::memory_order_acquire);
    if (gen_of(v) != gen) return;
    const uint32_t i = idx_of(v);
    if (i == kClosed || i >= p.ntasks.load(std::memory_order_relaxed)) return;
    if (!p.counter.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) continue;
    p.fn(p.ctx, i);
    p.done.fetch_add(1, std::memory_order_acq_rel);
  }
}

void worker_main(Pool& p) {
  uint32_t seen = gen_of(p.counter.load(std::memory_order_acquire));
  for (;;) {
    // Wait for a new generation: spin a little, then sleep.
    auto t0 = std::chrono::steady_clock::now();
    uint32_t g;
    int spins = 0;
    for (;;) {
      if (p.stop.load(std::memory_order_acquire)) return;
      g = gen_of(p.counter.load(std::memory_order_acquire));
      if (g != seen) break;
      cpu_relax();
      if (++spins % 64 == 0 && std::chrono::steady_clock::now() - t0 > kSpin) {
        std::unique_lock<std::mutex> lk(p.m);
        p.sleepers.fetch_add(1, std::memory_order_seq_cst);
        p.cv.wait(lk, [&] {
          return p.stop.load(std::memory_order_seq_cst) || gen_of(p.counter.load(std::memory_order_seq_cst)) != seen;
        });
        p.sleepers.fetch_sub(1, std::memory_order_seq_cst);
        t0 = std::chrono::steady_clock::now();
      }
    }
    seen = g;
    work_on(p, g);
  }
}

void stop_workers(Pool& p) {
  {
    std::lock_guard<std::mutex> lk(p.m);
    p.stop.store(true, std::memory_order_seq_cst);
  }
  p.cv.notify_all();
  for (auto& t : p.workers) t.join();
  p.workers.clear();
  p.stop.store(false);
}

}  // namespace

void pool_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > 256) n = 256;
  Pool& p = pool();
  std::lock_guard<std::mutex> run(p.run_mutex);
  if (n == p.nthreads) return;
  stop_workers(p);
  p.nthreads = n;
  for (int i = 0; i < n - 1; i++) p.workers.emplace_back(worker_main, std::ref(p));
}

int pool_threads() { return pool().nthreads; }

void pool_run(size_t ntasks, TaskFn fn, void* ctx) {
  if (ntasks == 0) return;
  Pool& p = pool();
  std::unique_lock<std::mutex> run(p.run_mutex, std::try_to_lock);
  if (!run.owns_lock() || p.workers.empty() || ntasks == 1) {
    for (size_t i = 0; i < ntasks; i++) fn(ctx, i);
    return;
  }
  // Close the previous job before rewriting its fields (see work_on).
  const uint32_t gen = gen_of(p.counter.load(std::memory_order_relaxed)) + 1;
  p.counter.store(((uint64_t)(gen - 1) << 32) | kClosed, std::memory_order_seq_cst);
  p.fn = fn;
  p.ctx = ctx;
  p.ntasks.store(ntasks, std::memory_order_relaxed);
  p.done.store(0, std::memory_order_relaxed);
  p.counter.store((uint64_t)gen << 32, std::memory_order_seq_cst);
  if (p.sleepers.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lk(p.m);
    p.cv.notify_all();
  }
  work_on(p, gen);
  int spins = 0;
  while (p.done.load(std::memory_order_acquire) < ntasks) {
    cpu_relax();
    if (++spins > 4096) std::this_thread::yield();
  }
}

}  // namespace ol
