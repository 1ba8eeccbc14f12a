// Plain scalar kernels: no SIMD, no threads. The truth every faster kernel is tested against.
#pragma once

#include <cstddef>

#include "engine/kernels/kernel_args.h"
#include "retain/engine/tokenizer.h"

namespace retain::kernels::reference {

void Embedding(const MatrixRef& emb, const engine::TokenId* tokens, int rows, float* out);
void LayerNorm(const float* x, int rows, int width, const float* w, const float* b, float eps,
               float* y);
void MatMul(const MatMulArgs& args);
void TokenShift(const TokenShiftArgs& args);
// out = x + (prev - x)⊙c (RWKV-6/7 convention: c weighs the delta)
void MixDelta(const float* x, const float* prev, const float* c, int rows, int width, float* out);
// out = x⊙m + prev⊙(1-m) (RWKV-4 convention: m weighs the current token)
void MixInterp(const float* x, const float* prev, const float* m, int rows, int width,
               float* out);
void Tanh(float* x, size_t n);
void Sigmoid(float* x, size_t n);
void ReluSquare(float* x, size_t n);
void Add(float* x, const float* y, size_t n);  // x += y
void Mul(float* x, const float* y, size_t n);  // x *= y
void Rwkv7Prepare(const Rwkv7PrepareArgs& args);
void Wkv7(const Wkv7Args& args);
// One (sequence, head) of Wkv7: lets a threaded caller split the work without a second copy.
void Wkv7Head(const Wkv7Args& args, int seq, int head);
void Rwkv7Output(const Rwkv7OutputArgs& args);
void Wkv4(const Wkv4Args& args);

}  // namespace retain::kernels::reference
