// Where the Redis tier's commands go: one Redis (RedisClient), the master a set of Sentinels
// names (RedisSentinelClient), or the node of a Redis Cluster that owns each key
// (RedisClusterClient). Each command of the tier touches one key, so a pipeline can be split
// between nodes freely; none needs multi-key atomicity.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace retain::server {

// One reply, copied out of hiredis's.
struct RedisReply {
  enum class Type { kNil, kString, kInteger, kArray, kStatus, kError };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  int64_t integer = 0;
  std::vector<RedisReply> elements;
  bool nil() const { return type == Type::kNil; }
  bool error() const { return type == Type::kError; }
};

struct RedisAddress {
  std::string host;
  int port = 6379;
  std::string str() const;
};
// "HOST:PORT[,HOST:PORT...]"; InvalidArgument naming `flag`.
absl::StatusOr<std::vector<RedisAddress>> ParseRedisAddresses(absl::string_view list, absl::string_view flag);

// AUTH sent on every new connection (Redis 6 ACL user when `user` is set); empty password = none.
struct RedisAuth {
  std::string user, password;
};

class RedisEndpoint {
 public:
  virtual ~RedisEndpoint() = default;
  // The replies in order, error replies included; Unavailable when Redis cannot be reached.
  virtual absl::StatusOr<std::vector<RedisReply>> Exchange(const std::vector<std::vector<std::string>>& commands) = 0;
  virtual std::string address() const = 0;
  // OK when every node holding data answers.
  virtual absl::Status Ping();

  // Exchange, with an error reply failing the whole call: Unavailable for the replies that mean
  // Redis cannot serve now (failover, cluster down, loading), Internal for the others.
  absl::StatusOr<std::vector<RedisReply>> Pipeline(const std::vector<std::vector<std::string>>& commands);
  absl::StatusOr<RedisReply> Run(const std::vector<std::string>& argv);
};

// The error replies that say "not here, not now" rather than "wrong command".
bool TransientRedisError(absl::string_view error);

}  // namespace retain::server
