#include "server/tier_flags.h"

#include <unistd.h>

#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "CLI/CLI.hpp"
#include "server/server_config.h"

namespace retain::server {

namespace {

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (absl::EndsWith(s, "\n")) s.pop_back();
  if (absl::EndsWith(s, "\r")) s.pop_back();
  if (s.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is empty"));
  if (s.size() > 4096) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is longer than 4096 bytes"));
  return s;
}

}  // namespace

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
  app.add_option("--redis-cluster", f->redis_cluster,
                 "instead of --redis: some nodes of a Redis Cluster (any; the rest are found from them); each "
                 "session's keys go to the master owning their slot")
      ->type_name("HOST:PORT,...");
  app.add_option("--redis-sentinel", f->redis_sentinel,
                 "instead of --redis: Redis Sentinels to ask for the master named by --redis-sentinel-master, asked "
                 "again after a failover")
      ->type_name("HOST:PORT,...");
  app.add_option("--redis-sentinel-master", f->redis_sentinel_master, "the master name the Sentinels monitor")
      ->type_name("NAME");
  app.add_option("--redis-user", f->redis_user, "Redis ACL user for AUTH (with --redis-password-file)");
  app.add_option("--redis-password-file", f->redis_password_file,
                 "file holding the Redis password sent with AUTH on every connection (a mounted secret; one "
                 "trailing newline is ignored)")
      ->type_name("PATH");
  app.add_option("--redis-sentinel-password-file", f->redis_sentinel_password_file,
                 "file holding the Sentinels' own password (their requirepass), when they have one")
      ->type_name("PATH");
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
  const int given = !f.redis.empty() + !f.redis_cluster.empty() + !f.redis_sentinel.empty();
  c->redis_enabled = given > 0;
  if (!c->redis_enabled) return absl::OkStatus();
  auto bad = [](absl::string_view flag, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
  };
  if (given > 1) return bad("--redis", "give one of --redis, --redis-cluster and --redis-sentinel");
  RedisTierConfig& r = c->redis;
  absl::StatusOr<std::vector<RedisAddress>> addresses;
  if (!f.redis.empty()) {
    r.mode = RedisTierConfig::Mode::kSingle;
    addresses = ParseRedisAddresses(f.redis, "--redis");
    if (addresses.ok() && addresses->size() != 1)
      return bad("--redis", "takes one HOST:PORT (--redis-cluster and --redis-sentinel take several)");
  } else if (!f.redis_cluster.empty()) {
    r.mode = RedisTierConfig::Mode::kCluster;
    addresses = ParseRedisAddresses(f.redis_cluster, "--redis-cluster");
  } else {
    r.mode = RedisTierConfig::Mode::kSentinel;
    addresses = ParseRedisAddresses(f.redis_sentinel, "--redis-sentinel");
    if (f.redis_sentinel_master.empty()) return bad("--redis-sentinel-master", "is required with --redis-sentinel");
    r.sentinel_master = f.redis_sentinel_master;
  }
  if (!addresses.ok()) return addresses.status();
  r.addresses = *std::move(addresses);
  if (!f.redis_sentinel_master.empty() && r.mode != RedisTierConfig::Mode::kSentinel)
    return bad("--redis-sentinel-master", "is only for --redis-sentinel");
  r.auth.user = f.redis_user;
  if (!f.redis_password_file.empty()) {
    auto password = ReadSecretFile(f.redis_password_file, "--redis-password-file");
    if (!password.ok()) return password.status();
    r.auth.password = *std::move(password);
  } else if (!f.redis_user.empty()) {
    return bad("--redis-user", "needs --redis-password-file");
  }
  if (!f.redis_sentinel_password_file.empty()) {
    if (r.mode != RedisTierConfig::Mode::kSentinel) return bad("--redis-sentinel-password-file", "is only for --redis-sentinel");
    auto password = ReadSecretFile(f.redis_sentinel_password_file, "--redis-sentinel-password-file");
    if (!password.ok()) return password.status();
    r.sentinel_auth.password = *std::move(password);
  }
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
