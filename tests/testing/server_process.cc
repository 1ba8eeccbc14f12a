#include "tests/testing/server_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <regex>

extern char** environ;

namespace retain::testing {

#ifndef RETAIN_SERVER_BIN
#define RETAIN_SERVER_BIN ""
#endif

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(std::vector<std::string> args,
                                                                    std::chrono::milliseconds timeout) {
  const std::string binary = RETAIN_SERVER_BIN;
  if (binary.empty()) return absl::FailedPreconditionError("this build has no retain-server (RETAIN_SERVER_BIN)");
  auto has = [&](const char* flag) { return std::find(args.begin(), args.end(), flag) != args.end(); };
  if (!has("--listen")) args.insert(args.begin(), {"--listen", "127.0.0.1:0"});
  if (!has("--metrics-listen")) args.insert(args.begin(), {"--metrics-listen", "127.0.0.1:0"});
  return StartBinary(binary, args, timeout);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartBinary(const std::string& binary,
                                                                          const std::vector<std::string>& args,
                                                                          std::chrono::milliseconds timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)  // only the dup2'd stderr reaches the child
    return absl::InternalError(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  std::vector<std::string> argv_storage;
  argv_storage.push_back(binary);
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::unique_ptr<ServerProcess> p(new ServerProcess());
  const int rc = posix_spawn(&p->pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    p->reaped_ = true;
    return absl::InternalError("posix_spawn " + binary + ": " + std::strerror(rc));
  }
  p->reader_ = std::thread([raw = p.get(), fd = fds[0]] { raw->ReadLoop(fd); });

  // "listening on 127.0.0.1:43121 (plaintext); metrics on http://127.0.0.1:40331/metrics; ..."
  static const std::regex kListen(R"(listening on (\S+):(\d+) \()");
  static const std::regex kMetrics(R"(metrics on http://\S+:(\d+)/metrics)");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> l(p->mu_);
  while (true) {
    const size_t at = p->stderr_.find("listening on ");
    const size_t eol = at == std::string::npos ? std::string::npos : p->stderr_.find('\n', at);
    if (eol != std::string::npos) {
      const std::string line = p->stderr_.substr(at, eol - at);
      std::smatch m;
      if (!std::regex_search(line, m, kListen)) return absl::InternalError("unparsable start-up line: " + line);
      p->port_ = std::stoi(m[2].str());
      p->address_ = m[1].str() + ":" + m[2].str();
      if (std::regex_search(line, m, kMetrics)) p->metrics_port_ = std::stoi(m[1].str());
      return p;
    }
    if (p->eof_ || p->cv_.wait_until(l, deadline) == std::cv_status::timeout) {
      return absl::UnavailableError(
          (p->eof_ ? "the server exited before listening; stderr:\n" : "no start-up line in time; stderr:\n") +
          p->stderr_);
    }
  }
}

void ServerProcess::ReadLoop(int fd) {
  char buf[4096];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    std::lock_guard<std::mutex> l(mu_);
    if (n <= 0) {
      eof_ = true;
      cv_.notify_all();
      break;
    }
    stderr_.append(buf, static_cast<size_t>(n));
    cv_.notify_all();
  }
  close(fd);
}

ServerProcess::~ServerProcess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(10));
  }
  if (reader_.joinable()) reader_.join();
}

bool ServerProcess::Signal(int signo) const { return !reaped_ && kill(pid_, signo) == 0; }

int ServerProcess::Wait(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_status_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_status_;
    }
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string ServerProcess::Stderr() const {
  std::lock_guard<std::mutex> l(mu_);
  return stderr_;
}

bool ServerProcess::WaitForStderr(const std::string& text, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [&] { return stderr_.find(text) != std::string::npos || eof_; }) &&
         stderr_.find(text) != std::string::npos;
}

}  // namespace retain::testing
