// Portable build of simd_kernels.inc (baseline x86-64 or any other CPU).
#define RETAIN_SIMD_NS generic
#include "engine/kernels/cpu/simd_kernels.inc"
