// Parameterising a kernel test over every instruction set this CPU can run.
#pragma once

#include <string>
#include <vector>

#include "engine/kernels/cpu/isa.h"
#include "engine/kernels/cpu/simd_kernels.h"
#include "gtest/gtest.h"

namespace retain::testing {

inline std::vector<kernels::cpu::Isa> RunnableIsas() {
  using kernels::cpu::Isa;
  std::vector<Isa> v;
  for (Isa i : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512})
    if (i <= kernels::cpu::DetectedIsa()) v.push_back(i);
  return v;
}

// A fixture whose k() is the kernel table of the ISA under test.
class IsaTest : public ::testing::TestWithParam<kernels::cpu::Isa> {
 protected:
  const kernels::cpu::SimdKernels& k() const { return kernels::cpu::KernelsFor(GetParam()); }
};

inline std::string IsaTestName(const ::testing::TestParamInfo<kernels::cpu::Isa>& info) {
  return std::string(kernels::cpu::IsaName(info.param));
}

}  // namespace retain::testing
