// Which vector instruction set the CPU kernels use, chosen once at run time from the CPU's features
// (RETAIN_CPU_ISA=generic|avx2|avx512 lowers it, for tests and comparisons; it never raises it).
#pragma once

#include <string_view>

namespace retain::kernels::cpu {

enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

std::string_view IsaName(Isa isa);
Isa DetectedIsa();  // what this CPU supports
Isa ActiveIsa();    // DetectedIsa() lowered by RETAIN_CPU_ISA

}  // namespace retain::kernels::cpu
