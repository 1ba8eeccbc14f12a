// Every vectorised CPU kernel against its plain reference, for each ISA this CPU has, on odd sizes
// (tails, K beyond one K-block, single rows). Bounds follow from f32 rounding of a length-K dot
// product: |Δ| ≤ 2·K·2⁻²⁴·Σ|x·w| (+ a tiny absolute floor), the same for every dtype because the
// weights are widened exactly.
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "engine/kernels/cpu/matmul.h"
#include "engine/kernels/cpu/simd_kernels.h"
#include "engine/kernels/pack.h"
#include "engine/kernels/reference/ops.h"
#include "gtest/gtest.h"
#include "tests/testing/isas.h"

namespace retain::kernels::cpu {
namespace {

using engine::DType;

struct Weights {
  std::vector<float> f32;  // the values the stored weights represent, row-major
  std::vector<uint16_t> half;
  std::vector<float> packed_f32;  // the stored weights in MatrixLayout::kPanels
  std::vector<uint16_t> packed_half;
  MatrixRef packed;
};

Weights MakeWeights(int n, int k, DType t, std::mt19937& rng) {
  std::normal_distribution<float> d;
  Weights w;
  w.f32.resize(static_cast<size_t>(n) * k);
  if (t != DType::kF32) w.half.resize(w.f32.size());
  for (size_t i = 0; i < w.f32.size(); ++i) {
    const float v = d(rng);
    if (t == DType::kF32) {
      w.f32[i] = v;
    } else {
      w.half[i] = t == DType::kF16 ? engine::FloatToF16(v) : engine::FloatToBF16(v);
      w.f32[i] = t == DType::kF16 ? engine::F16ToFloat(w.half[i]) : engine::BF16ToFloat(w.half[i]);
    }
  }
  const size_t stored = StoredElements(MatrixLayout::kPanels, n, k);
  if (t == DType::kF32) {
    w.packed_f32.resize(stored);
    w.packed = PackPanels(w.f32.data(), t, n, k, w.packed_f32.data());
  } else {
    w.packed_half.resize(stored);
    w.packed = PackPanels(w.half.data(), t, n, k, w.packed_half.data());
  }
  return w;
}

int Panels(int n) { return (n + kPackRows - 1) / kPackRows; }

using CpuKernels = testing::IsaTest;

TEST_P(CpuKernels, MatMulMatchesReference) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int m : {1, 2, 3, 5, 17}) {
      for (int n : {1, 5, 67, 130}) {
        for (int kk : {1, 7, 16, 33, 600, 1100}) {
          Weights w = MakeWeights(n, kk, t, rng);
          std::vector<float> x(static_cast<size_t>(m) * kk), got(m * n), want(m * n);
          for (float& v : x) v = d(rng);
          MatMulArgs a{x.data(), m, w.packed, got.data()};
          k().matmul_panels(a, 0, Panels(n));
          MatMulArgs r{x.data(), m, {DType::kF32, n, kk, w.f32.data()}, want.data()};
          reference::MatMul(r);
          for (int i = 0; i < m; ++i) {
            for (int j = 0; j < n; ++j) {
              double mag = 0;
              for (int c = 0; c < kk; ++c) mag += std::fabs(x[i * kk + c] * w.f32[static_cast<size_t>(j) * kk + c]);
              const double bound = 2.0 * kk * std::ldexp(1.0, -24) * mag + 1e-30;
              ASSERT_LE(std::fabs(got[i * n + j] - want[i * n + j]), bound)
                  << "dtype " << static_cast<int>(t) << " m " << m << " n " << n << " k " << kk;
            }
          }
        }
      }
    }
  }
}

TEST_P(CpuKernels, MatMulRowResultsDoNotDependOnBatchSize) {
  // A session's logits must be the same alone or batched: every row is computed identically
  // whichever tile height and K blocking its batch size selects.
  std::mt19937 rng(2);
  std::normal_distribution<float> d;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int kk : {7, 24, 40, 600}) {
      const int n = 70, rows = 14;
      Weights w = MakeWeights(n, kk, t, rng);
      std::vector<float> x(static_cast<size_t>(rows) * kk), alone(rows * n), batched(rows * n);
      for (float& v : x) v = d(rng);
      for (int i = 0; i < rows; ++i)
        k().matmul_panels({x.data() + i * kk, 1, w.packed, alone.data() + i * n}, 0, Panels(n));
      for (int m = 2; m <= rows; ++m) {
        k().matmul_panels({x.data(), m, w.packed, batched.data()}, 0, Panels(n));
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j)
            ASSERT_EQ(alone[i * n + j], batched[i * n + j]) << "k " << kk << " batch " << m << " row " << i;
      }
    }
  }
}

