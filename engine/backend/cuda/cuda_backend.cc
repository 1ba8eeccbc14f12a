// CudaBackend: the backend seam (backend.h) on one CUDA device, for RWKV-7 (CheckArchitecture
// refuses the other families at load). Unverified on GPU: compiled here, never run on a device.
//
// Every op is enqueued on one stream, so ops run in the order the model calls them and nothing
// waits for the device except CopyToHost (the logits at the end of a step, exports) and
// CopyToDevice. The seam hands some ops host arrays (token ids, each sequence's first row, each
// sequence's state pointer); they are copied into device buffers at fixed addresses first, in
// stream order, so an op's copy lands after the previous op has read the buffer. Those copies come
// from pageable memory, which the driver stages through a pinned buffer of its own (the host array
// may be reused as soon as the call returns; one extra host copy each). Tables filled once per
// step, which CUDA graphs would need, are left to do (issue 15).
#include "engine/backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cublas_loader.h"
#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/device_check.h"
#include "engine/util/thread_pool.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

namespace ck = kernels::cuda;

// The seam's ops return nothing: a failed launch or copy there is a broken device context (an
// illegal address, a lost device), from which this process cannot recover its sessions' states
// anyway, so it stops loudly, naming the op. Allocation failures are Status (Allocate).
[[noreturn]] void Fail(std::string_view op, std::string_view why) {
  std::fprintf(stderr, "retain: CUDA backend: %.*s failed: %.*s\n", static_cast<int>(op.size()), op.data(),
               static_cast<int>(why.size()), why.data());
  std::abort();
}
void Check(cudaError_t e, std::string_view op) {
  if (e != cudaSuccess) Fail(op, cudaGetErrorString(e));
}

void FreeDevice(void* p) { cudaFree(p); }

// A device buffer at a fixed address receiving one small host array per op. It grows (after the
// stream drains) only when a larger step than any before comes; steps are bounded by the model's
// max_step_tokens, so it is too.
class HostArrayUpload {
 public:
  ~HostArrayUpload() { cudaFree(dev_); }
  template <class T>
  T* Put(const T* host, size_t count, cudaStream_t stream) {
    const size_t bytes = count * sizeof(T);
    if (bytes > cap_) {
      Check(cudaStreamSynchronize(stream), "staging");
      cudaFree(dev_);
      dev_ = nullptr;
      cap_ = std::max<size_t>({bytes, 2 * cap_, 4096});
      Check(cudaMalloc(&dev_, cap_), "staging allocation");
    }
    if (bytes > 0) Check(cudaMemcpyAsync(dev_, host, bytes, cudaMemcpyHostToDevice, stream), "staging copy");
    return static_cast<T*>(dev_);
  }

