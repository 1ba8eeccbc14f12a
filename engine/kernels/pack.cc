// PackPanels: a blocked transposition per panel, so both sides stay in cache lines.
#include "engine/kernels/pack.h"

#include <algorithm>
#include <cstring>

namespace retain::kernels {
namespace {

template <class T>
void Pack(const T* src, int rows, int cols, T* dst) {
  constexpr int kBlock = 64;  // columns per block: kPackRows × kBlock elements stay in L1
  const int panels = (rows + kPackRows - 1) / kPackRows;
  for (int p = 0; p < panels; ++p) {
    T* out = dst + static_cast<size_t>(p) * cols * kPackRows;
    const int r0 = p * kPackRows, nr = std::min(kPackRows, rows - r0);
    if (nr < kPackRows) std::memset(out, 0, sizeof(T) * cols * kPackRows);
    for (int c0 = 0; c0 < cols; c0 += kBlock) {
      const int c1 = std::min(cols, c0 + kBlock);
      for (int i = 0; i < nr; ++i) {
        const T* row = src + static_cast<size_t>(r0 + i) * cols;
        for (int c = c0; c < c1; ++c) out[static_cast<size_t>(c) * kPackRows + i] = row[c];
      }
    }
  }
}

}  // namespace

MatrixRef PackPanels(const void* row_major, DType dtype, int rows, int cols, void* dst) {
  if (dtype == DType::kF32) {
    Pack(static_cast<const float*>(row_major), rows, cols, static_cast<float*>(dst));
  } else {
    Pack(static_cast<const uint16_t*>(row_major), rows, cols, static_cast<uint16_t*>(dst));
  }
  return MatrixRef{dtype, rows, cols, dst, MatrixLayout::kPanels};
}

}  // namespace retain::kernels