TEST_P(CpuKernels, MatMulWidensEveryHalfAndBfloatExactly) {
  // K = 1 and x = 1: y[n] = 0 + 1·w[n], so the product shows the widening of every 16-bit
  // pattern (zeros, subnormals, normals, infinities, NaNs) against the scalar conversion.
  const int n = 1 << 16;
  for (DType t : {DType::kF16, DType::kBF16}) {
    std::vector<uint16_t> w(n), packed(StoredElements(MatrixLayout::kPanels, n, 1));
    for (int i = 0; i < n; ++i) w[i] = static_cast<uint16_t>(i);
    const MatrixRef m = PackPanels(w.data(), t, n, 1, packed.data());
    const float one = 1.0f;
    std::vector<float> y(n);
    k().matmul_panels({&one, 1, m, y.data()}, 0, Panels(n));
    for (int i = 0; i < n; ++i) {
      const float want = t == DType::kF16 ? engine::F16ToFloat(w[i]) : engine::BF16ToFloat(w[i]);
      if (std::isnan(want)) ASSERT_TRUE(std::isnan(y[i])) << std::hex << i;
      else ASSERT_EQ(y[i], want) << "dtype " << static_cast<int>(t) << " bits 0x" << std::hex << i;
    }
  }
}

TEST_P(CpuKernels, MatMulsSplitSeveralProductsLikeOneByOne) {
  // One parallel region over the panels of several products (different K, partial last panels)
  // gives every output exactly as the products run one by one, whatever the thread count.
  std::mt19937 rng(6);
  std::normal_distribution<float> d;
  const int shapes[][2] = {{130, 40}, {7, 300}, {64, 5}, {200, 40}};
  for (int m : {1, 9}) {
    std::vector<Weights> w;
    std::vector<std::vector<float>> x, want;
    for (auto [n, kk] : shapes) {
      w.push_back(MakeWeights(n, kk, DType::kBF16, rng));
      x.emplace_back(static_cast<size_t>(m) * kk);
      for (float& v : x.back()) v = d(rng);
      want.emplace_back(static_cast<size_t>(m) * n);
    }
    for (size_t i = 0; i < w.size(); ++i)
      k().matmul_panels({x[i].data(), m, w[i].packed, want[i].data()}, 0, Panels(shapes[i][0]));
    for (int threads : {1, 2, 3}) {
      engine::ThreadPool pool(threads);
      std::vector<std::vector<float>> got;
      std::vector<MatMulArgs> list;
      for (size_t i = 0; i < w.size(); ++i) got.emplace_back(want[i].size(), NAN);
      for (size_t i = 0; i < w.size(); ++i) list.push_back({x[i].data(), m, w[i].packed, got[i].data()});
      MatMuls(list.data(), static_cast<int>(list.size()), k(), pool);
      for (size_t i = 0; i < w.size(); ++i)
        ASSERT_EQ(0, std::memcmp(got[i].data(), want[i].data(), want[i].size() * sizeof(float)))
            << "product " << i << " m " << m << " threads " << threads;
    }
  }
}

// Records which panels of which product (told apart by y) the scheduler hands to the kernel.
std::mutex visits_mu;
std::map<std::pair<const float*, int>, int> visits;
void CountingPanels(const MatMulArgs& a, int p0, int p1) {
  std::lock_guard<std::mutex> lock(visits_mu);
  for (int p = p0; p < p1; ++p) ++visits[{a.y, p}];
}

