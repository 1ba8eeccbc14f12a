// Random test inputs that are never exactly zero (a zero hides a kernel that skips a term).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace retain::testing {

inline std::vector<float> NonZeroUniform(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) {
    do x = d(gen);
    while (x == 0.0f);
  }
  return v;
}

}  // namespace retain::testing
