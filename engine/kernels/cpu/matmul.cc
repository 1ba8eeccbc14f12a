// Blocked over output rows (weight rows); inside a block the widened weight row stays in L1 while
// it meets each x row. Multiple accumulators let the compiler keep several FMA chains in flight.
#include "engine/kernels/cpu/matmul.h"

#include <algorithm>
#include <cstring>

namespace retain::kernels::cpu {
namespace {

constexpr int kMaxK = 1 << 16;

inline float Dot(const float* a, const float* b, int k) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int c = 0;
  for (; c + 8 <= k; c += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[c + l] * b[c + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; c < k; ++c) s += a[c] * b[c];
  return s;
}

void WidenRow(const MatrixRef& w, int row, float* out) {
  const size_t base = static_cast<size_t>(row) * w.cols;
  switch (w.dtype) {
    case DType::kF32:
      std::memcpy(out, static_cast<const float*>(w.data) + base, w.cols * sizeof(float));
      break;
    case DType::kF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + base;
      for (int c = 0; c < w.cols; ++c) out[c] = engine::F16ToFloat(src[c]);
      break;
    }
    case DType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + base;
      for (int c = 0; c < w.cols; ++c) out[c] = engine::BF16ToFloat(src[c]);
      break;
    }
  }
}

}  // namespace

void MatMul(const MatMulArgs& a, engine::ThreadPool& pool) {
  const int n = a.w.rows, k = a.w.cols;
  pool.ParallelFor(n, 16, [&](int64_t begin, int64_t end) {
    thread_local float row_buf[kMaxK];
    for (int64_t j = begin; j < end; ++j) {
      const float* row;
      if (a.w.dtype == DType::kF32) {
        row = static_cast<const float*>(a.w.data) + static_cast<size_t>(j) * k;
      } else {
        WidenRow(a.w, static_cast<int>(j), row_buf);
        row = row_buf;
      }
      for (int i = 0; i < a.m; ++i) a.y[static_cast<size_t>(i) * n + j] = Dot(a.x + static_cast<size_t>(i) * k, row, k);
    }
  });
}

}  // namespace retain::kernels::cpu
