// A small blocking Redis client over hiredis (Debian's libhiredis): a bounded pool of
// connections to one Redis, each command on one of them, with connect and command timeouts so a
// Redis that is down costs a caller at most the timeout. hiredis contexts are not thread-safe,
// hence the pool. Transport failures are Unavailable, naming the address.
//
// No TLS: Debian 12's hiredis is 0.14.1, older than hiredis_ssl (1.0); server/README.md says how
// to reach a TLS-only Redis through a local TLS proxy.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "server/redis_endpoint.h"

struct redisContext;

namespace retain::server {

class RedisClient : public RedisEndpoint {
 public:
  RedisClient(RedisAddress at, absl::Duration timeout, int max_connections = 8, RedisAuth auth = {});
  ~RedisClient() override;
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  absl::StatusOr<std::vector<RedisReply>> Exchange(const std::vector<std::vector<std::string>>& commands) override;
  std::string address() const override { return at_.str(); }
  const RedisAddress& at() const { return at_; }

 private:
  absl::StatusOr<redisContext*> Acquire();
  absl::StatusOr<redisContext*> Connect();
  void Return(redisContext* c, bool healthy);

  const RedisAddress at_;
  const absl::Duration timeout_;
  const int max_connections_;
  const RedisAuth auth_;
  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<redisContext*> idle_;
  int open_ = 0;
};

}  // namespace retain::server
