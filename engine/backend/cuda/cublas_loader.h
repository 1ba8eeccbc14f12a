// cuBLAS, opened at run time by the cuda backend instead of linked.
//
// Why: libcublasLt carries 92 KiB of static TLS. Linked into a program, that much is carved out of
// every thread's stack, and civetweb (prometheus-cpp's /metrics server) starts its threads with
// ~100 KiB stacks, so its pthread_create fails (EINVAL) and retain-server cannot serve metrics,
// whatever the backend. Opened with dlopen, its TLS is allocated per thread when first used, and
// programs that never create a cuda backend never load cuBLAS at all.
#pragma once

#include <cublas_v2.h>

#include "absl/status/statusor.h"

namespace retain::engine::cuda {

struct CublasApi {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t);
  cublasStatus_t (*sgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const float*,
                          const float*, int, const float*, int, const float*, float*, int);
  const char* (*status_string)(cublasStatus_t);
};

// libcublas.so.<the major version built against>, opened once and never closed; FailedPrecondition
// naming the library or symbol when it cannot be.
absl::StatusOr<const CublasApi*> LoadCublas();

}  // namespace retain::engine::cuda
