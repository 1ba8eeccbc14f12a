#include "server/tier_flags.h"

#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "CLI/CLI.hpp"
#include "server/server_config.h"

namespace retain::server {

void AddTierFlags(CLI::App& app, RawTierFlags* f) {
  app.add_option("--host-state-budget-bytes", f->host_state_budget,
                 "host memory for idle sessions spilled from the device pool when it is full (export format, "
                 "least recently used dropped first; shared by all models); 0 = none: a session evicted for room "
                 "is lost")
      ->type_name("BYTES")->capture_default_str();
  app.add_option("--redis", f->redis,
                 "HOST:PORT of a Redis shared by every replica: each session's state is written there at the end of "
                 "every request (before its end is sent), so any replica configured with it continues any session, "
                 "and a session lives on when its replica is lost (server/README.md, 'State tiers')")
      ->type_name("HOST:PORT");
  app.add_flag("--redis-async", f->redis_async,
               "send a request's end before its state is written to Redis (written right after: a replica lost in "
               "that window loses the request's tokens from Redis)");
  app.add_option("--redis-lease-ms", f->redis_lease_ms,
                 "how long a replica's lease on a running session lasts without renewal (renewed every third of it; "
                 "a replica that dies holds its sessions at most this long)")
      ->capture_default_str();
  app.add_option("--redis-ttl-seconds", f->redis_ttl_seconds,
                 "Redis expiry of a session's record, renewed by every write; 0 = never expires")
      ->capture_default_str();
  app.add_option("--redis-timeout-ms", f->redis_timeout_ms, "connect and command timeout for Redis")->capture_default_str();
  app.add_option("--redis-max-pending-writes", f->redis_max_pending_writes,
                 "writes to Redis queued at most; past it new requests on sessions get RESOURCE_EXHAUSTED")
      ->capture_default_str();
  app.add_option("--replica-id", f->replica_id,
                 "this replica's name in Redis leases (default: host name and process id)");
}

absl::Status BuildTierConfig(const RawTierFlags& f, TierConfig* c) {
  c->host_state_budget_bytes = 0;
  if (f.host_state_budget != "0") {
    auto budget = ParseByteSize(f.host_state_budget, "--host-state-budget-bytes");
    if (!budget.ok()) return budget.status();
    c->host_state_budget_bytes = *budget;
  }
  c->redis_enabled = !f.redis.empty();
  if (!c->redis_enabled) return absl::OkStatus();
  auto bad = [](absl::string_view flag, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
  };
  const size_t colon = f.redis.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(f.redis.substr(colon + 1), &port) || port < 1 ||
      port > 65535)
    return bad("--redis", absl::StrCat("\"", f.redis, "\" is not HOST:PORT"));
  RedisTierConfig& r = c->redis;
  r.host = f.redis.substr(0, colon);
  r.port = port;
  r.async = f.redis_async;
  if (f.redis_lease_ms < 100 || f.redis_lease_ms > 3600000) return bad("--redis-lease-ms", "must be in [100, 3600000]");
  r.lease = absl::Milliseconds(f.redis_lease_ms);
  if (f.redis_ttl_seconds < 0) return bad("--redis-ttl-seconds", "must be >= 0 (0 = never expires)");
  r.ttl = absl::Seconds(f.redis_ttl_seconds);
  if (f.redis_timeout_ms < 1 || f.redis_timeout_ms > 60000) return bad("--redis-timeout-ms", "must be in [1, 60000]");
  r.timeout = absl::Milliseconds(f.redis_timeout_ms);
  if (f.redis_max_pending_writes < 1 || f.redis_max_pending_writes > 1 << 20)
    return bad("--redis-max-pending-writes", "must be in [1, 1048576]");
  r.max_pending_writes = f.redis_max_pending_writes;
  r.replica = f.replica_id;
  if (r.replica.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    r.replica = absl::StrCat(host, "-", getpid());
  }
  return absl::OkStatus();
}

}  // namespace retain::server
