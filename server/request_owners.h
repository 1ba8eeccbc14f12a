// Which engine runs each streaming Generate request, and for which tenant, so StopGeneration can
// end one gracefully. Request ids are the engine's ("req-7") and guessable: the tenant check is
// what keeps one tenant from stopping another's request (NOT_FOUND, as for a finished one).
#pragma once

#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "retain/engine/serving.h"

namespace retain::server {

class RequestOwners {
 public:
  void Add(const std::string& request_id, engine::Engine* engine, const std::string& tenant) {
    std::lock_guard<std::mutex> l(mu_);
    running_[request_id] = Owner{engine, tenant};
  }
  void Remove(const std::string& request_id) {
    std::lock_guard<std::mutex> l(mu_);
    running_.erase(request_id);
  }
  // The request's engine when it is running for `tenant`; else nullptr.
  engine::Engine* Find(const std::string& request_id, const std::string& tenant) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = running_.find(request_id);
    return it != running_.end() && it->second.tenant == tenant ? it->second.engine : nullptr;
  }

 private:
  struct Owner {
    engine::Engine* engine;
    std::string tenant;
  };
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Owner> running_;
};

}  // namespace retain::server
