// What every call needs, whichever protocol it came by (gRPC: service_calls.h; HTTP: http/):
// the registry, metrics, tenants, session and request owners. No gRPC here, so the HTTP
// front-end can share it without the heavy gRPC headers.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>

#include "absl/time/time.h"

namespace retain::server {

class ModelRegistry;
class Metrics;
class SessionOwners;
class RequestOwners;
class Tenants;
struct Caller;
struct ServedModel;

// Counts the streaming and prefill reactors alive, so a drain can wait for their last messages
// and then shut the gRPC server down at once (grpc::Server::Shutdown otherwise waits its whole
// deadline while any client keeps an idle connection open).
class CallTracker {
 public:
  void Enter() {
    std::lock_guard<std::mutex> l(mu_);
    ++active_;
  }
  void Exit() {
    std::lock_guard<std::mutex> l(mu_);
    if (--active_ == 0) cv_.notify_all();
  }
  // True when no tracked call is alive, waiting at most `timeout`.
  bool WaitIdle(absl::Duration timeout) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, absl::ToChronoNanoseconds(timeout), [&] { return active_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
};

// What every call needs; all outlive the gRPC server.
struct ServiceDeps {
  ModelRegistry* registry = nullptr;
  Metrics* metrics = nullptr;
  CallTracker* calls = nullptr;
  const Tenants* tenants = nullptr;
  SessionOwners* owners = nullptr;
  RequestOwners* requests = nullptr;  // running Generate requests, for StopGeneration
  bool prefix_cache_shared = false;   // --prefix-cache-shared
};

// The prefix-cache namespace of a caller's requests: its tenant, unless the operator lets all
// tenants share cached prefixes.
inline std::string CacheNamespace(const ServiceDeps& deps, const std::string& tenant) {
  return deps.prefix_cache_shared ? std::string() : tenant;
}

}  // namespace retain::server
