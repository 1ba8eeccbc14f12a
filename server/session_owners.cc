#include "server/session_owners.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "server/model_registry.h"
#include "server/redis_tier.h"

namespace retain::server {

SessionOwners::SessionOwners(const ModelRegistry* registry) : registry_(registry) {
  for (const auto& m : registry_->models()) total_slots_ += static_cast<size_t>(m->engine->Stats().slots_total);
}

absl::StatusOr<std::pair<ServedModel*, engine::SessionInfo>> SessionOwners::Find(const Caller& caller,
                                                                                 const std::string& id,
                                                                                 absl::string_view field) const {
  bool owned = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = live_.find(id); it != live_.end()) {
      owned = it->second.tenant == caller.tenant;
    } else if (auto g = gone_.find(id); g != gone_.end()) {
      owned = g->second == caller.tenant;
    }
  }
  if (!owned) {
    // Redis unreachable: the session may well exist there, so this is no NOT_FOUND (a client
    // told NOT_FOUND would start over).
    absl::StatusOr<bool> adopted = AdoptShared(caller, id);
    if (!adopted.ok()) return adopted.status();
    owned = *adopted;
  }
  if (!owned) return ModelRegistry::UnknownSession(id, field);
  return registry_->FindSession(id, field);
}

absl::StatusOr<bool> SessionOwners::AdoptShared(const Caller& caller, const std::string& id) const {
  if (shared_ == nullptr) return false;
  auto meta = shared_->ReadMeta(id);
  if (!meta.ok() && meta.status().code() == absl::StatusCode::kUnavailable)
    return absl::UnavailableError(absl::StrCat("session ", id, " is not on this replica and the redis tier at ",
                                               shared_->address(), " is unreachable; retry"));
  if (!meta.ok() || !meta->has_value() || (*meta)->owner != caller.tenant) return false;
  auto model = registry_->FindByFingerprint((*meta)->fingerprint);
  if (!model.ok()) return false;
  std::lock_guard<std::mutex> l(mu_);
  live_[id] = Entry{caller.tenant, *model};
  return true;
}

bool SessionOwners::Owns(const Caller& caller, const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = live_.find(id);
  return it != live_.end() && it->second.tenant == caller.tenant;
}

void SessionOwners::ForgetLocked(const std::string& id) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  if (gone_order_.size() >= kGoneMemory) {
    gone_.erase(gone_order_.front());
    gone_order_.pop_front();
  }
  gone_[id] = it->second.tenant;
  gone_order_.push_back(id);
  live_.erase(it);
}

std::pair<int64_t, int64_t> SessionOwners::Prune(const std::string& tenant) {
  std::vector<std::pair<std::string, const ServedModel*>> mine;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [id, e] : live_)
      if (e.tenant == tenant) mine.emplace_back(id, e.model);
  }
  int64_t count = 0, bytes = 0;
  std::vector<std::string> gone;
  for (const auto& [id, model] : mine) {
    auto info = model->engine->GetSession(id);  // does not count as a use: the LRU order stays
    if (info.ok()) {
      ++count;
      bytes += static_cast<int64_t>(info->state_bytes);
    } else if (info.status().code() == absl::StatusCode::kNotFound) {
      gone.push_back(id);
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  for (const std::string& id : gone) ForgetLocked(id);
  return {count, bytes};
}

absl::StatusOr<engine::SessionInfo> SessionOwners::Add(const Caller& caller, const ServedModel& model,
                                                       const std::function<absl::StatusOr<engine::SessionInfo>()>& make) {
  std::lock_guard<std::mutex> add(add_mu_);
  const TenantLimits& lim = caller.limits;
  size_t live = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    live = live_.size();
  }
  // Without limits the map is pruned only once it holds more ids than the engines have slots,
  // which bounds it without a walk over every session on each create.
  if (lim.sessions > 0 || lim.state_bytes > 0 || live > total_slots_) {
    const auto [count, bytes] = Prune(caller.tenant);
    if (lim.sessions > 0 && count >= lim.sessions)
      return absl::ResourceExhaustedError(absl::StrCat(caller.Describe(), " holds ", count,
                                                       " live sessions, its limit of live sessions "
                                                       "(sessions=, --tenant-max-sessions)"));
    const int64_t need = static_cast<int64_t>(model.snapshot.state_bytes);
    if (lim.state_bytes > 0 && bytes + need > lim.state_bytes)
      return absl::ResourceExhaustedError(absl::StrCat(
          caller.Describe(), "'s sessions hold ", bytes, " state bytes and a session of model ", model.name, " needs ",
          need, " more, over its limit of ", lim.state_bytes, " state bytes (state-bytes=, --tenant-max-state-bytes)"));
  }
  auto info = make();
  if (!info.ok()) return info.status();
  if (shared_ != nullptr) shared_->SetOwner(info->id, caller.tenant);
  std::lock_guard<std::mutex> l(mu_);
  live_[info->id] = Entry{caller.tenant, &model};
  return info;
}

void SessionOwners::Remove(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  live_.erase(id);
}

std::vector<std::tuple<std::string, std::string, int>> SessionOwners::Counts() const {
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const auto& m : registry_->models()) {
    const std::vector<engine::SessionInfo> sessions = m->engine->ListSessions();
    std::lock_guard<std::mutex> l(mu_);
    for (const engine::SessionInfo& s : sessions)
      if (auto it = live_.find(s.id); it != live_.end()) ++counts[{m->name, it->second.tenant}];
  }
  std::vector<std::tuple<std::string, std::string, int>> out;
  for (const auto& [key, n] : counts) out.emplace_back(key.first, key.second, n);
  return out;
}

}  // namespace retain::server
