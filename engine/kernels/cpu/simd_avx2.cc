// AVX2 + FMA + F16C build of the simd_*.inc kernels (compiled with those flags; see engine/CMakeLists.txt).
#define RETAIN_SIMD_NS avx2
#include "engine/kernels/cpu/simd_vec.inc"
#include "engine/kernels/cpu/simd_matmul.inc"
#include "engine/kernels/cpu/simd_elementwise.inc"
#include "engine/kernels/cpu/simd_rwkv.inc"
#include "engine/kernels/cpu/simd_retention.inc"
#include "engine/kernels/cpu/simd_table.inc"
