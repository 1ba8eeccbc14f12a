// MatMul: work split by panels of weight rows.
#include "engine/kernels/cpu/matmul.h"

#include <algorithm>
#include <atomic>

namespace retain::kernels::cpu {

void MatMuls(const MatMulArgs* list, int count, const SimdKernels& kernels, engine::ThreadPool& pool) {
  auto panels = [](const MatMulArgs& a) { return (a.w.rows + kPackRows - 1) / kPackRows; };
  int64_t total = 0;
  for (int i = 0; i < count; ++i) total += static_cast<int64_t>(panels(list[i])) * list[i].w.cols;
  const int parts = pool.num_threads();
  // The panels whose cost begins in [lo, hi).
  auto run = [&](int64_t lo, int64_t hi) {
    int64_t start = 0;  // cost before matrix i
    for (int i = 0; i < count && start < hi; ++i) {
      const MatMulArgs& a = list[i];
      const int64_t cost = a.w.cols, n = panels(a);
      // First panel p with start + p·cost >= lo, first with >= hi.
      const int64_t p0 = std::clamp<int64_t>((lo - start + cost - 1) / cost, 0, n);
      const int64_t p1 = std::clamp<int64_t>((hi - start + cost - 1) / cost, 0, n);
      if (p0 < p1) kernels.matmul_panels(a, static_cast<int>(p0), static_cast<int>(p1));
      start += n * cost;
    }
  };
  // Guided self-scheduling: each thread claims half its share of what is left (never less than a
  // sixteenth of a share), so the ranges are long and contiguous at first (the prefetchers keep
  // streaming) and short at the end, where they even out the threads. A static split left one core
  // idle ~7 % of a decode step: the cores of a shared host do not stream at equal speed.
  std::atomic<int64_t> next{0};
  const int64_t min_chunk = std::max<int64_t>(1, total / (16 * parts));
  pool.ParallelFor(parts, 1, [&](int64_t, int64_t) {
    for (int64_t lo = next.load(std::memory_order_relaxed), hi;;) {
      do {
        if (lo >= total) return;
        hi = std::min(total, lo + std::max(min_chunk, (total - lo) / (2 * parts)));
      } while (!next.compare_exchange_weak(lo, hi, std::memory_order_relaxed));
      run(lo, hi);
      lo = next.load(std::memory_order_relaxed);
    }
  });
}

void MatMul(const MatMulArgs& a, const SimdKernels& kernels, engine::ThreadPool& pool) {
  MatMuls(&a, 1, kernels, pool);
}

}  // namespace retain::kernels::cpu
