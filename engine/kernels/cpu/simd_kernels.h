// The CPU kernels that are worth vectorising, one table per instruction set. The same source
// (simd_kernels.inc) is compiled once per ISA with that ISA's flags; nothing is hand-copied.
// Each function matches its reference in kernels/reference/ops.h (tested on odd sizes).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/kernels/cpu/isa.h"
#include "engine/kernels/kernel_args.h"

namespace retain::kernels::cpu {

struct SimdKernels {
  // y[m, j] for the rows j of panels [p0, p1) of a MatrixLayout::kPanels W, every m. `scratch`
  // holds kPackRows × kMatMulBlockK floats, for widening low-precision weights when m is large.
  void (*matmul_panels)(const MatMulArgs& args, int p0, int p1, float* scratch);
  // Wkv7 for one (sequence, head); requires head_size % 16 == 0 (else use the reference).
  void (*wkv7_head)(const Wkv7Args& args, int seq, int head);
  void (*layer_norm)(const float* x, int rows, int width, const float* w, const float* b, float eps,
                     float* y);
};

constexpr int kMatMulBlockK = 256;  // a widened panel block, 64 KiB, stays in L2

const SimdKernels& KernelsFor(Isa isa);

namespace generic { extern const SimdKernels kKernels; }
namespace avx2 { extern const SimdKernels kKernels; }
namespace avx512 { extern const SimdKernels kKernels; }

}  // namespace retain::kernels::cpu
