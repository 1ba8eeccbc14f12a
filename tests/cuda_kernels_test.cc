// Every CUDA kernel of the cuda backend (engine/backend/cuda) against its reference kernel
// (engine/kernels/reference) on random inputs (never zeros), with every output poisoned (NaN)
// before the kernel runs: odd sizes, sequences of different lengths in one step, states in
// non-contiguous slots in no particular order. Skipped without a GPU; unverified on GPU so far.
//
// Tolerances: |cuda - reference| ≤ tol · (1 + |reference|). Copies (embedding, token shift) are
// exact; single roundings (mixes, add, mul) 1e-6, allowing nvcc's fused multiply-adds;
// expf/tanhf 1e-6 (a few ulp); per-row and per-head sums, which the device adds in another order,
// 1e-5.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/kernels/reference/ops.h"
#include "gtest/gtest.h"
#include "tests/testing/cuda_device.h"
#include "tests/testing/random_floats.h"

namespace retain::engine {
namespace {

namespace ref = kernels::reference;

using retain::testing::NonZeroUniform;

// The element with the largest error, and how many exceed the tolerance.
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, float tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, worst = 0;
  double worst_err = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::isnan(got[i]) ? std::numeric_limits<double>::infinity()
                                          : std::fabs(double{got[i]} - want[i]) / (1.0 + std::fabs(want[i]));
    if (!(err <= tol)) ++bad;
    if (err > worst_err) worst_err = err, worst = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " outside " << tol << "; worst at " << worst
                     << ": cuda " << got[worst] << ", reference " << want[worst];
}

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    RETAIN_SKIP_WITHOUT_CUDA();
    auto b = CreateBackend("cuda", {});
    ASSERT_TRUE(b.ok()) << b.status();
    be_ = std::move(*b);
  }

  // Device copy of host data; alive as long as the fixture.
  float* Dev(const std::vector<float>& host) {
    auto buf = be_->Allocate(host.size() * sizeof(float));
    EXPECT_TRUE(buf.ok()) << buf.status();
    be_->CopyToDevice(buf->data(), host.data(), host.size() * sizeof(float));
    float* p = buf->f32();
    bufs_.push_back(std::move(*buf));
    return p;
  }
  float* Poisoned(size_t n) { return Dev(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN())); }
  std::vector<float> Host(const float* dev, size_t n) {
    std::vector<float> v(n);
    be_->CopyToHost(v.data(), dev, n * sizeof(float));
    return v;
  }

  std::unique_ptr<Backend> be_;
  std::vector<DeviceBuffer> bufs_;
};

TEST_F(CudaKernels, EmbeddingGathersRowsInEveryStoredDtype) {
  const int vocab = 37, cols = 67, rows = 9;
  const std::vector<TokenId> tokens = {3, 36, 0, 3, 17, 5, 5, 30, 1};
  const std::vector<float> table = NonZeroUniform(static_cast<size_t>(vocab) * cols, 1);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    std::vector<uint16_t> half(table.size());
    for (size_t i = 0; i < table.size(); ++i)
      half[i] = dtype == DType::kBF16 ? FloatToBF16(table[i]) : FloatToF16(table[i]);
    const void* host = dtype == DType::kF32 ? static_cast<const void*>(table.data()) : half.data();
    const size_t bytes = table.size() * DTypeSize(dtype);
    auto dev = be_->Allocate(bytes);
    ASSERT_TRUE(dev.ok());
    be_->CopyToDevice(dev->data(), host, bytes);
    float* out = Poisoned(static_cast<size_t>(rows) * cols);
    be_->Embedding({dtype, vocab, cols, dev->data()}, tokens.data(), rows, out);
    std::vector<float> want(static_cast<size_t>(rows) * cols);
    ref::Embedding({dtype, vocab, cols, host}, tokens.data(), rows, want.data());
    ExpectClose(Host(out, want.size()), want, 0.0f, std::string("embedding ") + std::string(DTypeName(dtype)));
  }
}

