// AVX-512 build of simd_kernels.inc (compiled with -mavx512f -mavx512bw -mavx512vl; see CMake).
#define RETAIN_SIMD_NS avx512
#include "engine/kernels/cpu/simd_kernels.inc"
