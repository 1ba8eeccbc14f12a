// The host-memory tier below the device pool (--host-state-budget-bytes): idle sessions the
// engines park when their pool is full, kept in the export format (session_snapshot.h: model
// fingerprint, position, checksum) so that a restore checks exactly what an import checks, and
// least recently parked dropped first when the budget is full (the session is then lost).
//
// One HostStateTier is shared by every model (a session id is unique across them); each engine
// gets its own ModelParking, which encodes and decodes for its model and sees only its model's
// records. Thread-safe. The engine calls ModelParking with its lock held, so nothing here blocks
// on anything but this tier's own mutex.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "retain/engine/serving.h"
#include "server/session_snapshot.h"
#include "server/tier_stats.h"

namespace retain::server {

class HostStateTier {
 public:
  explicit HostStateTier(size_t budget_bytes) : budget_(budget_bytes) {}

  struct Record {
    uint64_t fingerprint = 0;  // the model's, so each model's parking sees its own records only
    std::string bytes;         // EncodeSessionSnapshot
    int64_t position = 0;
    absl::Time created, last_used;
  };

  // Keeps `record` under `id` (replacing any), dropping the oldest records until it fits.
  // ResourceExhausted when the record alone exceeds the budget.
  absl::Status Put(const std::string& id, Record record);
  // Removes and returns the record of `id` if it is `fingerprint`'s; NotFound otherwise (a miss).
  absl::StatusOr<Record> Take(const std::string& id, uint64_t fingerprint);
  std::optional<Record> Peek(const std::string& id, uint64_t fingerprint, bool with_bytes = false) const;
  std::vector<std::pair<std::string, Record>> List(uint64_t fingerprint) const;  // without the bytes
  void Erase(const std::string& id);
  void CountRefused();

  TierStats Stats() const;
  size_t budget() const { return budget_; }

 private:
  struct Entry {
    Record record;
    std::list<std::string>::iterator order;
  };
  void EraseLocked(std::unordered_map<std::string, Entry>::iterator it);

  const size_t budget_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> order_;  // least recently parked first
  size_t bytes_ = 0;
  mutable TierStats stats_;  // misses count in const lookups too
};

// One model's view of the tier: what its engine calls (engine::SessionParking).
class ModelParking final : public engine::SessionParking {
 public:
  ModelParking(HostStateTier* tier, SnapshotModel model) : tier_(tier), model_(std::move(model)) {}

  absl::Status Park(const std::string& id, const engine::SessionSnapshot& snapshot, absl::Time created,
                    absl::Time last_used) override;
  // A damaged record is DATA_LOSS, one of another model or format FAILED_PRECONDITION; either way
  // it is dropped and never served.
  absl::StatusOr<engine::SessionSnapshot> Unpark(const std::string& id, absl::Time* created, std::string* tier) override;
  std::optional<Parked> Find(const std::string& id) override;
  std::vector<std::pair<std::string, Parked>> List() override;
  void Forget(const std::string& id) override { tier_->Erase(id); }

 private:
  HostStateTier* const tier_;
  const SnapshotModel model_;
};

}  // namespace retain::server
