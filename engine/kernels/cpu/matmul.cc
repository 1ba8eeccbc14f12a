// MatMul: work split by panels of weight rows.
#include "engine/kernels/cpu/matmul.h"

#include <algorithm>

namespace retain::kernels::cpu {

void MatMuls(const MatMulArgs* list, int count, const SimdKernels& kernels, engine::ThreadPool& pool) {
  auto panels = [](const MatMulArgs& a) { return (a.w.rows + kPackRows - 1) / kPackRows; };
  int64_t total = 0;
  for (int i = 0; i < count; ++i) total += static_cast<int64_t>(panels(list[i])) * list[i].w.cols;
  const int parts = pool.num_threads();
  // Part t takes the panels whose cost begins in [t·total/parts, (t+1)·total/parts).
  pool.ParallelFor(parts, 1, [&](int64_t t0, int64_t t1) {
    const int64_t lo = total * t0 / parts, hi = total * t1 / parts;
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
  });
}

void MatMul(const MatMulArgs& a, const SimdKernels& kernels, engine::ThreadPool& pool) {
  MatMuls(&a, 1, kernels, pool);
}

}  // namespace retain::kernels::cpu
