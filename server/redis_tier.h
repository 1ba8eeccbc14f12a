// The Redis tier (--redis HOST:PORT, or --redis-cluster / --redis-sentinel): session states shared by every replica configured with the
// same Redis, so a session survives the loss of its replica and any replica can continue it.
//
// Layout. Session `id` is one Redis hash, retain:session:<id>, holding the export-format record
// (session_snapshot.h: model fingerprint, position, checksum) in field `state` and its metadata
// beside it: fp (the model's fingerprint, hex), model, owner (tenant), position, gen (a counter
// bumped by every write), created and last_used (Unix microseconds); a TTL, when configured, is
// the key's Redis expiry. A running request holds the lease retain:lease:<id> = this replica's
// id (SET NX PX, renewed while held, released by compare-and-delete), so two replicas never
// continue one session at once.
//
// Consistency. Write-through (the default): the state after a request's last delivered token is
// written before the request's end is delivered (Finished on gRPC, the last HTTP chunk), so a
// replica lost at any moment loses no delivered token. --redis-async delivers the end first and
// writes right after (the window: the writer's queue, retain_tier_pending_writes). Each replica
// remembers the gen of the copy it holds; when Redis has a newer one (another replica continued
// the session) the engine drops its copy and restores the shared one (SessionParking::Stale).
//
// Redis down: every command fails fast while the tier is marked down, and a monitor thread pings
// until it answers. Meanwhile sessions this replica holds keep being served (without a lease),
// others get UNAVAILABLE, writes that failed are remembered and written once Redis is back, and
// health (service "retain.tier.redis") and retain_tier_up{tier="redis"} say the tier is down.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "retain/engine/serving.h"
#include "server/redis_endpoint.h"
#include "server/session_snapshot.h"
#include "server/tier_flags.h"
#include "server/tier_stats.h"

namespace retain::server {

// The one Redis, the Sentinels' master or the Cluster that `config` names (redis_endpoint.h).
std::unique_ptr<RedisEndpoint> MakeRedisEndpoint(const RedisTierConfig& config, int max_connections);

class RedisTier {
 public:
  explicit RedisTier(RedisTierConfig config);
  ~RedisTier();  // writes what is queued (bounded by the timeout per write), then stops

  struct Meta {
    uint64_t fingerprint = 0;
    std::string model, owner;
    int64_t position = 0, gen = 0;
    absl::Time created, last_used;
  };
  // What Redis holds under `id`: nullopt when nothing. Unavailable when Redis cannot be asked.
  absl::StatusOr<std::optional<Meta>> ReadMeta(const std::string& id);
  absl::StatusOr<std::optional<std::pair<Meta, std::string>>> Read(const std::string& id);
  absl::Status Delete(const std::string& id);
  // Read ahead of a restore, off the engine's lock: kept for a few seconds, a few records at most.
  void Prefetch(const std::string& id);
  // As Read, but a record Prefetch read is used when Redis's gen says it is still the latest
  // (one small round trip instead of the whole state; counted in Stats().prefetched).
  absl::StatusOr<std::optional<std::pair<Meta, std::string>>> ReadLatest(const std::string& id);

  // SessionParking's lease calls (redis_tier.h's header comment says what they guarantee).
  absl::Status Claim(const std::string& id, bool held_here);
  void Unclaim(const std::string& id);
  bool Stale(const std::string& id);
  void NoteHeld(const std::string& id, int64_t gen);  // this replica now holds Redis's gen of `id`
  void ForgetHeld(const std::string& id);

  // Queues a write of `record()` (the export-format bytes, made on the writer thread) for `id`,
  // then the lease release when `claimed`, then `then`; in async mode `then` runs first. Writes of
  // one session run in order.
  struct Write {
    std::string id;
    uint64_t fingerprint = 0;
    std::string model;
    int64_t position = 0;
    std::function<std::string()> record;
    bool claimed = false;
    std::function<void()> then;
  };
  void Commit(Write w);
  // After a failed write, the session's current state is asked for again once Redis is back:
  // `exporter(id)` for the model with `fingerprint` (its engine's ExportSession).
  using Exporter = std::function<absl::StatusOr<std::string>(const std::string& id, int64_t* position)>;
  void SetExporter(uint64_t fingerprint, std::string model, Exporter exporter);
  void ClearExporters();  // before the engines they call go

