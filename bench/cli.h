// The command line shared by the bench tools: "--name value" flags into strings, ints (within
// bounds, by default >= 0) and doubles, bare switches, --help/-h, and errors printed as
// "tool: message" with exit code 2.
#pragma once

#include <climits>
#include <cstdio>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retain::bench {

struct IntFlag {
  IntFlag(int* v, int lo_ = 0, int hi_ = INT_MAX) : value(v), lo(lo_), hi(hi_) {}
  int* value;
  int lo, hi;  // a value outside [lo, hi] is refused as out of range
};

struct Flags {
  std::map<std::string, std::string*> strings;
  std::map<std::string, IntFlag> ints;
  std::map<std::string, double*> doubles;
  std::map<std::string, bool*> switches;  // present = true, no value
};

// Parses argv into `flags`. --help or -h where a flag name is expected sets *help and stops there.
absl::Status ParseFlags(int argc, char** argv, const Flags& flags, bool* help);

// main() of a tool: prints `usage` to stdout for --help, else runs `run` on the parsed options or
// reports why not. Options has a `help` member, set by ParseFlags.
template <class Options, class Run>
int ToolMain(const char* tool, const char* usage, const absl::StatusOr<Options>& options, Run run) {
  if (options.ok() && options->help) {
    std::fputs(usage, stdout);
    return 0;
  }
  const absl::Status s = options.ok() ? run(*options) : options.status();
  if (s.ok()) return 0;
  std::fprintf(stderr, "%s: %s\n", tool, std::string(s.message()).c_str());
  return 2;
}

}  // namespace retain::bench
