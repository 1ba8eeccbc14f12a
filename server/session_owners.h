// Which tenant owns each session, kept beside the engines (which know nothing of tenants): a
// session belongs to the tenant whose call created, forked or imported it. To every other tenant
// it does not exist: Find answers exactly what an id that never existed gets, and Owns is false,
// so ListSessions shows a tenant its own sessions only. Also where the per-tenant session limits
// are checked, since counting a tenant's sessions needs this map.
//
// The engines evict sessions on their own (LRU, TTL); an id they no longer hold moves to a
// bounded memory of gone ids, so its owner still hears that it was evicted and nobody else does.
// Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "retain/engine/serving.h"
#include "server/tenants.h"

namespace retain::server {

class ModelRegistry;
class RedisTier;
struct ServedModel;

class SessionOwners {
 public:
  explicit SessionOwners(const ModelRegistry* registry);

  // Session `id` as `caller` sees it: the registry's answer when the caller owns it, else NotFound
  // with the never-existed message (naming `field`).
  absl::StatusOr<std::pair<ServedModel*, engine::SessionInfo>> Find(const Caller& caller, const std::string& id,
                                                                    absl::string_view field = "session_id") const;

  // Runs `make` (the engine call that creates a session on `model`) when the caller's session and
  // state-bytes limits leave room for one more of `model`'s sessions, and records what it made as
  // the caller's. ResourceExhausted naming the limit otherwise. Calls of Add are serialised, so
  // two of them cannot both take a tenant's last place.
  absl::StatusOr<engine::SessionInfo> Add(const Caller& caller, const ServedModel& model,
                                          const std::function<absl::StatusOr<engine::SessionInfo>()>& make);

  // After a successful delete (or a half-made session's removal).
  void Remove(const std::string& id);

  bool Owns(const Caller& caller, const std::string& id) const;

  // With a Redis tier, a session another replica made is its owner's here too: an id this map
  // does not know is looked up in Redis (its record names owner and model). Before any call.
  void SetSharedTier(RedisTier* tier) { shared_ = tier; }

  // (model, tenant, live sessions) for the retain_sessions gauge; only pairs with sessions.
  std::vector<std::tuple<std::string, std::string, int>> Counts() const;

 private:
  struct Entry {
    std::string tenant;
    const ServedModel* model = nullptr;
  };
  // Moves the tenant's sessions the engines no longer hold to gone_; the live ones' count and
  // state bytes. With add_mu_ held.
  std::pair<int64_t, int64_t> Prune(const std::string& tenant);
  void ForgetLocked(const std::string& id);  // with mu_ held
  // Unavailable when the shared tier cannot be asked.
  absl::StatusOr<bool> AdoptShared(const Caller& caller, const std::string& id) const;

  static constexpr size_t kGoneMemory = 65536;  // as many as the engine remembers evicted ids

  const ModelRegistry* const registry_;
  RedisTier* shared_ = nullptr;
  size_t total_slots_ = 0;
  std::mutex add_mu_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, Entry> live_;  // AdoptShared adds to it in const lookups
  std::unordered_map<std::string, std::string> gone_;  // id -> tenant
  std::deque<std::string> gone_order_;
};

}  // namespace retain::server
