// A small blocking Redis client over hiredis (Debian's libhiredis): a bounded pool of
// connections, each command on one of them, with connect and command timeouts so a Redis that
// is down costs a caller at most the timeout. hiredis contexts are not thread-safe, hence the
// pool. Errors are Unavailable (cannot reach or talk to Redis) or Internal (Redis answered an
// error reply); the message names the address.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct redisContext;

namespace retain::server {

// One reply, copied out of hiredis's.
struct RedisReply {
  enum class Type { kNil, kString, kInteger, kArray, kStatus };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus
  int64_t integer = 0;
  std::vector<RedisReply> elements;
  bool nil() const { return type == Type::kNil; }
};

class RedisClient {
 public:
  RedisClient(std::string host, int port, absl::Duration timeout, int max_connections = 8);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  absl::StatusOr<RedisReply> Run(const std::vector<std::string>& argv);
  // The commands sent in one round trip, their replies in order (the first error fails all).
  absl::StatusOr<std::vector<RedisReply>> Pipeline(const std::vector<std::vector<std::string>>& commands);

  std::string address() const { return host_ + ":" + std::to_string(port_); }

 private:
  absl::StatusOr<redisContext*> Acquire();
  void Return(redisContext* c, bool healthy);

  const std::string host_;
  const int port_;
  const absl::Duration timeout_;
  const int max_connections_;
  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<redisContext*> idle_;
  int open_ = 0;
};

}  // namespace retain::server