TEST_F(CudaKernels, LayerNormMatchesReferenceAlsoInPlace) {
  const int rows = 5, width = 67;
  const size_t n = static_cast<size_t>(rows) * width;
  std::vector<float> x = NonZeroUniform(n, 2, -3.0f, 5.0f);
  const std::vector<float> w = NonZeroUniform(width, 3), b = NonZeroUniform(width, 4);
  std::vector<float> want(n);
  ref::LayerNorm(x.data(), rows, width, w.data(), b.data(), 1e-5f, want.data());
  float *dx = Dev(x), *dw = Dev(w), *db = Dev(b), *dy = Poisoned(n);
  be_->LayerNorm(dx, rows, width, dw, db, 1e-5f, dy);
  ExpectClose(Host(dy, n), want, 1e-5f, "layer norm");
  be_->LayerNorm(dx, rows, width, dw, db, 1e-5f, dx);
  ExpectClose(Host(dx, n), want, 1e-5f, "layer norm in place");
}

TEST_F(CudaKernels, MatMulMatchesReferenceForEveryWeightDtype) {
  const int n = 33, k = 45;
  const std::vector<float> w = NonZeroUniform(static_cast<size_t>(n) * k, 5);
  for (int m : {1, 7}) {
    const std::vector<float> x = NonZeroUniform(static_cast<size_t>(m) * k, 6 + m);
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      std::vector<uint16_t> half(w.size());
      for (size_t i = 0; i < w.size(); ++i) half[i] = dtype == DType::kBF16 ? FloatToBF16(w[i]) : FloatToF16(w[i]);
      const void* host = dtype == DType::kF32 ? static_cast<const void*>(w.data()) : half.data();
      auto dev = be_->Allocate(be_->MatrixBytes(dtype, n, k));
      ASSERT_TRUE(dev.ok());
      const MatrixRef dw = be_->UploadMatrix(host, dtype, n, k, dev->data());
      float* y = Poisoned(static_cast<size_t>(m) * n);
      be_->MatMul({Dev(x), m, dw, y});
      std::vector<float> want(static_cast<size_t>(m) * n);
      ref::MatMul({x.data(), m, MatrixRef{dtype, n, k, host}, want.data()});
      ExpectClose(Host(y, want.size()), want, 1e-5f, "matmul m=" + std::to_string(m) + " " + std::string(DTypeName(dtype)));
    }
  }
}

// Sequences of 2, 1 and 3 rows whose states sit in slots 4, 0 and 2 of five.
struct Step {
  std::vector<int> row_begin = {0, 2, 3, 6};
  std::vector<int> slots = {4, 0, 2};
  int num_slots = 5;
  int rows() const { return row_begin.back(); }
  int seqs() const { return static_cast<int>(slots.size()); }
};

TEST_F(CudaKernels, TokenShiftReadsAndWritesStatesInTheirSlots) {
  const Step st;
  const int width = 67;
  const std::vector<float> x = NonZeroUniform(static_cast<size_t>(st.rows()) * width, 7);
  std::vector<float> states = NonZeroUniform(static_cast<size_t>(st.num_slots) * width, 8);
  float* dstates = Dev(states);
  std::vector<float*> host_ptrs, dev_ptrs;
  for (int s : st.slots) {
    host_ptrs.push_back(states.data() + static_cast<size_t>(s) * width);
    dev_ptrs.push_back(dstates + static_cast<size_t>(s) * width);
  }
  std::vector<float> want(x.size());
  ref::TokenShift({{st.seqs(), st.row_begin.data()}, width, x.data(), host_ptrs.data(), want.data()});
  float* prev = Poisoned(x.size());
  be_->TokenShift({{st.seqs(), st.row_begin.data()}, width, Dev(x), dev_ptrs.data(), prev});
  ExpectClose(Host(prev, x.size()), want, 0.0f, "token shift prev");
  ExpectClose(Host(dstates, states.size()), states, 0.0f, "token shift states (untouched slots too)");
}

TEST_F(CudaKernels, MixesMatchReference) {
  const int rows = 3, width = 131;
  const size_t n = static_cast<size_t>(rows) * width;
  const std::vector<float> x = NonZeroUniform(n, 9), prev = NonZeroUniform(n, 10), c = NonZeroUniform(width, 11, 0.0f, 1.0f);
  std::vector<float> want(n);
  float* out = Poisoned(n);
  ref::MixDelta(x.data(), prev.data(), c.data(), rows, width, want.data());
  be_->MixDelta(Dev(x), Dev(prev), Dev(c), rows, width, out);
  ExpectClose(Host(out, n), want, 1e-6f, "mix delta");
  out = Poisoned(n);
  ref::MixInterp(x.data(), prev.data(), c.data(), rows, width, want.data());
  be_->MixInterp(Dev(x), Dev(prev), Dev(c), rows, width, out);
  ExpectClose(Host(out, n), want, 1e-6f, "mix interp");
}

