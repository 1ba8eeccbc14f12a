// AVX-512 build of the simd_*.inc kernels (compiled with -mavx512f -mavx512bw -mavx512vl; see CMake).
#define RETAIN_SIMD_NS avx512
#include "engine/kernels/cpu/simd_vec.inc"
#include "engine/kernels/cpu/simd_matmul.inc"
#include "engine/kernels/cpu/simd_elementwise.inc"
#include "engine/kernels/cpu/simd_rwkv.inc"
#include "engine/kernels/cpu/simd_retention.inc"
#include "engine/kernels/cpu/simd_table.inc"
