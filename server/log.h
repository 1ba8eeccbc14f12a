// The server's log: one line per event on stderr, each written with a single write so lines from
// the step threads and the gRPC threads never interleave. No levels, no buffering: the server
// logs its start-up, one line per request and its drain, nothing on the hot path.
#pragma once

#include "absl/strings/string_view.h"

namespace retain::server {

// Writes "<UTC time> retain-server: <line>\n" to stderr. Thread-safe.
void LogLine(absl::string_view line);

}  // namespace retain::server