TEST_F(CudaKernels, ElementWiseOpsMatchReference) {
  const size_t n = 1001;
  const std::vector<float> x0 = NonZeroUniform(n, 12, -6.0f, 6.0f), y = NonZeroUniform(n, 13);
  struct Op {
    const char* name;
    void (*reference)(float*, size_t);
    void (Backend::*cuda)(float*, size_t);
  };
  for (const Op& op : {Op{"tanh", ref::Tanh, &Backend::Tanh}, Op{"sigmoid", ref::Sigmoid, &Backend::Sigmoid},
                       Op{"relu square", ref::ReluSquare, &Backend::ReluSquare}}) {
    std::vector<float> want = x0;
    op.reference(want.data(), n);
    float* d = Dev(x0);
    (be_.get()->*op.cuda)(d, n);
    ExpectClose(Host(d, n), want, 1e-6f, op.name);
  }
  std::vector<float> want = x0;
  ref::Add(want.data(), y.data(), n);
  float* d = Dev(x0);
  be_->Add(d, Dev(y), n);
  ExpectClose(Host(d, n), want, 1e-6f, "add");
  want = x0;
  ref::Mul(want.data(), y.data(), n);
  d = Dev(x0);
  be_->Mul(d, Dev(y), n);
  ExpectClose(Host(d, n), want, 1e-6f, "mul");
}

// The WKV inputs of RWKV-7 on random projections: the reference's own Rwkv7Prepare output, so the
// scan sees decays in (0, 1) and a unit-norm a, as in a model.
struct Wkv7Inputs {
  std::vector<float> r, w, k, v, a, b;
};
Wkv7Inputs PreparedInputs(int rows, int n_head, int n, uint32_t seed) {
  const size_t m = static_cast<size_t>(rows) * n_head * n;
  const int width = n_head * n;
  Wkv7Inputs in{NonZeroUniform(m, seed), NonZeroUniform(m, seed + 1), NonZeroUniform(m, seed + 2), NonZeroUniform(m, seed + 3),
                NonZeroUniform(m, seed + 4), std::vector<float>(m)};
  std::vector<float> v_first(m);
  const std::vector<float> w0 = NonZeroUniform(width, seed + 5), a0 = NonZeroUniform(width, seed + 6), k_k = NonZeroUniform(width, seed + 7),
                           k_a = NonZeroUniform(width, seed + 8);
  kernels::Rwkv7PrepareArgs p;
  p.rows = rows, p.n_head = n_head, p.head_size = n, p.first_layer = true;
  p.k = in.k.data(), p.v = in.v.data(), p.wz = in.w.data(), p.az = in.a.data(), p.v_first = v_first.data();
  p.b = in.b.data(), p.w0 = w0.data(), p.a0 = a0.data(), p.k_k = k_k.data(), p.k_a = k_a.data();
  ref::Rwkv7Prepare(p);
  return in;
}

class CudaPrepare : public CudaKernels, public ::testing::WithParamInterface<bool> {};

TEST_P(CudaPrepare, MatchesReference) {
  const bool first = GetParam();
  const int rows = 5, h = 3, n = 16, width = h * n;
  const size_t m = static_cast<size_t>(rows) * width;
  std::vector<float> k = NonZeroUniform(m, 20), v = NonZeroUniform(m, 21), wz = NonZeroUniform(m, 22), az = NonZeroUniform(m, 23), vz = NonZeroUniform(m, 24),
                     v_first = NonZeroUniform(m, 25);
  const std::vector<float> w0 = NonZeroUniform(width, 26), a0 = NonZeroUniform(width, 27), v0 = NonZeroUniform(width, 28),
                           k_k = NonZeroUniform(width, 29), k_a = NonZeroUniform(width, 30);
  kernels::Rwkv7PrepareArgs d;
  d.rows = rows, d.n_head = h, d.head_size = n, d.first_layer = first;
  d.k = Dev(k), d.v = Dev(v), d.wz = Dev(wz), d.az = Dev(az), d.vz = Dev(vz);
  d.v_first = first ? Poisoned(m) : Dev(v_first);
  d.b = Poisoned(m);
  d.w0 = Dev(w0), d.a0 = Dev(a0), d.v0 = Dev(v0), d.k_k = Dev(k_k), d.k_a = Dev(k_a);
  be_->Rwkv7Prepare(d);
  std::vector<float> b(m);
  kernels::Rwkv7PrepareArgs p = d;
  p.k = k.data(), p.v = v.data(), p.wz = wz.data(), p.az = az.data(), p.vz = vz.data(), p.v_first = v_first.data();
  p.b = b.data(), p.w0 = w0.data(), p.a0 = a0.data(), p.v0 = v0.data(), p.k_k = k_k.data(), p.k_a = k_a.data();
  ref::Rwkv7Prepare(p);
  ExpectClose(Host(d.k, m), k, 1e-5f, "k");
  ExpectClose(Host(d.v, m), v, 1e-6f, "v");
  ExpectClose(Host(d.wz, m), wz, 1e-6f, "w");
  ExpectClose(Host(d.az, m), az, 1e-5f, "a");
  ExpectClose(Host(d.b, m), b, 1e-5f, "b");
  ExpectClose(Host(d.v_first, m), v_first, 0.0f, "v_first");
}

