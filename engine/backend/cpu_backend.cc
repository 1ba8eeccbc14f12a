// CPU backend: reference kernels for the cheap element-wise ops, threaded kernels for the matrix
// products and the WKV scans, which are where the time goes. Also the backend registry.
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/backend/backend.h"
#include "engine/kernels/cpu/matmul.h"
#include "engine/kernels/reference/ops.h"
#include "engine/util/thread_pool.h"

namespace retain::engine {
namespace {

namespace ref = kernels::reference;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int num_threads) : pool_(num_threads) {}
  std::string_view name() const override { return "cpu"; }

  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) override {
    const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (p == nullptr) return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes"));
    return DeviceBuffer(p, bytes, &std::free);
  }
  void CopyToDevice(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void CopyToHost(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void Copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

  void Embedding(const MatrixRef& emb, const TokenId* tokens, int rows, float* out) override {
    ref::Embedding(emb, tokens, rows, out);
  }
  void LayerNorm(const float* x, int rows, int width, const float* w, const float* b, float eps,
                 float* y) override {
    ref::LayerNorm(x, rows, width, w, b, eps, y);
  }
  void MatMul(const kernels::MatMulArgs& args) override { kernels::cpu::MatMul(args, pool_); }
  void TokenShift(const kernels::TokenShiftArgs& args) override { ref::TokenShift(args); }
  void MixDelta(const float* x, const float* prev, const float* c, int rows, int width,
                float* out) override {
    ref::MixDelta(x, prev, c, rows, width, out);
  }
  void MixInterp(const float* x, const float* prev, const float* m, int rows, int width,
                 float* out) override {
    ref::MixInterp(x, prev, m, rows, width, out);
  }
  void Tanh(float* x, size_t n) override { ref::Tanh(x, n); }
  void Sigmoid(float* x, size_t n) override { ref::Sigmoid(x, n); }
  void ReluSquare(float* x, size_t n) override { ref::ReluSquare(x, n); }
  void Add(float* x, const float* y, size_t n) override { ref::Add(x, y, n); }
  void Mul(float* x, const float* y, size_t n) override { ref::Mul(x, y, n); }
  void Rwkv7Prepare(const kernels::Rwkv7PrepareArgs& args) override { ref::Rwkv7Prepare(args); }
  void Wkv7(const kernels::Wkv7Args& args) override {
    // (sequence, head) pairs are independent: each owns its slice of state and output.
    const int64_t pairs = static_cast<int64_t>(args.seqs.num_seqs) * args.n_head;
    pool_.ParallelFor(pairs, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p)
        ref::Wkv7Head(args, static_cast<int>(p / args.n_head), static_cast<int>(p % args.n_head));
    });
  }
  void Rwkv7Output(const kernels::Rwkv7OutputArgs& args) override { ref::Rwkv7Output(args); }
  void Wkv4(const kernels::Wkv4Args& args) override { ref::Wkv4(args); }

 private:
  ThreadPool pool_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name,
                                                       const BackendOptions& options) {
  if (name == "cpu") return std::make_unique<CpuBackend>(options.num_threads);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", std::string(name), "' (this build has: cpu)"));
}

}  // namespace retain::engine
