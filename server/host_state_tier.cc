#include "server/host_state_tier.h"

#include "absl/strings/str_cat.h"

namespace retain::server {

inline constexpr char kHostTier[] = "host";

absl::Status HostStateTier::Put(const std::string& id, Record record) {
  const size_t need = record.bytes.size();
  std::lock_guard<std::mutex> l(mu_);
  if (need > budget_)
    return absl::ResourceExhaustedError(absl::StrCat("a parked session of ", need, " bytes exceeds --host-state-budget-bytes ",
                                                     budget_));
  if (auto it = entries_.find(id); it != entries_.end()) EraseLocked(it);
  while (bytes_ + need > budget_ && !order_.empty()) {
    EraseLocked(entries_.find(order_.front()));
    ++stats_.dropped;
  }
  bytes_ += need;
  Entry e{std::move(record), order_.insert(order_.end(), id)};
  entries_.emplace(id, std::move(e));
  ++stats_.spills;
  return absl::OkStatus();
}

absl::StatusOr<HostStateTier::Record> HostStateTier::Take(const std::string& id, uint64_t fingerprint) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.record.fingerprint != fingerprint) {
    ++stats_.misses;
    return absl::NotFoundError(absl::StrCat("session ", id, " is not in the host tier"));
  }
  Record r = it->second.record;  // a copy: EraseLocked counts the bytes it frees
  EraseLocked(it);
  ++stats_.restores;
  return r;
}

std::optional<HostStateTier::Record> HostStateTier::Peek(const std::string& id, uint64_t fingerprint,
                                                         bool with_bytes) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.record.fingerprint != fingerprint) {
    ++stats_.misses;
    return std::nullopt;
  }
  const Record& r = it->second.record;
  return Record{r.fingerprint, with_bytes ? r.bytes : std::string(), r.position, r.created, r.last_used};
}

std::vector<std::pair<std::string, HostStateTier::Record>> HostStateTier::List(uint64_t fingerprint) const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::pair<std::string, Record>> out;
  for (const auto& [id, e] : entries_)
    if (e.record.fingerprint == fingerprint)
      out.emplace_back(id, Record{fingerprint, std::string(), e.record.position, e.record.created, e.record.last_used});
  return out;
}

void HostStateTier::Erase(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto it = entries_.find(id); it != entries_.end()) EraseLocked(it);
}

void HostStateTier::CountRefused() {
  std::lock_guard<std::mutex> l(mu_);
  ++stats_.refused;
}

void HostStateTier::EraseLocked(std::unordered_map<std::string, Entry>::iterator it) {
  bytes_ -= it->second.record.bytes.size();
  order_.erase(it->second.order);
  entries_.erase(it);
}

TierStats HostStateTier::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  TierStats s = stats_;
  s.sessions = static_cast<int64_t>(entries_.size());
  s.bytes = static_cast<int64_t>(bytes_);
  return s;
}

absl::Status ModelParking::Park(const std::string& id, const engine::SessionSnapshot& snapshot, absl::Time created,
                                absl::Time last_used) {
  HostStateTier::Record r;
  r.fingerprint = model_.fingerprint;
  r.bytes = EncodeSessionSnapshot(model_, snapshot);
  r.position = snapshot.position;
  r.created = created;
  r.last_used = last_used;
  return tier_->Put(id, std::move(r));
}

absl::StatusOr<engine::SessionSnapshot> ModelParking::Unpark(const std::string& id, absl::Time* created,
                                                             std::string* tier) {
  *tier = kHostTier;
  absl::StatusOr<HostStateTier::Record> r = tier_->Take(id, model_.fingerprint);
  if (!r.ok()) return r.status();
  *created = r->created;
  absl::StatusOr<engine::SessionSnapshot> snap = DecodeSessionSnapshot(r->bytes, model_);
  if (snap.ok()) return snap;
  tier_->CountRefused();
  // The decoder speaks to a client that sent bad bytes (INVALID_ARGUMENT); here the bytes were
  // the server's own, so damage is data loss.
  const absl::StatusCode code = snap.status().code() == absl::StatusCode::kInvalidArgument
                                    ? absl::StatusCode::kDataLoss
                                    : snap.status().code();
  return absl::Status(code, absl::StrCat("its parked record failed its check: ", snap.status().message()));
}

std::optional<engine::SessionParking::Parked> ModelParking::Find(const std::string& id) {
  std::optional<HostStateTier::Record> r = tier_->Peek(id, model_.fingerprint);
  if (!r) return std::nullopt;
  return Parked{r->position, r->created, r->last_used, kHostTier};
}

std::vector<std::pair<std::string, engine::SessionParking::Parked>> ModelParking::List() {
  std::vector<std::pair<std::string, Parked>> out;
  for (auto& [id, r] : tier_->List(model_.fingerprint)) out.emplace_back(id, Parked{r.position, r.created, r.last_used, kHostTier});
  return out;
}

}  // namespace retain::server
