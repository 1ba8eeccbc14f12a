// The CUDA backend's RWKV-7 kernels (spec shared/spec/rwkv.md §3): the per-token preparation of
// the WKV inputs, the fused WKV-7 scan on the states in place, and the read-out (group norm, bonus,
// gate). Each mirrors its reference in engine/kernels/reference/ops.cc line for line; the scan
// sums in the reference's order (one thread per value row, keys in order), the per-head
// reductions of the other two in a warp's order.
#include <cmath>

#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/reduce.cuh"

namespace retain::kernels::cuda {
namespace {

__device__ __forceinline__ float Sig(float z) { return 1.0f / (1.0f + expf(-z)); }

// One warp per (row, head): grid rows · n_head.
__global__ void PrepareKernel(Rwkv7PrepareArgs a) {
  const int n = a.head_size, width = a.n_head * n;
  const int row = blockIdx.x / a.n_head, h = blockIdx.x % a.n_head;
  const size_t off = static_cast<size_t>(row) * width;
  float *k = a.k + off, *v = a.v + off, *w = a.wz + off, *ia = a.az + off, *b = a.b + off;
  float norm = 0;
  for (int j = h * n + threadIdx.x; j < (h + 1) * n; j += 32) norm += (k[j] * a.k_k[j]) * (k[j] * a.k_k[j]);
  const float inv = 1.0f / fmaxf(sqrtf(WarpSum(norm)), 1e-12f);
  for (int j = h * n + threadIdx.x; j < (h + 1) * n; j += 32) {
    const float kk = k[j] * a.k_k[j] * inv;
    const float iclr = Sig(a.a0[j] + ia[j]);
    w[j] = expf(-0.606531f * Sig(a.w0[j] + w[j]));
    k[j] = k[j] * (1.0f + (iclr - 1.0f) * a.k_a[j]);
    ia[j] = -kk;
    b[j] = kk * iclr;
    if (a.first_layer) {
      a.v_first[off + j] = v[j];
    } else {
      v[j] = v[j] + (a.v_first[off + j] - v[j]) * Sig(a.v0[j] + a.vz[off + j]);
    }
  }
}

// One block of N threads per (sequence, head). The head's state S [N value][N key] is read once
// into shared memory (rows padded by one float so that thread i's row i sits in its own banks),
// each token is one pass of S ← S·diag(w) + (S·a) bᵀ + v kᵀ, y = S·r with thread i owning row i,
// and S goes back to the slot in place: no gather into a batch, no scatter after.
__global__ void Wkv7Kernel(Wkv7Args a) {
  extern __shared__ float smem[];
  const int n = a.head_size, ld = n + 1, width = a.n_head * n;
  const int seq = blockIdx.x / a.n_head, h = blockIdx.x % a.n_head, i = threadIdx.x;
  float* s = smem;                          // [n][ld]
  float *r = s + n * ld, *w = r + n, *k = w + n, *aa = k + n, *b = aa + n;
  float* state = a.states[seq] + static_cast<size_t>(h) * n * n;
  for (int e = i; e < n * n; e += n) s[(e / n) * ld + e % n] = state[e];  // coalesced
  const int begin = a.seqs.row_begin[seq], end = a.seqs.row_begin[seq + 1];
  for (int t = begin; t < end; ++t) {
    const size_t off = static_cast<size_t>(t) * width + h * n;
    __syncthreads();  // the previous token's readers of r..b are done (and the state is loaded)
    r[i] = a.r[off + i];
    w[i] = a.w[off + i];
    k[i] = a.k[off + i];
    aa[i] = a.a[off + i];
    b[i] = a.b[off + i];
    const float vi = a.v[off + i];
    __syncthreads();
    float* si = s + i * ld;
    float sa = 0;
    for (int j = 0; j < n; ++j) sa += si[j] * aa[j];
    float y = 0;
    for (int j = 0; j < n; ++j) {
      si[j] = si[j] * w[j] + sa * b[j] + vi * k[j];
      y += si[j] * r[j];
    }
    a.y[off + i] = y;
  }
  __syncthreads();
  for (int e = i; e < n * n; e += n) state[e] = s[(e / n) * ld + e % n];
}

// One warp per (row, head): group norm of y, the bonus Σ r⊙k⊙r_k times v, the gate.
__global__ void OutputKernel(Rwkv7OutputArgs a) {
  const int n = a.head_size, width = a.n_head * n;
  const int row = blockIdx.x / a.n_head, h = blockIdx.x % a.n_head;
  const size_t off = static_cast<size_t>(row) * width;
  float* y = a.y + off;
  const float *r = a.r + off, *k = a.k + off, *v = a.v + off, *g = a.g + off;
  const int lo = h * n, hi = lo + n;
  float sum = 0, bonus = 0;
  for (int j = lo + threadIdx.x; j < hi; j += 32) {
    sum += y[j];
    bonus += r[j] * k[j] * a.r_k[j];
  }
  const float mean = WarpSum(sum) / n;
  bonus = WarpSum(bonus);
  float var = 0;
  for (int j = lo + threadIdx.x; j < hi; j += 32) var += (y[j] - mean) * (y[j] - mean);
  const float inv = 1.0f / sqrtf(WarpSum(var) / n + a.eps);
  for (int j = lo + threadIdx.x; j < hi; j += 32) {
    const float normed = (y[j] - mean) * inv * a.ln_w[j] + a.ln_b[j];
    y[j] = (normed + bonus * v[j]) * g[j];
  }
}

size_t Wkv7SharedBytes(int n) { return sizeof(float) * (static_cast<size_t>(n) * (n + 1) + 5 * n); }

}  // namespace

cudaError_t Rwkv7Prepare(const Rwkv7PrepareArgs& a, cudaStream_t stream) {
  if (a.rows > 0) PrepareKernel<<<a.rows * a.n_head, 32, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t Wkv7(const Wkv7Args& a, cudaStream_t stream) {
  if (a.head_size < 1 || a.head_size > 1024) return cudaErrorInvalidValue;
  const size_t smem = Wkv7SharedBytes(a.head_size);
  // Past 48 KiB a kernel must opt in (head_size 128 needs ~66 KiB; an H200 SM has 227 KiB).
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(Wkv7Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  if (a.seqs.num_seqs > 0) Wkv7Kernel<<<a.seqs.num_seqs * a.n_head, a.head_size, smem, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t Rwkv7Output(const Rwkv7OutputArgs& a, cudaStream_t stream) {
  if (a.rows > 0) OutputKernel<<<a.rows * a.n_head, 32, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace retain::kernels::cuda
