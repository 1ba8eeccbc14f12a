// Launchers of the CUDA backend's kernels (elementwise.cu, rwkv7.cu). Plain C++ on both sides, so
// only the two .cu files go through nvcc. Every pointer is device memory, including the SeqRows
// row_begin array and the per-sequence state table inside the argument structs (kernel_args.h):
// the backend uploads those to fixed device buffers before it calls these. Each launcher enqueues
// on `stream` and returns the launch's error (cudaGetLastError), never waits.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "engine/kernels/kernel_args.h"

namespace retain::kernels::cuda {

// out[t, :] = emb[tokens[t], :] widened to f32; emb row-major in its stored dtype.
cudaError_t Embedding(const MatrixRef& emb, const int* tokens, int rows, float* out, cudaStream_t stream);
cudaError_t LayerNorm(const float* x, int rows, int width, const float* w, const float* b, float eps,
                      float* y, cudaStream_t stream);
// args.seqs.row_begin and args.states in device memory.
cudaError_t TokenShift(const TokenShiftArgs& args, cudaStream_t stream);
cudaError_t MixDelta(const float* x, const float* prev, const float* c, int rows, int width, float* out,
                     cudaStream_t stream);
cudaError_t MixInterp(const float* x, const float* prev, const float* m, int rows, int width, float* out,
                      cudaStream_t stream);

enum class UnaryOp { kTanh, kSigmoid, kReluSquare };
cudaError_t Unary(UnaryOp op, float* x, size_t n, cudaStream_t stream);
enum class BinaryOp { kAdd, kMul };  // x ← x op y
cudaError_t Binary(BinaryOp op, float* x, const float* y, size_t n, cudaStream_t stream);

cudaError_t Rwkv7Prepare(const Rwkv7PrepareArgs& args, cudaStream_t stream);
// The fused WKV-7 decode/prefill scan: one block per (sequence, head) reads the head's N×N state
// once into shared memory, runs the sequence's tokens (update and read-out together), and writes
// the state back in place. args.seqs.row_begin and args.states in device memory.
cudaError_t Wkv7(const Wkv7Args& args, cudaStream_t stream);
cudaError_t Rwkv7Output(const Rwkv7OutputArgs& args, cudaStream_t stream);

// table[i] = base + slots[i] · slot_floats (+ offset_floats): the per-sequence state pointers of a
// step from slot indices, on the device (slot_pool.cc).
cudaError_t SlotPointers(float* base, size_t slot_floats, size_t offset_floats, const int* slots, int n,
                         float** table, cudaStream_t stream);

}  // namespace retain::kernels::cuda
