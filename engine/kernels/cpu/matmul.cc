// MatMul: work split by panels of weight rows.
#include "engine/kernels/cpu/matmul.h"

namespace retain::kernels::cpu {

void MatMul(const MatMulArgs& a, const SimdKernels& kernels, engine::ThreadPool& pool) {
  const int n = a.w.rows;
  const int panels = (n + kPackRows - 1) / kPackRows;
  pool.ParallelFor(panels, 1, [&](int64_t begin, int64_t end) {
    kernels.matmul_panels(a, static_cast<int>(begin), static_cast<int>(end));
  });
}

}  // namespace retain::kernels::cpu
