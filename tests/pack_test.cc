// MatrixLayout::kPanels: every element lands where ElementIndex says, padding rows are zeros, and
// the reference kernels read a packed matrix exactly as its row-major original.
#include <random>
#include <vector>

#include "engine/kernels/pack.h"
#include "engine/kernels/reference/ops.h"
#include "gtest/gtest.h"

namespace retain::kernels {
namespace {

TEST(PackPanels, EveryElementWhereElementIndexSaysAndPaddingIsZero) {
  for (int rows : {1, 63, 64, 65, 130}) {
    for (int cols : {1, 3, 64, 100}) {
      std::vector<uint16_t> src(static_cast<size_t>(rows) * cols);
      for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint16_t>(i * 7 + 1);
      std::vector<uint16_t> dst(StoredElements(MatrixLayout::kPanels, rows, cols), 0xffff);
      const MatrixRef m = PackPanels(src.data(), DType::kBF16, rows, cols, dst.data());
      ASSERT_EQ(m.layout, MatrixLayout::kPanels);
      std::vector<bool> seen(dst.size());
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
          const size_t i = ElementIndex(m, r, c);
          ASSERT_LT(i, dst.size());
          ASSERT_EQ(dst[i], src[static_cast<size_t>(r) * cols + c]) << r << "," << c;
          seen[i] = true;
        }
      for (size_t i = 0; i < dst.size(); ++i)
        if (!seen[i]) ASSERT_EQ(dst[i], 0) << "padding at " << i;
    }
  }
}

TEST(PackPanels, ReferenceKernelsReadPackedAsRowMajor) {
  std::mt19937 rng(5);
  std::normal_distribution<float> d;
  const int rows = 70, cols = 9, m = 3;
  std::vector<float> w(rows * cols), x(m * cols);
  for (float& v : w) v = d(rng);
  for (float& v : x) v = d(rng);
  std::vector<float> packed(StoredElements(MatrixLayout::kPanels, rows, cols));
  const MatrixRef p = PackPanels(w.data(), DType::kF32, rows, cols, packed.data());
  const MatrixRef r{DType::kF32, rows, cols, w.data()};
  std::vector<float> y_packed(m * rows), y_rows(m * rows);
  reference::MatMul({x.data(), m, p, y_packed.data()});
  reference::MatMul({x.data(), m, r, y_rows.data()});
  EXPECT_EQ(y_packed, y_rows);
  const engine::TokenId tokens[] = {0, 69, 64, 5};
  std::vector<float> e_packed(4 * cols), e_rows(4 * cols);
  reference::Embedding(p, tokens, 4, e_packed.data());
  reference::Embedding(r, tokens, 4, e_rows.data());
  EXPECT_EQ(e_packed, e_rows);
}

}  // namespace
}  // namespace retain::kernels
