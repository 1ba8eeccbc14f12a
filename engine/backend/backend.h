// The seam between model definitions and compute devices. A model is written once against this
// interface; the CPU backend implements it today, a CUDA backend plugs in beside it without a line
// of model code changing. All pointers given to ops are backend memory (host memory on the CPU
// backend); host arrays of per-sequence pointers (SeqRows, states) are read by the backend itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "engine/kernels/kernel_args.h"
#include "engine/kernels/retention_args.h"
#include "retain/engine/model_config.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {

using kernels::MatrixRef;

// Owning handle to backend memory.
class DeviceBuffer {
 public:
  using Deleter = void (*)(void*);
  DeviceBuffer() = default;
  DeviceBuffer(void* data, size_t bytes, Deleter deleter) : data_(data, deleter), bytes_(bytes) {}
  void* data() const { return data_.get(); }
  float* f32() const { return static_cast<float*>(data_.get()); }
  size_t bytes() const { return bytes_; }

 private:
  std::unique_ptr<void, Deleter> data_{nullptr, [](void*) {}};
  size_t bytes_ = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  // OK when this backend implements every op the family uses; else Unimplemented, saying so,
  // which the loader returns before it uploads a weight. The CPU backend runs every family.
  virtual absl::Status CheckArchitecture(Architecture) const { return absl::OkStatus(); }

  // Memory. Allocations are 64-byte aligned; ResourceExhausted when the device is out of memory.
  virtual absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) = 0;
  // The contents of [p, p + bytes) of an allocation are no longer needed: the backend may give
  // the memory back (reads before the next write see unspecified values). No-op by default.
  virtual void Discard(void* /*p*/, size_t /*bytes*/) {}
  virtual void CopyToDevice(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void CopyToHost(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void Copy(void* dst, const void* src, size_t bytes) = 0;  // within the device
  // Host work split over the backend's host threads (Model::ParallelFor). Default: the caller.
  virtual void HostParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) { fn(0, n); }

  // Weight matrices for MatMul (and Embedding), in the layout this backend's kernels read best:
  // MatrixBytes of backend memory at dst receive the row-major host matrix.
  virtual size_t MatrixBytes(DType dtype, int rows, int cols) const {
    return kernels::StoredElements(kernels::MatrixLayout::kRowMajor, rows, cols) * DTypeSize(dtype);
  }
  virtual MatrixRef UploadMatrix(const void* host, DType dtype, int rows, int cols, void* dst) {
    CopyToDevice(dst, host, MatrixBytes(dtype, rows, cols));
    return MatrixRef{dtype, rows, cols, dst};
  }

  // Ops (row-major f32 activations; see kernel_args.h for the exact contract of each).
  virtual void Embedding(const MatrixRef& emb, const TokenId* host_tokens, int rows, float* out) = 0;
  virtual void LayerNorm(const float* x, int rows, int width, const float* w, const float* b,
                         float eps, float* y) = 0;
  virtual void MatMul(const kernels::MatMulArgs& args) = 0;
  // Independent products (no output is another's input), as one unit of work: a backend may run
  // them together instead of one after another.
  virtual void MatMuls(std::initializer_list<kernels::MatMulArgs> list) {
    for (const kernels::MatMulArgs& a : list) MatMul(a);
  }
  virtual void TokenShift(const kernels::TokenShiftArgs& args) = 0;
  virtual void MixDelta(const float* x, const float* prev, const float* c, int rows, int width,
                        float* out) = 0;
  virtual void MixInterp(const float* x, const float* prev, const float* m, int rows, int width,
                         float* out) = 0;
  virtual void Tanh(float* x, size_t n) = 0;
  virtual void Sigmoid(float* x, size_t n) = 0;
  virtual void ReluSquare(float* x, size_t n) = 0;
  virtual void Add(float* x, const float* y, size_t n) = 0;
  virtual void Mul(float* x, const float* y, size_t n) = 0;
  virtual void Rwkv7Prepare(const kernels::Rwkv7PrepareArgs& args) = 0;
  virtual void Wkv7(const kernels::Wkv7Args& args) = 0;
  virtual void Rwkv7Output(const kernels::Rwkv7OutputArgs& args) = 0;
  virtual void Wkv4(const kernels::Wkv4Args& args) = 0;

  // Scalar-decay ops of RetNet and TransNormerLLM (see retention_args.h for each contract).
  virtual void Scale(float* x, size_t n, float s) = 0;
  virtual void AddBias(float* x, const float* bias, int rows, int width) = 0;
  virtual void Silu(float* x, size_t n) = 0;
  virtual void Gelu(float* x, size_t n) = 0;
  virtual void Norm(const kernels::NormArgs& args) = 0;
  virtual void RotaryAngles(const kernels::RotaryAnglesArgs& args) = 0;
  virtual void Rotate(const kernels::RotateArgs& args) = 0;
  virtual void AdvancePositions(const kernels::AdvancePositionsArgs& args) = 0;
  virtual void Retention(const kernels::RetentionArgs& args) = 0;
};

struct BackendOptions {
  int num_threads = 0;  // 0 = the CPUs this process may use (affinity, cgroup quota)
};

// The only place that knows which backends exist: "cpu", and "cuda" in builds with CUDA
// (RETAIN_HAVE_CUDA; FailedPrecondition on a machine without a device).
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view name,
                                                       const BackendOptions& options);

}  // namespace retain::engine
