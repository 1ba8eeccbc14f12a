// Runs a shell command line as a user would, for tests of the command-line tools.
#pragma once

#include <string>

namespace retain::testing {

struct CommandResult {
  int exit_code;    // -1 when the command did not exit normally
  std::string out;  // its standard output (redirect stderr in the command line to see it too)
};

CommandResult RunCommand(const std::string& command_line);

}  // namespace retain::testing
