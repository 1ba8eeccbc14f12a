// The CUDA tests' gate: they run only where the cuda backend finds a device, and otherwise report
// themselves skipped (never passed), with the reason the backend gave.
#pragma once

#include "absl/status/status.h"
#include "engine/backend/backend.h"
#include "gtest/gtest.h"

namespace retain::testing {

inline absl::Status CudaBackendStatus() { return engine::CreateBackend("cuda", {}).status(); }

}  // namespace retain::testing

// Skips the test on a machine without a CUDA device; fails it on any other error.
#define RETAIN_SKIP_WITHOUT_CUDA()                                                  \
  do {                                                                              \
    const absl::Status retain_cuda_status = ::retain::testing::CudaBackendStatus(); \
    if (absl::IsFailedPrecondition(retain_cuda_status))                             \
      GTEST_SKIP() << "no GPU: " << retain_cuda_status;                             \
    ASSERT_TRUE(retain_cuda_status.ok()) << retain_cuda_status;                     \
  } while (0)
