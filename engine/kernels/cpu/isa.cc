// ISA detection.
#include "engine/kernels/cpu/isa.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace retain::kernels::cpu {

std::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kGeneric: return "generic";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

#if defined(__x86_64__) || defined(__i386__)
// CPUID leaf 1, ECX: clang before 15 has no "f16c" for __builtin_cpu_supports (the fuzz build
// uses clang-14), and the bit is what both compilers' builtin reads.
bool HasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
#endif

Isa DetectedIsa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma")) {
    return Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c()) {
    return Isa::kAvx2;
  }
#endif
  return Isa::kGeneric;
}

Isa ActiveIsa() {
  static const Isa active = [] {
    Isa isa = DetectedIsa();
    if (const char* env = std::getenv("RETAIN_CPU_ISA")) {
      for (Isa cand : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512})
        if (IsaName(cand) == env) isa = std::min(isa, cand);
    }
    return isa;
  }();
  return active;
}

}  // namespace retain::kernels::cpu
