// Threaded matrix product for the CPU backend: y[M,N] = x[M,K]·Wᵀ over f32/f16/bf16 weights.
// Weight rows are split across the pool in panels; every x row meets each panel while it is in
// cache, so a batch (or a prefill chunk) reads the weights from memory once.
#pragma once

#include "engine/kernels/cpu/simd_kernels.h"
#include "engine/kernels/kernel_args.h"
#include "engine/util/thread_pool.h"

namespace retain::kernels::cpu {

void MatMul(const MatMulArgs& args, const SimdKernels& kernels, engine::ThreadPool& pool);

// Several independent products in one parallel region: the threads split the panels of all of
// them by cost (panel count × K), so a decode step waits at one barrier instead of one per product.
void MatMuls(const MatMulArgs* list, int count, const SimdKernels& kernels, engine::ThreadPool& pool);

}  // namespace retain::kernels::cpu
