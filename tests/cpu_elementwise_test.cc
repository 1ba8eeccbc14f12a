// The vectorised element-wise, per-row and RWKV kernels against their plain references, for each
// ISA this CPU has, on odd sizes (tails) and inputs from tiny to saturating. Bounds: exp-based
// ops are held to 8 ulp of the result (the vector exp is good to ~2 ulp; sigmoid, tanh and silu
// compose a few roundings), products and mixes to the rounding of their few operations.
#include <cmath>
#include <random>
#include <vector>

#include "engine/kernels/reference/ops.h"
#include "engine/kernels/reference/retention.h"
#include "gtest/gtest.h"
#include "tests/testing/isas.h"

namespace retain::kernels::cpu {
namespace {

using CpuElementwise = testing::IsaTest;

constexpr double kUlp = 1.0 / (1 << 23);

// Mostly ordinary values, with zeros, tiny and huge magnitudes mixed in.
std::vector<float> Inputs(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> v(n);
  const float special[] = {0.0f, -0.0f, 1e-6f, -1e-6f, 0.03f, -0.05f, 40.0f, -40.0f, 100.0f, -100.0f, 1e4f, -1e4f};
  for (size_t i = 0; i < n; ++i) v[i] = i % 5 == 3 ? special[(i / 5) % 12] : d(rng);
  return v;
}

TEST_P(CpuElementwise, ActivationsMatchReference) {
  struct Op {
    const char* name;
    void (*fast)(float*, size_t);
    void (*ref)(float*, size_t);
  };
  const Op ops[] = {{"sigmoid", k().sigmoid, reference::Sigmoid},
                    {"tanh", k().tanh, reference::Tanh},
                    {"silu", k().silu, reference::Silu},
                    {"relu_square", k().relu_square, reference::ReluSquare}};
  std::mt19937 rng(11);
  for (const Op& op : ops) {
    for (size_t n : {1, 5, 16, 33, 1001}) {
      const std::vector<float> x = Inputs(n, rng);
      std::vector<float> got = x, want = x;
      op.fast(got.data(), n);
      op.ref(want.data(), n);
      for (size_t i = 0; i < n; ++i)
        ASSERT_NEAR(got[i], want[i], 8 * kUlp * std::fabs(want[i]) + 1e-30) << op.name << "(" << x[i] << ")";
    }
  }
}

TEST_P(CpuElementwise, AddMulAndMixesMatchReference) {
  std::mt19937 rng(12);
  for (int width : {1, 7, 16, 100}) {
    const int rows = 3;
    const size_t n = static_cast<size_t>(rows) * width;
    const std::vector<float> x = Inputs(n, rng), y = Inputs(n, rng);
    std::uniform_real_distribution<float> u(0, 1);
    std::vector<float> c(width);
    for (float& f : c) f = u(rng);
    std::vector<float> got = x, want = x;
    k().add(got.data(), y.data(), n);
    reference::Add(want.data(), y.data(), n);
    EXPECT_EQ(got, want) << "add " << width;
    got = x, want = x;
    k().mul(got.data(), y.data(), n);
    reference::Mul(want.data(), y.data(), n);
    EXPECT_EQ(got, want) << "mul " << width;
    for (bool delta : {true, false}) {
      (delta ? k().mix_delta : k().mix_interp)(x.data(), y.data(), c.data(), rows, width, got.data());
      (delta ? reference::MixDelta : reference::MixInterp)(x.data(), y.data(), c.data(), rows, width, want.data());
      for (size_t i = 0; i < n; ++i) {
        const double scale = std::fabs(x[i]) + std::fabs(y[i]);
        ASSERT_NEAR(got[i], want[i], 4 * kUlp * scale) << (delta ? "mix_delta " : "mix_interp ") << width;
      }
    }
  }
}

TEST_P(CpuElementwise, Rwkv7PrepareAndOutputMatchReference) {
  std::mt19937 rng(13);
  std::normal_distribution<float> d(0.0f, 1.0f);
  auto vec = [&](size_t n) {
    std::vector<float> v(n);
    for (float& f : v) f = d(rng);
    return v;
  };
  for (int n : {16, 32, 64, 24 /* not a multiple of the vector: reference fallback */}) {
    const int heads = 3, c = heads * n, rows = 5;
    const size_t total = static_cast<size_t>(rows) * c;
    const std::vector<float> w0 = vec(c), a0 = vec(c), v0 = vec(c), k_k = vec(c), k_a = vec(c);
    const std::vector<float> k_in = vec(total), v_in = vec(total), wz_in = vec(total), az_in = vec(total), vz = vec(total), v_first_in = vec(total);
    for (bool first : {true, false}) {
      struct Buffers {
        std::vector<float> k, v, wz, az, v_first, b;
      } got{k_in, v_in, wz_in, az_in, v_first_in, std::vector<float>(total)}, want = got;
      auto args = [&](Buffers& bufs) {
        Rwkv7PrepareArgs a;
        a.rows = rows, a.n_head = heads, a.head_size = n, a.first_layer = first;
        a.k = bufs.k.data(), a.v = bufs.v.data(), a.wz = bufs.wz.data(), a.az = bufs.az.data();
        a.vz = vz.data(), a.v_first = bufs.v_first.data(), a.b = bufs.b.data();
        a.w0 = w0.data(), a.a0 = a0.data(), a.v0 = v0.data(), a.k_k = k_k.data(), a.k_a = k_a.data();
        return a;
      };
      k().rwkv7_prepare(args(got));
      reference::Rwkv7Prepare(args(want));
      const std::vector<float>* pairs[][2] = {{&got.k, &want.k}, {&got.v, &want.v}, {&got.wz, &want.wz},
                                              {&got.az, &want.az}, {&got.v_first, &want.v_first}, {&got.b, &want.b}};
      for (int p = 0; p < 6; ++p)
        for (size_t i = 0; i < total; ++i)
          ASSERT_NEAR((*pairs[p][0])[i], (*pairs[p][1])[i], 1e-6 * (1 + std::fabs((*pairs[p][1])[i])))
              << "prepare output " << p << " n " << n << " first " << first;
    }
    const std::vector<float> y_in = vec(total), r = vec(total), kk = vec(total), v = vec(total), g = vec(total);
    const std::vector<float> ln_w = vec(c), ln_b = vec(c), r_k = vec(c);
    std::vector<float> got = y_in, want = y_in;
    Rwkv7OutputArgs a;
    a.rows = rows, a.n_head = heads, a.head_size = n;
    a.r = r.data(), a.k = kk.data(), a.v = v.data(), a.g = g.data();
    a.ln_w = ln_w.data(), a.ln_b = ln_b.data(), a.r_k = r_k.data();
    a.y = got.data();
    k().rwkv7_output(a);
    a.y = want.data();
    reference::Rwkv7Output(a);
    for (size_t i = 0; i < total; ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << "output n " << n;
  }
}

TEST_P(CpuElementwise, Wkv4MatchesReferenceWholeAndInChannelRanges) {
  std::mt19937 rng(14);
  std::normal_distribution<float> d(0.0f, 2.0f);
  for (int width : {5, 37, 100}) {
    const int row_begin[3] = {0, 3, 4};
    const int rows = 4;
    std::vector<float> key(rows * width), v(rows * width), u(width), w(width), state(6 * width);
    for (auto* x : {&key, &v, &u, &state}) for (float& f : *x) f = d(rng);
    for (float& f : w) f = -std::exp(d(rng));
    for (int s = 0; s < 2; ++s)  // bb is a positive denominator in a real state
      for (int c = 0; c < width; ++c) state[(2 + s) * width + c] = std::fabs(state[(2 + s) * width + c]) + 0.1f;
    for (int split : {width, 16}) {
      std::vector<float> st_got = state, st_want = state, y_got(rows * width), y_want(rows * width);
      auto args = [&](std::vector<float>& st, std::vector<float>& y, float** aa, float** bb, float** pp) {
        for (int s = 0; s < 2; ++s) {
          aa[s] = st.data() + s * width;
          bb[s] = st.data() + (2 + s) * width;
          pp[s] = st.data() + (4 + s) * width;
        }
        Wkv4Args a;
        a.seqs = {2, row_begin};
        a.width = width, a.k = key.data(), a.v = v.data(), a.time_first = u.data(), a.time_decay = w.data();
        a.aa = aa, a.bb = bb, a.pp = pp, a.wkv = y.data();
        return a;
      };
      float *ga[2], *gb[2], *gp[2], *wa[2], *wb[2], *wp[2];
      const Wkv4Args got = args(st_got, y_got, ga, gb, gp), want = args(st_want, y_want, wa, wb, wp);
      for (int c0 = 0; c0 < width; c0 += split) k().wkv4_channels(got, c0, std::min(width, c0 + split));
      reference::Wkv4(want);
      for (size_t i = 0; i < y_got.size(); ++i) ASSERT_NEAR(y_got[i], y_want[i], 1e-5 * (1 + std::fabs(y_want[i]))) << "width " << width;
      for (size_t i = 0; i < st_got.size(); ++i) ASSERT_NEAR(st_got[i], st_want[i], 1e-5 * (1 + std::fabs(st_want[i]))) << "width " << width;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, CpuElementwise, ::testing::ValuesIn(testing::RunnableIsas()), testing::IsaTestName);

}  // namespace
}  // namespace retain::kernels::cpu
