// Portable build of the simd_*.inc kernels (baseline x86-64 or any other CPU).
#define RETAIN_SIMD_NS generic
#include "engine/kernels/cpu/simd_vec.inc"
#include "engine/kernels/cpu/simd_matmul.inc"
#include "engine/kernels/cpu/simd_elementwise.inc"
#include "engine/kernels/cpu/simd_rwkv.inc"
#include "engine/kernels/cpu/simd_retention.inc"
#include "engine/kernels/cpu/simd_table.inc"
