// A small persistent thread pool: n-1 workers plus the calling thread run the tasks of a
// parallel-for. Tasks are claimed dynamically, so which thread runs a task varies; kernels make
// each output element depend on one task only, so results never depend on the thread count.
#pragma once
#include <cstddef>
#include <type_traits>

namespace ol {

typedef void (*TaskFn)(void* ctx, size_t task);

// Sets the number of threads (caller included); 1 means no workers. Clamped to [1, 256].
void pool_set_threads(int n);
int pool_threads();

// Runs fn(ctx, i) for every i < ntasks and returns when all have finished. When another thread
// is already using the pool, the tasks run inline on the caller (same results).
void pool_run(size_t ntasks, TaskFn fn, void* ctx);

template <class F>
inline void parallel_for(size_t ntasks, F&& f) {
  if (ntasks == 0) return;
  using Fn = std::remove_reference_t<F>;
  pool_run(ntasks, [](void* c, size_t i) { (*static_cast<Fn*>(c))(i); }, (void*)&f);
}

}  // namespace ol
