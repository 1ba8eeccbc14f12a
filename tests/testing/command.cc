#include "tests/testing/command.h"

#include <sys/wait.h>

#include <cstdio>

namespace retain::testing {

CommandResult RunCommand(const std::string& command_line) {
  FILE* p = popen(command_line.c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace retain::testing
