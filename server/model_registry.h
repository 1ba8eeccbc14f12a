// The models this server serves: each loaded once at start-up (weights, tokenizer, fingerprint)
// and owned by its own engine::Engine (slot pool, step thread, sessions). Fixed after Load, so
// lookups need no lock; the engines are thread-safe.
#pragma once

#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/serving.h"
#include "server/server_config.h"
#include "server/session_snapshot.h"

namespace retain::server {

class Metrics;
class HostStateTier;
class RedisTier;

struct ServedModel {
  std::string name;
  std::string dir;
  std::string backend;
  bool is_default = false;
  uint64_t fingerprint = 0;
  SnapshotModel snapshot;  // what an import must match
  std::unique_ptr<engine::SessionParking> host_parking;  // the host tier's part, behind `parking` with Redis
  std::unique_ptr<engine::SessionParking> parking;  // before the engine: outlives it; null = no tier
  std::unique_ptr<engine::Engine> engine;
};

class ModelRegistry {
 public:
  // Loads every model of `config` in order (the first is the default), each engine reporting to
  // `metrics`, which must outlive the registry, and parking idle sessions in `host` when given
  // (which must outlive it too). The error names the --model value.
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Load(const ServerConfig& config, Metrics* metrics,
                                                             HostStateTier* host = nullptr, RedisTier* redis = nullptr);

  // `name` "" = the default model. NotFound naming `field` and listing the served models.
  absl::StatusOr<ServedModel*> Find(absl::string_view name, absl::string_view field = "model") const;

  // The model whose engine holds session `id`, with the session's info. NotFound (naming
  // `field`, and saying when the session was evicted) when no engine has it.
  absl::StatusOr<std::pair<ServedModel*, engine::SessionInfo>> FindSession(const std::string& id,
                                                                           absl::string_view field = "session_id") const;

  // NotFound for an id no engine ever held, naming `field`: also what a session of another
  // tenant looks like (session_owners.h), so the two cannot be told apart.
  static absl::Status UnknownSession(absl::string_view id, absl::string_view field = "session_id");

  // The model a snapshot's fingerprint names; FailedPrecondition when none is served.
  absl::StatusOr<ServedModel*> FindByFingerprint(uint64_t fingerprint) const;

  const std::vector<std::unique_ptr<ServedModel>>& models() const { return models_; }

  // (model name, stats) for the metrics gauges.
  std::vector<std::pair<std::string, engine::EngineStats>> Stats() const;

 private:
  std::vector<std::unique_ptr<ServedModel>> models_;
};

}  // namespace retain::server
