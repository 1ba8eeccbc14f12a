// The CUDA tests' gate: they run only where the CUDA runtime finds a device, and otherwise report
// themselves skipped (never passed), with the runtime's reason. Only a missing device skips: on a
// machine with one, a cuda backend that cannot be created (no cuBLAS, a driver error) fails.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "absl/status/status.h"
#include "engine/backend/backend.h"
#include "gtest/gtest.h"

namespace retain::testing {

// Empty when there is a device; else why not.
inline std::string NoCudaDeviceReason() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess) return std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
  return devices == 0 ? "cudaGetDeviceCount: 0 devices" : "";
}

inline absl::Status CudaBackendStatus() { return engine::CreateBackend("cuda", {}).status(); }

}  // namespace retain::testing

// Skips the test on a machine without a CUDA device; fails it when the backend cannot be created.
#define RETAIN_SKIP_WITHOUT_CUDA()                                                    \
  do {                                                                                \
    const std::string retain_no_device = ::retain::testing::NoCudaDeviceReason();     \
    if (!retain_no_device.empty()) GTEST_SKIP() << "no GPU: " << retain_no_device;    \
    const absl::Status retain_cuda_status = ::retain::testing::CudaBackendStatus();   \
    ASSERT_TRUE(retain_cuda_status.ok()) << retain_cuda_status;                       \
  } while (0)
