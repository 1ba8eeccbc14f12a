// AVX2 + FMA + F16C build of simd_kernels.inc (compiled with those flags; see engine/CMakeLists.txt).
#define RETAIN_SIMD_NS avx2
#include "engine/kernels/cpu/simd_kernels.inc"
