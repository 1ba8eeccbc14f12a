#include "server/log.h"

#include <unistd.h>

#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace retain::server {

void LogLine(absl::string_view line) {
  std::string out = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  out += " retain-server: ";
  out.append(line.data(), line.size());
  out += '\n';
  // One write(2) per line; a short write (stderr a pipe near full) continues where it stopped.
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;  // nowhere to log; never fail a request over it
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace retain::server
