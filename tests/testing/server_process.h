// A retain-server child process for tests: started with posix_spawn on 127.0.0.1 with port 0 for
// gRPC and /metrics, its stderr captured (a reader thread keeps the pipe drained), the bound
// ports parsed from its start-up line ("listening on HOST:PORT (plaintext); metrics on
// http://HOST:PORT/metrics"), so tests never collide on a port. No gRPC in here: any test may
// use it. The default binary is RETAIN_SERVER_BIN (set for this file by tests/CMakeLists.txt
// when the server is built); a test using it must depend on the retain-server target.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace retain::testing {

class ServerProcess {
 public:
  // Runs retain-server with `args`, adding --listen 127.0.0.1:0 and --metrics-listen 127.0.0.1:0
  // unless `args` set them, and waits up to `timeout` for the start-up line. The error carries
  // the child's stderr so far.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      std::vector<std::string> args, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // The same with another binary (args passed as given).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartBinary(
      const std::string& binary, const std::vector<std::string>& args,
      std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Kills the process if it still runs (SIGKILL) and reaps it.
  ~ServerProcess();

  const std::string& address() const { return address_; }  // "127.0.0.1:PORT", the bound port
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }       // 0 when metrics are off
  std::string metrics_address() const { return "127.0.0.1:" + std::to_string(metrics_port_); }
  pid_t pid() const { return pid_; }

  bool Signal(int signo) const;
  // The exit status once the process exits within `timeout`; -1 on timeout, 128 + signal when a
  // signal ended it.
  int Wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Everything written to stderr so far.
  std::string Stderr() const;
  // Waits until stderr contains `text` (true) or `timeout` passes (false).
  bool WaitForStderr(const std::string& text, std::chrono::milliseconds timeout) const;

 private:
  ServerProcess() = default;
  void ReadLoop(int fd);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_status_ = -1;
  std::string address_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::string stderr_;
  bool eof_ = false;
};

}  // namespace retain::testing