INSTANTIATE_TEST_SUITE_P(Layers, CudaPrepare, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "FirstLayer" : "LaterLayer"; });

// head_size 16 and 64 (the kits', the default model's), 128 (past 48 KiB of shared memory).
class CudaWkv7 : public CudaKernels, public ::testing::WithParamInterface<int> {};

TEST_P(CudaWkv7, UpdatesStatesInPlaceAndReadsOut) {
  const Step st;
  const int n = GetParam(), h = n == 128 ? 1 : 3, width = h * n;
  const size_t slot = static_cast<size_t>(h) * n * n;
  const Wkv7Inputs in = PreparedInputs(st.rows(), h, n, 40);
  std::vector<float> states = NonZeroUniform(slot * st.num_slots, 50, -0.5f, 0.5f);
  float* dstates = Dev(states);
  std::vector<float*> host_ptrs, dev_ptrs;
  for (int s : st.slots) {
    host_ptrs.push_back(states.data() + s * slot);
    dev_ptrs.push_back(dstates + s * slot);
  }
  const size_t m = static_cast<size_t>(st.rows()) * width;
  std::vector<float> want(m);
  kernels::Wkv7Args a;
  a.seqs = {st.seqs(), st.row_begin.data()};
  a.n_head = h, a.head_size = n;
  a.r = in.r.data(), a.w = in.w.data(), a.k = in.k.data(), a.v = in.v.data(), a.a = in.a.data(), a.b = in.b.data();
  a.states = host_ptrs.data(), a.y = want.data();
  kernels::Wkv7Args d = a;
  d.r = Dev(in.r), d.w = Dev(in.w), d.k = Dev(in.k), d.v = Dev(in.v), d.a = Dev(in.a), d.b = Dev(in.b);
  d.states = dev_ptrs.data(), d.y = Poisoned(m);
  be_->Wkv7(d);
  ref::Wkv7(a);
  ExpectClose(Host(d.y, m), want, 1e-5f, "wkv7 y");
  ExpectClose(Host(dstates, states.size()), states, 1e-5f, "wkv7 states (untouched slots exact)");
}

INSTANTIATE_TEST_SUITE_P(HeadSizes, CudaWkv7, ::testing::Values(16, 64, 128),
                         [](const auto& info) { return "N" + std::to_string(info.param); });

TEST_F(CudaKernels, Rwkv7OutputMatchesReference) {
  for (int n : {16, 64}) {
    const int rows = 5, h = 3, width = h * n;
    const size_t m = static_cast<size_t>(rows) * width;
    std::vector<float> y = NonZeroUniform(m, 60, -2.0f, 3.0f);
    const std::vector<float> r = NonZeroUniform(m, 61), k = NonZeroUniform(m, 62), v = NonZeroUniform(m, 63), g = NonZeroUniform(m, 64),
                             ln_w = NonZeroUniform(width, 65), ln_b = NonZeroUniform(width, 66), r_k = NonZeroUniform(width, 67);
    float* dy = Dev(y);
    be_->Rwkv7Output({rows, h, n, 64e-5f, dy, Dev(r), Dev(k), Dev(v), Dev(g), Dev(ln_w), Dev(ln_b), Dev(r_k)});
    ref::Rwkv7Output({rows, h, n, 64e-5f, y.data(), r.data(), k.data(), v.data(), g.data(), ln_w.data(), ln_b.data(),
                      r_k.data()});
    ExpectClose(Host(dy, m), y, 1e-5f, "rwkv7 output N=" + std::to_string(n));
  }
}

}  // namespace
}  // namespace retain::engine
