// The session state tier flags of retain-server (host_state_tier.h): where idle sessions go when
// the device pool is full. Kept apart from server_config.cc as history_flags.cc is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/redis_endpoint.h"

namespace CLI {
class App;
}

namespace retain::server {

struct RedisTierConfig {
  enum class Mode { kSingle, kCluster, kSentinel };
  Mode mode = Mode::kSingle;             // --redis, --redis-cluster or --redis-sentinel
  std::vector<RedisAddress> addresses;   // the one Redis, the cluster's seed nodes, or the Sentinels
  std::string sentinel_master;           // --redis-sentinel-master
  RedisAuth auth;                        // --redis-user, --redis-password-file
  RedisAuth sentinel_auth;               // --redis-sentinel-password-file
  bool async = false;                                   // --redis-async
  absl::Duration lease = absl::Seconds(30);             // --redis-lease-ms
  absl::Duration ttl = absl::ZeroDuration();            // --redis-ttl-seconds; 0 = records never expire
  absl::Duration timeout = absl::Milliseconds(500);     // --redis-timeout-ms, per connect and command
  int max_pending_writes = 1024;                        // past it new requests get RESOURCE_EXHAUSTED
  std::string replica;                                  // --replica-id: the lease's value
};

struct TierConfig {
  size_t host_state_budget_bytes = 0;  // 0 = no host tier: an evicted session is lost
  bool redis_enabled = false;          // --redis given
  RedisTierConfig redis;
  bool enabled() const { return host_state_budget_bytes > 0 || redis_enabled; }
};

struct RawTierFlags {
  std::string host_state_budget = "0";
  std::string redis;  // HOST:PORT
  std::string redis_cluster, redis_sentinel;  // HOST:PORT,...
  std::string redis_sentinel_master, redis_user, redis_password_file, redis_sentinel_password_file;
  bool redis_async = false;
  int64_t redis_lease_ms = 30000;
  int64_t redis_ttl_seconds = 0;
  int64_t redis_timeout_ms = 500;
  int redis_max_pending_writes = 1024;
  std::string replica_id;
};

void AddTierFlags(CLI::App& app, RawTierFlags* f);
// InvalidArgument naming the flag.
absl::Status BuildTierConfig(const RawTierFlags& f, TierConfig* config);

}  // namespace retain::server
