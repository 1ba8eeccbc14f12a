// Plain scalar kernels of the scalar-decay ops (retention_args.h): no SIMD intrinsics, no threads.
// The truth every faster or threaded version is tested against. Loops are ordered so that the
// innermost one runs over contiguous value channels, which is also what makes them usable as the
// per-(sequence, head) body of the CPU backend's threaded retention.
#pragma once

#include <cstddef>

#include "engine/kernels/retention_args.h"

namespace retain::kernels::reference {

void Scale(float* x, size_t n, float s);                           // x *= s
void AddBias(float* x, const float* bias, int rows, int width);  // x[r, :] += bias
void Silu(float* x, size_t n);                                     // x·σ(x) (swish)
void Gelu(float* x, size_t n);                                     // exact erf GELU
void Norm(const NormArgs& args);
void RotaryAngles(const RotaryAnglesArgs& args);
void Rotate(const RotateArgs& args);
void AdvancePositions(const AdvancePositionsArgs& args);

// Dispatches every (sequence, head) to the form the args name.
void Retention(const RetentionArgs& args);
// One (sequence, head) of Retention: lets a threaded caller split the work without a second copy.
void RetentionHead(const RetentionArgs& args, int seq, int head);

// γ^t as exp(t·log γ) in f32, t >= 0; powers below the smallest normal f32 are returned as 0
// (they weigh < 1e-38 and denormal arithmetic is slow on x86).
float DecayPower(float log_decay, int t);

}  // namespace retain::kernels::reference
