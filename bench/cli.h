// The command line shared by the bench tools: "--name value" flags into strings, non-negative ints
// and doubles, bare switches, and errors printed as "tool: message" with exit code 2.
#pragma once

#include <cstdio>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retain::bench {

struct Flags {
  std::map<std::string, std::string*> strings;
  std::map<std::string, int*> ints;  // must parse as integers >= 0
  std::map<std::string, double*> doubles;
  std::map<std::string, bool*> switches;  // present = true, no value
};

absl::Status ParseFlags(int argc, char** argv, const Flags& flags);

// main() of a tool: runs `run` on the parsed options, or reports why not.
template <class Options, class Run>
int ToolMain(const char* tool, const absl::StatusOr<Options>& options, Run run) {
  const absl::Status s = options.ok() ? run(*options) : options.status();
  if (s.ok()) return 0;
  std::fprintf(stderr, "%s: %s\n", tool, std::string(s.message()).c_str());
  return 2;
}

}  // namespace retain::bench