 private:
  void* dev_ = nullptr;
  size_t cap_ = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int num_threads, cudaStream_t stream, const cuda::CublasApi& cublas, cublasHandle_t blas)
      : pool_(num_threads), stream_(stream), cublas_(cublas), blas_(blas) {}
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cublas_.destroy(blas_);
    cudaStreamDestroy(stream_);
  }
  std::string_view name() const override { return "cuda"; }
  absl::Status CheckArchitecture(Architecture arch) const override {
    if (arch == Architecture::kRwkv7) return absl::OkStatus();
    return absl::UnimplementedError(absl::StrCat("the cuda backend runs rwkv7 models only so far; this model is ",
                                                 std::string(ArchitectureName(arch)), " (use --backend cpu)"));
  }

  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) override {
    void* p = nullptr;
    // cudaMalloc aligns to 256 bytes, above the seam's 64.
    RETAIN_CUDA_RETURN(cudaMalloc(&p, std::max<size_t>(bytes, 1)), absl::StrCat("cudaMalloc of ", bytes, " bytes"));
    return DeviceBuffer(p, bytes, &FreeDevice);
  }
  void CopyToDevice(void* dst, const void* src, size_t bytes) override {
    Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "CopyToDevice");
    Check(cudaStreamSynchronize(stream_), "CopyToDevice");  // the caller may free src on return
  }
  void CopyToHost(void* dst, const void* src, size_t bytes) override {
    Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "CopyToHost");
    Check(cudaStreamSynchronize(stream_), "CopyToHost");
  }
  void Copy(void* dst, const void* src, size_t bytes) override {
    Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "Copy");
  }
  void HostParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) override {
    pool_.ParallelFor(n, 1, fn);
  }

  // Weights are widened to f32 at upload so that every product is an f32 SGEMM, exact to the
  // CPU backend's f32 accumulation; bf16/f16 weights kept as stored (half the bytes a decode step
  // streams) are left to do (issue 15).
  size_t MatrixBytes(DType, int rows, int cols) const override {
    return static_cast<size_t>(rows) * cols * sizeof(float);
  }
  MatrixRef UploadMatrix(const void* host, DType dtype, int rows, int cols, void* dst) override {
    const size_t n = static_cast<size_t>(rows) * cols;
    std::vector<float> f32(n);
    for (size_t i = 0; i < n; ++i) f32[i] = LoadAsFloat(host, dtype, i);
    CopyToDevice(dst, f32.data(), n * sizeof(float));
    return MatrixRef{DType::kF32, rows, cols, dst, kernels::MatrixLayout::kRowMajor};
  }

  void Embedding(const MatrixRef& emb, const TokenId* host_tokens, int rows, float* out) override {
    if (emb.layout != kernels::MatrixLayout::kRowMajor) Fail("Embedding", "the table is not row-major");
    const int* tokens = tokens_.Put(host_tokens, rows, stream_);
    Check(ck::Embedding(emb, tokens, rows, out, stream_), "Embedding");
  }
  void LayerNorm(const float* x, int rows, int width, const float* w, const float* b, float eps,
                 float* y) override {
    Check(ck::LayerNorm(x, rows, width, w, b, eps, y, stream_), "LayerNorm");
  }
  void MatMul(const kernels::MatMulArgs& a) override {
    if (a.w.dtype != DType::kF32 || a.w.layout != kernels::MatrixLayout::kRowMajor)
      Fail("MatMul", "the weight matrix did not come through UploadMatrix (f32, row-major)");
    if (a.m == 0) return;
    // Row-major y[M,N] = x[M,K]·Wᵀ is column-major yᵀ[N,M] = (W as K×N)ᵀ · (x as K×M).
    const float one = 1.0f, zero = 0.0f;
    const cublasStatus_t s = cublas_.sgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, a.w.rows, a.m, a.w.cols, &one,
                                           static_cast<const float*>(a.w.data), a.w.cols, a.x, a.w.cols, &zero, a.y,
                                           a.w.rows);
    if (s != CUBLAS_STATUS_SUCCESS) Fail("MatMul (cublasSgemm)", cublas_.status_string(s));
  }
  void TokenShift(const kernels::TokenShiftArgs& a) override {
    kernels::TokenShiftArgs d = a;
    d.seqs.row_begin = rows_.Put(a.seqs.row_begin, a.seqs.num_seqs + 1, stream_);
    d.states = states_.Put(a.states, a.seqs.num_seqs, stream_);
    Check(ck::TokenShift(d, stream_), "TokenShift");
  }
  void MixDelta(const float* x, const float* prev, const float* c, int rows, int width, float* out) override {
    Check(ck::MixDelta(x, prev, c, rows, width, out, stream_), "MixDelta");
  }
  void MixInterp(const float* x, const float* prev, const float* m, int rows, int width, float* out) override {
    Check(ck::MixInterp(x, prev, m, rows, width, out, stream_), "MixInterp");
  }
  void Tanh(float* x, size_t n) override { Check(ck::Unary(ck::UnaryOp::kTanh, x, n, stream_), "Tanh"); }
  void Sigmoid(float* x, size_t n) override { Check(ck::Unary(ck::UnaryOp::kSigmoid, x, n, stream_), "Sigmoid"); }
  void ReluSquare(float* x, size_t n) override {
    Check(ck::Unary(ck::UnaryOp::kReluSquare, x, n, stream_), "ReluSquare");
  }
  void Add(float* x, const float* y, size_t n) override { Check(ck::Binary(ck::BinaryOp::kAdd, x, y, n, stream_), "Add"); }
  void Mul(float* x, const float* y, size_t n) override { Check(ck::Binary(ck::BinaryOp::kMul, x, y, n, stream_), "Mul"); }
  void Rwkv7Prepare(const kernels::Rwkv7PrepareArgs& a) override {
    Check(ck::Rwkv7Prepare(a, stream_), "Rwkv7Prepare");
  }
  void Wkv7(const kernels::Wkv7Args& a) override {
    kernels::Wkv7Args d = a;
    d.seqs.row_begin = rows_.Put(a.seqs.row_begin, a.seqs.num_seqs + 1, stream_);
    d.states = states_.Put(a.states, a.seqs.num_seqs, stream_);
    Check(ck::Wkv7(d, stream_), "Wkv7");
  }
  void Rwkv7Output(const kernels::Rwkv7OutputArgs& a) override {
    Check(ck::Rwkv7Output(a, stream_), "Rwkv7Output");
  }

  // Not reached: CheckArchitecture refuses RWKV-4, RetNet and TransNormerLLM at load. Their
  // kernels (WKV-4, retention, rotation, norms) are left to do (issue 15).
  void Wkv4(const kernels::Wkv4Args&) override { NotImplemented("Wkv4"); }
  void Scale(float*, size_t, float) override { NotImplemented("Scale"); }
  void AddBias(float*, const float*, int, int) override { NotImplemented("AddBias"); }
  void Silu(float*, size_t) override { NotImplemented("Silu"); }
  void Gelu(float*, size_t) override { NotImplemented("Gelu"); }
  void Norm(const kernels::NormArgs&) override { NotImplemented("Norm"); }
  void RotaryAngles(const kernels::RotaryAnglesArgs&) override { NotImplemented("RotaryAngles"); }
  void Rotate(const kernels::RotateArgs&) override { NotImplemented("Rotate"); }
  void AdvancePositions(const kernels::AdvancePositionsArgs&) override { NotImplemented("AdvancePositions"); }
  void Retention(const kernels::RetentionArgs&) override { NotImplemented("Retention"); }

 private:
  [[noreturn]] static void NotImplemented(std::string_view op) { Fail(op, "not implemented on the cuda backend"); }

  ThreadPool pool_;  // host work only (sampling through Model::ParallelFor)
  cudaStream_t stream_;
  const cuda::CublasApi& cublas_;
  cublasHandle_t blas_;
  HostArrayUpload tokens_, rows_, states_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options) {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA device here (cudaGetDeviceCount: ",
        e == cudaSuccess ? "0 devices" : cudaGetErrorString(e), ")"));
  }
  // Device 0: one backend per process and device selection (CUDA_VISIBLE_DEVICES) outside it.
  RETAIN_CUDA_RETURN(cudaSetDevice(0), "cudaSetDevice(0)");
  RETAIN_ASSIGN_OR_RETURN(const cuda::CublasApi* cublas, cuda::LoadCublas());
  cudaStream_t stream = nullptr;
  RETAIN_CUDA_RETURN(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cublasHandle_t blas = nullptr;
  if (const cublasStatus_t s = cublas->create(&blas); s != CUBLAS_STATUS_SUCCESS) {
    cudaStreamDestroy(stream);
    return absl::InternalError(absl::StrCat("cublasCreate: ", cublas->status_string(s)));
  }
  // Plain f32 SGEMM: CUBLAS_DEFAULT_MATH never uses TF32 (that takes CUBLAS_TF32_TENSOR_OP_MATH),
  // so products round as the CPU reference's f32 ones do, up to summation order.
  cublas->set_math_mode(blas, CUBLAS_DEFAULT_MATH);
  cublas->set_stream(blas, stream);
  return std::make_unique<CudaBackend>(options.num_threads, stream, *cublas, blas);
}

}  // namespace retain::engine
