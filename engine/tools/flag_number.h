// A command-line flag's value as a number, for retain-run and the bench tools: a value that is no
// number says "is not a number"; a number the type cannot hold, or outside [lo, hi], says "is out
// of range" and gives the range.
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace retain::tools {

// --threads of every tool: 0 = every core this process may use (ModelOptions::num_threads), else 1 to this many.
inline constexpr int kMaxThreads = 1024;

// True for an optional sign followed by decimal digits only: an integer, whatever its size.
inline bool IsIntegerText(absl::string_view s) {
  s = absl::StripAsciiWhitespace(s);
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s)
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

template <typename T>
absl::Status ParseFlagNumber(absl::string_view flag, absl::string_view text, T* out,
                             T lo = std::numeric_limits<T>::lowest(), T hi = std::numeric_limits<T>::max()) {
  static_assert(std::is_arithmetic_v<T>);
  auto out_of_range = [&] {
    // The range, unless it is only a floating-point type's own (no one types 3.40282e+38).
    const bool own = std::is_floating_point_v<T> && lo == std::numeric_limits<T>::lowest() &&
                     hi == std::numeric_limits<T>::max();
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is out of range", own ? "" : absl::StrCat(" [", lo, ", ", hi, "]")));
  };
  T v{};
  if constexpr (std::is_floating_point_v<T>) {
    bool ok;
    if constexpr (std::is_same_v<T, float>) ok = absl::SimpleAtof(text, &v);
    else ok = absl::SimpleAtod(text, &v);
    if (!ok || std::isnan(v)) return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is not a number"));
    if (std::isinf(v)) return out_of_range();  // beyond the type's range, or "inf"
  } else {
    if (!absl::SimpleAtoi(text, &v)) {
      if (IsIntegerText(text)) return out_of_range();
      return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is not a number"));
    }
  }
  if (v < lo || v > hi) return out_of_range();
  *out = v;
  return absl::OkStatus();
}

}  // namespace retain::tools
