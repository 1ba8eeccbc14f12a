#include "server/redis_sentinel.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace retain::server {

RedisSentinelClient::RedisSentinelClient(RedisSentinelConfig config, absl::Duration timeout, int max_connections)
    : config_(std::move(config)), timeout_(timeout), max_connections_(max_connections) {}

std::string RedisSentinelClient::address() const {
  std::lock_guard<std::mutex> l(mu_);
  return absl::StrCat("sentinel master ", config_.master, last_master_.empty() ? "" : " (", last_master_,
                      last_master_.empty() ? "" : ")");
}

absl::StatusOr<std::shared_ptr<RedisClient>> RedisSentinelClient::Master() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (master_ != nullptr) return master_;
  }
  return Resolve();
}

void RedisSentinelClient::Forget(const std::shared_ptr<RedisClient>& master) {
  std::lock_guard<std::mutex> l(mu_);
  if (master_ == master) master_.reset();
}

absl::StatusOr<std::shared_ptr<RedisClient>> RedisSentinelClient::Resolve() {
  std::string why;
  for (const RedisAddress& s : config_.sentinels) {
    RedisClient sentinel(s, timeout_, 1, config_.sentinel_auth);
    absl::StatusOr<RedisReply> r = sentinel.Run({"SENTINEL", "get-master-addr-by-name", config_.master});
    if (!r.ok()) {
      absl::StrAppend(&why, "; ", r.status().message());
      continue;
    }
    int port = 0;
    if (r->elements.size() != 2 || !absl::SimpleAtoi(r->elements[1].str, &port)) {
      absl::StrAppend(&why, "; sentinel ", s.str(), " does not know master \"", config_.master, "\"");
      continue;
    }
    auto master = std::make_shared<RedisClient>(RedisAddress{r->elements[0].str, port}, timeout_, max_connections_,
                                                config_.auth);
    // A Sentinel that has not yet seen a failover names the old master: believe only a master.
    absl::StatusOr<RedisReply> role = master->Run({"ROLE"});
    if (!role.ok() || role->elements.empty() || role->elements[0].str != "master") {
      absl::StrAppend(&why, "; ", master->address(), " (named by sentinel ", s.str(), ") is ",
                      role.ok() ? "not a master" : role.status().message());
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    master_ = master;
    last_master_ = master->address();
    return master;
  }
  return absl::UnavailableError(absl::StrCat("no sentinel names a reachable master \"", config_.master, "\"", why));
}

absl::StatusOr<std::vector<RedisReply>> RedisSentinelClient::Exchange(
    const std::vector<std::vector<std::string>>& commands) {
  // Twice at most: once on the master we knew, once on the one the Sentinels name now.
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::shared_ptr<RedisClient>> master = Master();
    if (!master.ok()) return master.status();
    absl::StatusOr<std::vector<RedisReply>> r = (*master)->Exchange(commands);
    bool demoted = false;
    if (r.ok())
      for (const RedisReply& reply : *r) demoted = demoted || (reply.error() && absl::StartsWith(reply.str, "READONLY"));
    if (r.ok() && !demoted) return r;
    Forget(*master);
    // READONLY: nothing was written, so the commands can go again. A lost connection may have
    // applied some: they are left to the tier's own redo (every command of it is idempotent).
    if (attempt == 1 || !demoted) return r;
  }
}

}  // namespace retain::server
