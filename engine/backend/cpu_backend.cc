// CPU backend: reference kernels for the cheap element-wise ops, threaded kernels for the matrix
// products and the WKV scans, which are where the time goes. Also the backend registry.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/backend/backend.h"
#ifdef RETAIN_HAVE_CUDA
#include "engine/backend/cuda/cuda_backend.h"
#endif
#include "engine/kernels/cpu/isa.h"
#include "engine/kernels/cpu/matmul.h"
#include "engine/kernels/cpu/simd_kernels.h"
#include "engine/kernels/pack.h"
#include "engine/kernels/reference/ops.h"
#include "engine/kernels/reference/retention.h"
#include "engine/util/thread_pool.h"

namespace retain::engine {
namespace {

namespace ref = kernels::reference;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int num_threads)
      : pool_(num_threads), simd_(kernels::cpu::KernelsFor(kernels::cpu::ActiveIsa())) {}
  std::string_view name() const override { return "cpu"; }

  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) override {
    // Large buffers (weights, state pools) go on 2 MiB pages where the kernel allows: streaming
    // weights through 4 KiB pages costs a TLB walk every 4 KiB (measured: ~20% of decode speed).
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t align = bytes >= 2 * kHuge ? kHuge : 64;
    const size_t rounded = (std::max<size_t>(bytes, 1) + align - 1) / align * align;
    void* p = std::aligned_alloc(align, rounded);
    if (p == nullptr) return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes"));
    if (align == kHuge) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
    return DeviceBuffer(p, bytes, &std::free);
  }
  void Discard(void* p, size_t bytes) override {
    // Whole pages inside the range only: the neighbours of a slot share its edge pages.
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) / page * page;
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advice only
  }
  void CopyToDevice(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void CopyToHost(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void Copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  size_t MatrixBytes(DType dtype, int rows, int cols) const override {
    return kernels::StoredElements(kernels::MatrixLayout::kPanels, rows, cols) * DTypeSize(dtype);
  }
  MatrixRef UploadMatrix(const void* host, DType dtype, int rows, int cols, void* dst) override {
    return kernels::PackPanels(host, dtype, rows, cols, dst);
  }

  void HostParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) override {
    pool_.ParallelFor(n, 1, fn);
  }

  void Embedding(const MatrixRef& emb, const TokenId* tokens, int rows, float* out) override {
    ref::Embedding(emb, tokens, rows, out);
  }
  void LayerNorm(const float* x, int rows, int width, const float* w, const float* b, float eps,
                 float* y) override {
    pool_.ParallelFor(rows, 8, [&](int64_t begin, int64_t end) {
      const size_t off = static_cast<size_t>(begin) * width;
      simd_.layer_norm(x + off, static_cast<int>(end - begin), width, w, b, eps, y + off);
    });
  }
  void MatMul(const kernels::MatMulArgs& args) override {
    // Matrices not uploaded through UploadMatrix stay correct, only slow.
    if (args.w.layout != kernels::MatrixLayout::kPanels) return ref::MatMul(args);
    kernels::cpu::MatMul(args, simd_, pool_);
  }
  void MatMuls(std::initializer_list<kernels::MatMulArgs> list) override {
    for (const kernels::MatMulArgs& a : list)
      if (a.w.layout != kernels::MatrixLayout::kPanels) return Backend::MatMuls(list);
    kernels::cpu::MatMuls(list.begin(), static_cast<int>(list.size()), simd_, pool_);
  }
  void TokenShift(const kernels::TokenShiftArgs& args) override { ref::TokenShift(args); }
  void MixDelta(const float* x, const float* prev, const float* c, int rows, int width,
                float* out) override {
    Rows(rows, width, [&](int64_t b, int64_t e, size_t off) {
      simd_.mix_delta(x + off, prev + off, c, static_cast<int>(e - b), width, out + off);
    });
  }
  void MixInterp(const float* x, const float* prev, const float* m, int rows, int width,
                 float* out) override {
    Rows(rows, width, [&](int64_t b, int64_t e, size_t off) {
      simd_.mix_interp(x + off, prev + off, m, static_cast<int>(e - b), width, out + off);
    });
  }
  void Tanh(float* x, size_t n) override { Elements(n, [&](size_t b, size_t e) { simd_.tanh(x + b, e - b); }); }
  void Sigmoid(float* x, size_t n) override { Elements(n, [&](size_t b, size_t e) { simd_.sigmoid(x + b, e - b); }); }
  void ReluSquare(float* x, size_t n) override {
    Elements(n, [&](size_t b, size_t e) { simd_.relu_square(x + b, e - b); });
  }
  void Add(float* x, const float* y, size_t n) override { Elements(n, [&](size_t b, size_t e) { simd_.add(x + b, y + b, e - b); }); }
  void Mul(float* x, const float* y, size_t n) override { Elements(n, [&](size_t b, size_t e) { simd_.mul(x + b, y + b, e - b); }); }
  void Rwkv7Prepare(const kernels::Rwkv7PrepareArgs& args) override {
    const int width = args.n_head * args.head_size;
    Rows(args.rows, width, [&](int64_t b, int64_t e, size_t off) {
      kernels::Rwkv7PrepareArgs part = args;
      part.rows = static_cast<int>(e - b);
      for (float** p : {&part.k, &part.v, &part.wz, &part.az, &part.v_first, &part.b}) *p += off;
      if (part.vz != nullptr) part.vz += off;
      simd_.rwkv7_prepare(part);
    });
  }
  void Wkv7(const kernels::Wkv7Args& args) override {
    PerHead(args.seqs.num_seqs, args.n_head, [&](int s, int h) { simd_.wkv7_head(args, s, h); });
  }
  void Rwkv7Output(const kernels::Rwkv7OutputArgs& args) override {
    const int width = args.n_head * args.head_size;
    Rows(args.rows, width, [&](int64_t b, int64_t e, size_t off) {
      kernels::Rwkv7OutputArgs part = args;
      part.rows = static_cast<int>(e - b);
      part.y += off;
      for (const float** p : {&part.r, &part.k, &part.v, &part.g}) *p += off;
      simd_.rwkv7_output(part);
    });
  }
  void Wkv4(const kernels::Wkv4Args& args) override {
    // Channels are independent; blocks of 64 keep every vector whole.
    const int64_t blocks = (args.width + 63) / 64, rows = args.seqs.row_begin[args.seqs.num_seqs];
    pool_.ParallelFor(blocks, std::max<int64_t>(1, 16384 / (64 * std::max<int64_t>(rows, 1))), [&](int64_t b, int64_t e) {
      simd_.wkv4_channels(args, static_cast<int>(b * 64), static_cast<int>(std::min<int64_t>(e * 64, args.width)));
    });
  }

  // Scalar-decay ops (RetNet, TransNormerLLM). Element-wise and per-row ops are split over rows or
  // element ranges: every value is computed the same way whatever the split, so results do not
  // depend on the thread count. Prefill steps make them worth threading; decode rows are few.
  void Scale(float* x, size_t n, float s) override { ref::Scale(x, n, s); }
  void AddBias(float* x, const float* bias, int rows, int width) override { ref::AddBias(x, bias, rows, width); }
  void Silu(float* x, size_t n) override { Elements(n, [&](size_t b, size_t e) { simd_.silu(x + b, e - b); }); }
  void Gelu(float* x, size_t n) override { Elements(n, [&](size_t b, size_t e) { ref::Gelu(x + b, e - b); }); }
  void Norm(const kernels::NormArgs& args) override {
    pool_.ParallelFor(args.rows, 8, [&](int64_t b, int64_t e) {
      kernels::NormArgs part = args;
      part.rows = static_cast<int>(e - b);
      part.x = args.x + b * args.width;
      part.y = args.y + b * args.width;
      ref::Norm(part);
    });
  }
  void RotaryAngles(const kernels::RotaryAnglesArgs& args) override { ref::RotaryAngles(args); }
  void Rotate(const kernels::RotateArgs& args) override {
    const int64_t width = static_cast<int64_t>(args.n_head) * args.head_size;
    const bool lrpe = args.style == kernels::RotationStyle::kLrpe;
    const int64_t table = lrpe ? width : args.head_size / 2, out = lrpe ? 2 * width : width;
    pool_.ParallelFor(args.rows, 8, [&](int64_t b, int64_t e) {
      kernels::RotateArgs part = args;
      part.rows = static_cast<int>(e - b);
      part.x = args.x + b * width;
      part.y = args.y + b * out;
      part.cos = args.cos + b * table;
      part.sin = args.sin + b * table;
      ref::Rotate(part);
    });
  }
  void AdvancePositions(const kernels::AdvancePositionsArgs& args) override { ref::AdvancePositions(args); }
  void Retention(const kernels::RetentionArgs& args) override {
    PerHead(args.seqs.num_seqs, args.n_head, [&](int s, int h) { simd_.retention_head(args, s, h); });
  }

 private:
  // Element ranges and row ranges worth a hand-off to the pool: decode-sized work stays on the
  // calling thread. Each element is computed the same way whatever the split.
  static constexpr int64_t kElementGrain = 1 << 14;
  template <class F>
  void Elements(size_t n, F f) {
    pool_.ParallelFor(static_cast<int64_t>(n), kElementGrain,
                      [&](int64_t b, int64_t e) { f(static_cast<size_t>(b), static_cast<size_t>(e)); });
  }
  // (sequence, head) pairs are independent: each owns its slice of state and output, and is
  // computed by one thread whatever the thread count, so results do not depend on it.
  template <class F>
  void PerHead(int num_seqs, int n_head, F f) {
    pool_.ParallelFor(static_cast<int64_t>(num_seqs) * n_head, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) f(static_cast<int>(p / n_head), static_cast<int>(p % n_head));
    });
  }
  template <class F>
  void Rows(int rows, int width, F f) {
    pool_.ParallelFor(rows, std::max<int64_t>(1, kElementGrain / std::max(width, 1)),
                      [&](int64_t b, int64_t e) { f(b, e, static_cast<size_t>(b) * width); });
  }

  ThreadPool pool_;
  const kernels::cpu::SimdKernels& simd_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name,
                                                       const BackendOptions& options) {
  if (name == "cpu") return std::make_unique<CpuBackend>(options.num_threads);
#ifdef RETAIN_HAVE_CUDA
  if (name == "cuda") return CreateCudaBackend(options);
  constexpr const char* kBuilt = "cpu, cuda";
#else
  constexpr const char* kBuilt = "cpu; cuda needs a build with nvcc";
#endif
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", std::string(name), "' (this build has: ", kBuilt, ")"));
}

}  // namespace retain::engine
