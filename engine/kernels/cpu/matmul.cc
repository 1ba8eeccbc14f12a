// MatMul: work split by panels of weight rows, scratch per thread allocated once.
#include "engine/kernels/cpu/matmul.h"

namespace retain::kernels::cpu {

void MatMul(const MatMulArgs& a, const SimdKernels& kernels, engine::ThreadPool& pool) {
  const int n = a.w.rows;
  const int panels = (n + kPanelRows - 1) / kPanelRows;
  pool.ParallelFor(panels, 1, [&](int64_t begin, int64_t end) {
    alignas(64) thread_local float panel[kPanelRows * kPanelCols];
    kernels.matmul_rows(a, static_cast<int>(begin) * kPanelRows,
                        std::min<int>(n, static_cast<int>(end) * kPanelRows), panel);
  });
}

}  // namespace retain::kernels::cpu
