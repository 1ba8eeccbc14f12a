// The CPU kernels that are worth vectorising, one table per instruction set. The same sources
// (simd_*.inc) are compiled once per ISA with that ISA's flags; nothing is hand-copied.
// Each function matches its reference in kernels/reference/ops.h (tested on odd sizes).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/kernels/cpu/isa.h"
#include "engine/kernels/kernel_args.h"
#include "engine/kernels/retention_args.h"

namespace retain::kernels::cpu {

struct SimdKernels {
  // y[m, j] for the rows j of panels [p0, p1) of a MatrixLayout::kPanels W, every m.
  void (*matmul_panels)(const MatMulArgs& args, int p0, int p1);
  // Wkv7 for one (sequence, head); requires head_size % 16 == 0 (else use the reference).
  void (*wkv7_head)(const Wkv7Args& args, int seq, int head);
  void (*layer_norm)(const float* x, int rows, int width, const float* w, const float* b, float eps,
                     float* y);
  // Element-wise and per-row ops, each as its namesake in reference/ops.h.
  void (*sigmoid)(float* x, size_t n);
  void (*tanh)(float* x, size_t n);
  void (*silu)(float* x, size_t n);
  void (*relu_square)(float* x, size_t n);
  void (*add)(float* x, const float* y, size_t n);
  void (*mul)(float* x, const float* y, size_t n);
  void (*mix_delta)(const float* x, const float* prev, const float* c, int rows, int width, float* out);
  void (*mix_interp)(const float* x, const float* prev, const float* m, int rows, int width, float* out);
  void (*rwkv7_prepare)(const Rwkv7PrepareArgs& args);
  void (*rwkv7_output)(const Rwkv7OutputArgs& args);
  // Wkv4 restricted to channels [c0, c1) (channels are independent).
  void (*wkv4_channels)(const Wkv4Args& args, int c0, int c1);
  // reference::RetentionHead's contract, every form.
  void (*retention_head)(const RetentionArgs& args, int seq, int head);
};

constexpr int kMatMulBlockK = 256;  // K block of a panel read by every row tile: 32-64 KiB, in L2

const SimdKernels& KernelsFor(Isa isa);

namespace generic { extern const SimdKernels kKernels; }
namespace avx2 { extern const SimdKernels kKernels; }
namespace avx512 { extern const SimdKernels kKernels; }

}  // namespace retain::kernels::cpu
