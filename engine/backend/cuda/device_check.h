// cudaError_t → absl::Status, naming what failed.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace retain::engine::cuda {

inline absl::Status CudaStatus(cudaError_t e, absl::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  if (e == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) return absl::FailedPreconditionError(msg);
  return absl::InternalError(msg);
}

}  // namespace retain::engine::cuda

// Returns the Status of a failed CUDA runtime call from the enclosing function.
#define RETAIN_CUDA_RETURN(call, what)                                                   \
  do {                                                                                   \
    if (const cudaError_t retain_cuda_e = (call); retain_cuda_e != cudaSuccess)         \
      return ::retain::engine::cuda::CudaStatus(retain_cuda_e, what);                    \
  } while (0)
