// Threaded matrix product for the CPU backend: y[M,N] = x[M,K]·Wᵀ over f32/f16/bf16 weights.
// Each weight row is widened once and dotted with every x row, so a batch reads the weights once.
#pragma once

#include "engine/kernels/kernel_args.h"
#include "engine/util/thread_pool.h"

namespace retain::kernels::cpu {

void MatMul(const MatMulArgs& args, engine::ThreadPool& pool);

}  // namespace retain::kernels::cpu
