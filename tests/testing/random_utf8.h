// Random valid UTF-8 for tokenizer tests and its benchmark (bench/tokenizer_bench.cc).
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace retain::testing {

inline void AppendCodePoint(uint32_t cp, std::string* out) {
  static constexpr unsigned kLead[] = {0, 0, 0xC0, 0xE0, 0xF0};
  const int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  out->push_back(static_cast<char>(n == 1 ? cp : kLead[n] | (cp >> (6 * (n - 1)))));
  for (int k = n - 2; k >= 0; --k) out->push_back(static_cast<char>(0x80 | ((cp >> (6 * k)) & 0x3F)));
}

// Mixes 1-, 2-, 3- and 4-byte code points with equal probability.
inline std::string RandomUtf8(std::mt19937& rng, size_t max_chars) {
  static constexpr uint32_t kLo[] = {0, 0x80, 0x800, 0x10000};
  static constexpr uint32_t kHi[] = {0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
  std::string s;
  for (size_t n = std::uniform_int_distribution<size_t>(0, max_chars)(rng); n > 0; --n) {
    const int w = std::uniform_int_distribution<int>(0, 3)(rng);
    const uint32_t cp = std::uniform_int_distribution<uint32_t>(kLo[w], kHi[w])(rng);
    if (cp < 0xD800 || cp > 0xDFFF) AppendCodePoint(cp, &s);  // surrogates are not encodable
  }
  return s;
}

}  // namespace retain::testing
