// KernelsFor: the table of the requested ISA.
#include "engine/kernels/cpu/simd_kernels.h"

namespace retain::kernels::cpu {

const SimdKernels& KernelsFor(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return avx512::kKernels;
    case Isa::kAvx2: return avx2::kKernels;
    case Isa::kGeneric: break;
  }
  return generic::kKernels;
}

}  // namespace retain::kernels::cpu