TEST(MatMulsSchedule, EveryPanelOfEveryProductExactlyOnce) {
  // Threads claim shrinking ranges of the combined panel list: whatever the interleaving, nothing
  // is skipped and nothing is computed twice, down to single-panel and one-column products.
  SimdKernels counting{};
  counting.matmul_panels = &CountingPanels;
  const int shapes[][2] = {{64 * 37 + 3, 20}, {1, 1}, {7, 3000}, {64 * 200, 8}, {65, 1}};
  std::vector<std::vector<float>> y;
  for (auto [n, kk] : shapes) y.emplace_back(n);
  std::vector<MatMulArgs> list;
  for (size_t i = 0; i < y.size(); ++i)
    list.push_back({nullptr, 1, {DType::kF32, shapes[i][0], shapes[i][1], nullptr, MatrixLayout::kPanels}, y[i].data()});
  for (int threads : {1, 2, 3, 8}) {
    engine::ThreadPool pool(threads);
    for (int rep = 0; rep < 20; ++rep) {
      visits.clear();
      MatMuls(list.data(), static_cast<int>(list.size()), counting, pool);
      size_t expected = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        for (int p = 0; p < Panels(shapes[i][0]); ++p) {
          const auto it = visits.find({y[i].data(), p});
          ASSERT_TRUE(it != visits.end() && it->second == 1)
              << "product " << i << " panel " << p << " threads " << threads << " visits "
              << (it == visits.end() ? 0 : it->second);
        }
        expected += Panels(shapes[i][0]);
      }
      ASSERT_EQ(visits.size(), expected);
    }
  }
}

TEST_P(CpuKernels, Wkv7HeadMatchesReference) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1), pos(0.55f, 1.0f);
  for (int n : {16, 32, 64, 24 /* not a multiple of the vector: reference fallback */}) {
    const int heads = 3, c = heads * n, rows = 11;
    const int row_begin[3] = {0, 4, rows};
    std::vector<float> r(rows * c), w(rows * c), kk(rows * c), v(rows * c), a(rows * c), b(rows * c);
    for (auto* vec : {&r, &kk, &v}) for (float& f : *vec) f = u(rng);
    for (float& f : w) f = pos(rng);
    for (int t = 0; t < rows; ++t) {  // a = -κ̂, b = κ̂·ia with κ̂ unit per head, as the model makes them
      for (int h = 0; h < heads; ++h) {
        float norm = 0;
        std::vector<float> kap(n);
        for (int j = 0; j < n; ++j) norm += (kap[j] = u(rng)) * kap[j];
        for (int j = 0; j < n; ++j) {
          const float kh = kap[j] / std::sqrt(norm);
          a[t * c + h * n + j] = -kh;
          b[t * c + h * n + j] = kh * pos(rng);
        }
      }
    }
    std::vector<float> s_got(2 * heads * n * n), y_got(rows * c), y_want(rows * c);
    for (float& f : s_got) f = u(rng);
    std::vector<float> s_want = s_got;
    float* got_states[2] = {s_got.data(), s_got.data() + heads * n * n};
    float* want_states[2] = {s_want.data(), s_want.data() + heads * n * n};
    Wkv7Args args;
    args.seqs = {2, row_begin};
    args.n_head = heads;
    args.head_size = n;
    args.r = r.data(); args.w = w.data(); args.k = kk.data(); args.v = v.data(); args.a = a.data(); args.b = b.data();
    Wkv7Args ref = args;
    args.states = got_states;
    args.y = y_got.data();
    ref.states = want_states;
    ref.y = y_want.data();
    for (int s = 0; s < 2; ++s)
      for (int h = 0; h < heads; ++h) {
        k().wkv7_head(args, s, h);
        reference::Wkv7Head(ref, s, h);
      }
    for (size_t i = 0; i < y_got.size(); ++i) ASSERT_NEAR(y_got[i], y_want[i], 1e-4 * (1 + std::fabs(y_want[i]))) << "n " << n;
    for (size_t i = 0; i < s_got.size(); ++i) ASSERT_NEAR(s_got[i], s_want[i], 1e-5 * (1 + std::fabs(s_want[i]))) << "n " << n;
  }
}

TEST_P(CpuKernels, LayerNormMatchesReference) {
  std::mt19937 rng(4);
  std::normal_distribution<float> d(0.3f, 2.0f);
  for (int width : {1, 7, 64, 100, 2051}) {
    const int rows = 3;
    std::vector<float> x(rows * width), w(width), b(width), got(rows * width), want(rows * width);
    for (auto* v : {&x, &w, &b}) for (float& f : *v) f = d(rng);
    k().layer_norm(x.data(), rows, width, w.data(), b.data(), 1e-5f, got.data());
    reference::LayerNorm(x.data(), rows, width, w.data(), b.data(), 1e-5f, want.data());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 2e-5 * (1 + std::fabs(want[i]))) << "width " << width;
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, CpuKernels, ::testing::ValuesIn(testing::RunnableIsas()), testing::IsaTestName);

}  // namespace
}  // namespace retain::kernels::cpu
