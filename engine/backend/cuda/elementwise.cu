// The CUDA backend's generic kernels: embedding gather, LayerNorm, token shift, the mixes and the
// element-wise ops. Each mirrors its reference in engine/kernels/reference/ops.cc; results differ
// from it only by summation order (LayerNorm) and by the device's expf/tanhf rounding.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/reduce.cuh"

namespace retain::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned Blocks(size_t n) {
  const size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 16 ? (b == 0 ? 1 : b) : 65535 * 16);  // grid-stride beyond
}

__device__ float Load(const void* data, DType dtype, size_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(data)[i];
    case DType::kF16: return __half2float(static_cast<const __half*>(data)[i]);
    case DType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
  }
  return 0.0f;
}

__global__ void EmbeddingKernel(const void* emb, DType dtype, int cols, const int* tokens, float* out) {
  const size_t row = blockIdx.x, src = static_cast<size_t>(tokens[row]) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) out[row * cols + c] = Load(emb, dtype, src + c);
}

// One block per row; two passes like the reference (mean, then the variance about it).
__global__ void LayerNormKernel(const float* x, int width, const float* w, const float* b, float eps, float* y) {
  __shared__ float scratch[32];
  const float* xr = x + static_cast<size_t>(blockIdx.x) * width;
  float* yr = y + static_cast<size_t>(blockIdx.x) * width;
  float s = 0;
  for (int c = threadIdx.x; c < width; c += blockDim.x) s += xr[c];
  const float mean = BlockSum(s, scratch) / width;
  float v = 0;
  for (int c = threadIdx.x; c < width; c += blockDim.x) v += (xr[c] - mean) * (xr[c] - mean);
  const float inv = 1.0f / sqrtf(BlockSum(v, scratch) / width + eps);  // as the reference rounds
  // x and y may alias (ln0 runs in place): every read of this row is behind BlockSum's barrier.
  for (int c = threadIdx.x; c < width; c += blockDim.x) yr[c] = (xr[c] - mean) * inv * w[c] + b[c];
}

// grid (sequences, channel blocks): sequences on x, which takes up to 2^31 - 1 (a step may hold
// 65536 of them). A thread owns one channel of one sequence: it reads the state before it
// overwrites it, so no barrier is needed.
__global__ void TokenShiftKernel(const int* row_begin, int width, const float* x, float* const* states, float* prev) {
  const int c = blockIdx.y * blockDim.x + threadIdx.x, s = blockIdx.x;
  if (c >= width) return;
  const int begin = row_begin[s], end = row_begin[s + 1];
  if (end <= begin) return;
  const size_t w = width;
  float* st = states[s];
  prev[begin * w + c] = st[c];
  for (int t = begin + 1; t < end; ++t) prev[t * w + c] = x[(t - 1) * w + c];
  st[c] = x[(end - 1) * w + c];
}

__global__ void MixDeltaKernel(const float* x, const float* prev, const float* c, int width, size_t n, float* out) {
  for (size_t p = blockIdx.x * size_t{blockDim.x} + threadIdx.x; p < n; p += size_t{gridDim.x} * blockDim.x)
    out[p] = x[p] + (prev[p] - x[p]) * c[p % width];
}

__global__ void MixInterpKernel(const float* x, const float* prev, const float* m, int width, size_t n, float* out) {
  for (size_t p = blockIdx.x * size_t{blockDim.x} + threadIdx.x; p < n; p += size_t{gridDim.x} * blockDim.x) {
    const float mi = m[p % width];
    out[p] = x[p] * mi + prev[p] * (1.0f - mi);
  }
}

__global__ void UnaryKernel(UnaryOp op, float* x, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    const float v = x[i];
    switch (op) {
      case UnaryOp::kTanh: x[i] = tanhf(v); break;
      case UnaryOp::kSigmoid: x[i] = 1.0f / (1.0f + expf(-v)); break;
      case UnaryOp::kReluSquare: {
        const float r = v > 0 ? v : 0.0f;
        x[i] = r * r;
        break;
      }
    }
  }
}

__global__ void BinaryKernel(BinaryOp op, float* x, const float* y, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    x[i] = op == BinaryOp::kAdd ? x[i] + y[i] : x[i] * y[i];
}

__global__ void SlotPointersKernel(float* base, size_t slot_floats, size_t offset, const int* slots, int n, float** table) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) table[i] = base + static_cast<size_t>(slots[i]) * slot_floats + offset;
}

}  // namespace

cudaError_t Embedding(const MatrixRef& emb, const int* tokens, int rows, float* out, cudaStream_t stream) {
  if (rows > 0) EmbeddingKernel<<<rows, kThreads, 0, stream>>>(emb.data, emb.dtype, emb.cols, tokens, out);
  return cudaGetLastError();
}

cudaError_t LayerNorm(const float* x, int rows, int width, const float* w, const float* b, float eps, float* y,
                      cudaStream_t stream) {
  if (rows > 0) LayerNormKernel<<<rows, kThreads, 0, stream>>>(x, width, w, b, eps, y);
  return cudaGetLastError();
}

cudaError_t TokenShift(const TokenShiftArgs& a, cudaStream_t stream) {
  if (a.seqs.num_seqs > 0) {
    const dim3 grid(a.seqs.num_seqs, (a.width + kThreads - 1) / kThreads);
    TokenShiftKernel<<<grid, kThreads, 0, stream>>>(a.seqs.row_begin, a.width, a.x, a.states, a.prev);
  }
  return cudaGetLastError();
}

cudaError_t MixDelta(const float* x, const float* prev, const float* c, int rows, int width, float* out,
                     cudaStream_t stream) {
  const size_t n = static_cast<size_t>(rows) * width;
  if (n > 0) MixDeltaKernel<<<Blocks(n), kThreads, 0, stream>>>(x, prev, c, width, n, out);
  return cudaGetLastError();
}

cudaError_t MixInterp(const float* x, const float* prev, const float* m, int rows, int width, float* out,
                      cudaStream_t stream) {
  const size_t n = static_cast<size_t>(rows) * width;
  if (n > 0) MixInterpKernel<<<Blocks(n), kThreads, 0, stream>>>(x, prev, m, width, n, out);
  return cudaGetLastError();
}

cudaError_t Unary(UnaryOp op, float* x, size_t n, cudaStream_t stream) {
  if (n > 0) UnaryKernel<<<Blocks(n), kThreads, 0, stream>>>(op, x, n);
  return cudaGetLastError();
}

cudaError_t Binary(BinaryOp op, float* x, const float* y, size_t n, cudaStream_t stream) {
  if (n > 0) BinaryKernel<<<Blocks(n), kThreads, 0, stream>>>(op, x, y, n);
  return cudaGetLastError();
}

cudaError_t SlotPointers(float* base, size_t slot_floats, size_t offset_floats, const int* slots, int n,
                         float** table, cudaStream_t stream) {
  if (n > 0) SlotPointersKernel<<<(n + kThreads - 1) / kThreads, kThreads, 0, stream>>>(base, slot_floats, offset_floats, slots, n, table);
  return cudaGetLastError();
}

}  // namespace retain::kernels::cuda
