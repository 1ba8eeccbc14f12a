// The CUDA backend (issue 15, first slice): RWKV-7 only. Weights widened to f32 on the device,
// projections through cuBLAS (one SGEMM per weight over every row of the step), the fused WKV-7
// kernel updating each session's state in place, the element-wise kernels of cuda_kernels.h.
// Unverified on GPU: this code has been compiled, never run on a device (bench/results/cuda.md).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"

namespace retain::engine {

// FailedPrecondition when this machine has no usable CUDA device (the tests skip on it).
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options);

}  // namespace retain::engine