  void SetOwner(const std::string& id, const std::string& tenant);
  // True unless Redis holds (or a queued write will bring it) the state this replica holds.
  bool NeedsWrite(const std::string& id) const;

  bool up() const { return up_.load(); }
  void SetHealthListener(std::function<void(bool up)> listener);
  void CountRestore(bool refused);
  void CountMiss();
  TierStats Stats() const;
  std::string address() const { return endpoint_->address(); }
  bool async() const { return config_.async; }

 private:
  absl::StatusOr<RedisReply> Run(const std::vector<std::string>& argv);
  absl::StatusOr<std::vector<RedisReply>> Pipeline(const std::vector<std::vector<std::string>>& commands);
  void MarkDown(const absl::Status& why);
  void TellHealth(bool up);
  absl::Status WriteRecord(const std::string& id, uint64_t fingerprint, const std::string& model, int64_t position,
                           const std::string& record);
  void WriterLoop(int shard);
  void MonitorLoop();
  void FlushDirty();

  const RedisTierConfig config_;
  std::unique_ptr<RedisEndpoint> endpoint_;
  std::atomic<bool> up_{true};
  std::atomic<bool> stop_{false};

  mutable std::mutex mu_;  // everything below
  std::unordered_map<std::string, int> claims_;      // id -> requests of this replica holding the lease
  std::unordered_map<std::string, int64_t> held_;    // id -> gen of the copy this replica holds
  std::unordered_map<std::string, std::string> owners_;
  std::unordered_map<std::string, uint64_t> dirty_;  // id -> fingerprint: a write failed
  struct ModelExporter {
    std::string model;
    Exporter exporter;
  };
  std::unordered_map<uint64_t, ModelExporter> exporters_;
  std::function<void(bool)> health_;
  mutable TierStats stats_;

  struct Shard {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Write> queue;
  };
  static constexpr int kWriters = 2;
  Shard shards_[kWriters];
  std::atomic<int> pending_{0};
  std::vector<std::thread> threads_;

  static constexpr size_t kMaxPrefetched = 4;  // records of up to a state each: bounded memory
  struct Prefetched {
    std::pair<Meta, std::string> record;
    absl::Time at;
  };
  std::unordered_map<std::string, Prefetched> prefetched_;  // under mu_
  std::mutex monitor_mu_;
  std::condition_variable monitor_cv_;
};

// One model's view of the Redis tier, with the host tier (when configured) in front of it: what
// its engine calls. Spills go to the host tier; Redis already holds every idle session's state
// (written through), so a session the host tier drops is still in Redis.
class RedisParking final : public engine::SessionParking {
 public:
  // `host` may be null (no host tier).
  RedisParking(RedisTier* tier, engine::SessionParking* host, SnapshotModel model, std::string model_name)
      : tier_(tier), host_(host), model_(std::move(model)), name_(std::move(model_name)) {}

  absl::Status Park(const std::string& id, const engine::SessionSnapshot& snapshot, absl::Time created,
                    absl::Time last_used) override;
  absl::StatusOr<engine::SessionSnapshot> Unpark(const std::string& id, absl::Time* created, std::string* tier) override;
  std::optional<Parked> Find(const std::string& id) override;
  std::vector<std::pair<std::string, Parked>> List() override;
  void Prefetch(const std::string& id) override;
  void Forget(const std::string& id) override;

  absl::Status Claim(const std::string& id, bool held_here) override;
  void Unclaim(const std::string& id) override { tier_->Unclaim(id); }
  bool Stale(const std::string& id) override { return tier_->Stale(id); }
  void ForgetLocal(const std::string& id) override;
  bool WritesThrough() const override { return true; }
  void Commit(const std::string& id, engine::SessionSnapshot snapshot, bool claimed, std::function<void()> then) override;

 private:
  RedisTier* const tier_;
  engine::SessionParking* const host_;
  const SnapshotModel model_;
  const std::string name_;
};

}  // namespace retain::server
