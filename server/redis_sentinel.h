// The Redis tier behind Redis Sentinel (--redis-sentinel HOST:PORT,... --redis-sentinel-master
// NAME): the master's address is asked of the Sentinels and checked with ROLE, and asked again
// when the master cannot be reached or answers READONLY (it was demoted by a failover), so a
// failover costs the commands in flight at that moment, which fail as Unavailable and are redone
// as a down Redis's are (redis_tier.h). Replication is asynchronous: a write the old master took
// but had not passed on when it died is lost: Redis's own window, documented in server/README.md.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/redis_client.h"

namespace retain::server {

struct RedisSentinelConfig {
  std::vector<RedisAddress> sentinels;
  std::string master;      // the name the Sentinels monitor
  RedisAuth auth;          // for the master
  RedisAuth sentinel_auth;  // for the Sentinels themselves
};

class RedisSentinelClient : public RedisEndpoint {
 public:
  RedisSentinelClient(RedisSentinelConfig config, absl::Duration timeout, int max_connections);

  absl::StatusOr<std::vector<RedisReply>> Exchange(const std::vector<std::vector<std::string>>& commands) override;
  std::string address() const override;

 private:
  absl::StatusOr<std::shared_ptr<RedisClient>> Master();
  absl::StatusOr<std::shared_ptr<RedisClient>> Resolve();
  void Forget(const std::shared_ptr<RedisClient>& master);

  const RedisSentinelConfig config_;
  const absl::Duration timeout_;
  const int max_connections_;
  mutable std::mutex mu_;
  std::shared_ptr<RedisClient> master_;  // null until resolved, and after a failure
  std::string last_master_;              // for address() while unresolved
};

}  // namespace retain::server
