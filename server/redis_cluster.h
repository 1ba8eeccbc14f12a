// The Redis tier on a Redis Cluster (--redis-cluster HOST:PORT,...: any of its nodes): each
// command goes to the master owning its key's hash slot, from a slot map read with CLUSTER SLOTS
// and read again when a node answers MOVED (the slot moved for good) or cannot be reached (a
// failover may have promoted a replica); ASK (a slot being migrated) is followed for that one
// command. The tier never needs two keys in one command, so a session's record and its lease may
// live on different nodes.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/redis_client.h"

namespace retain::server {

inline constexpr int kRedisClusterSlots = 16384;
// Redis Cluster's key -> slot: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384.
int RedisKeySlot(absl::string_view key);

class RedisClusterClient : public RedisEndpoint {
 public:
  RedisClusterClient(std::vector<RedisAddress> seeds, absl::Duration timeout, int max_connections, RedisAuth auth);

  absl::StatusOr<std::vector<RedisReply>> Exchange(const std::vector<std::vector<std::string>>& commands) override;
  std::string address() const override;
  absl::Status Ping() override;  // every master of the map, and the map itself

 private:
  struct Map {
    std::vector<std::shared_ptr<RedisClient>> masters;
    std::vector<int16_t> slot_master = std::vector<int16_t>(kRedisClusterSlots, -1);  // index into masters
  };
  std::shared_ptr<RedisClient> Node(const RedisAddress& at);
  absl::Status Refresh();
  absl::StatusOr<std::shared_ptr<const Map>> CurrentMap();
  // Follows one MOVED or ASK reply for command `argv`: the redone reply, or the old one.
  RedisReply Redirect(const std::vector<std::string>& argv, const RedisReply& reply, bool* moved);

  const std::vector<RedisAddress> seeds_;
  const absl::Duration timeout_;
  const int max_connections_;
  const RedisAuth auth_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<RedisClient>> nodes_;  // by address; as many as the cluster has
  std::shared_ptr<const Map> map_;                                       // null until read, and after a failure
};

}  // namespace retain::server
