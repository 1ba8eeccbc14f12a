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
  // y[m, j] for j in [j0, j1), all m: weight rows j0..j1 meet every x row. `panel` is scratch of
  // kPanelRows × kPanelCols floats for widening low-precision weights when m is large.
  void (*matmul_rows)(const MatMulArgs& args, int j0, int j1, float* panel);
  // Wkv7 for one (sequence, head); requires head_size % 16 == 0 (else use the reference).
  void (*wkv7_head)(const Wkv7Args& args, int seq, int head);
  void (*layer_norm)(const float* x, int rows, int width, const float* w, const float* b, float eps,
                     float* y);
};

constexpr int kPanelRows = 64;
constexpr int kPanelCols = 512;  // the K block

const SimdKernels& KernelsFor(Isa isa);

namespace generic { extern const SimdKernels kKernels; }
namespace avx2 { extern const SimdKernels kKernels; }
namespace avx512 { extern const SimdKernels kKernels; }

}  // namespace retain::kernels::cpu
