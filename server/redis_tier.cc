#include "server/redis_tier.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/redis_client.h"
#include "server/redis_cluster.h"
#include "server/redis_sentinel.h"

namespace retain::server {
namespace {

inline constexpr char kRedisTier[] = "redis";

// Compare-and-delete and compare-and-extend: a replica touches only a lease it holds.
inline constexpr char kRelease[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
inline constexpr char kRenew[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

std::string SessionKey(const std::string& id) { return absl::StrCat("retain:session:", id); }
std::string LeaseKey(const std::string& id) { return absl::StrCat("retain:lease:", id); }
std::string Micros(absl::Time t) { return std::to_string(absl::ToUnixMicros(t)); }

int64_t Int(const RedisReply& r) {
  int64_t v = 0;
  return absl::SimpleAtoi(r.str, &v) ? v : 0;
}

// HMGET's replies for kMetaFields, in that order.
const std::vector<std::string> kMetaFields = {"fp", "model", "owner", "position", "gen", "created", "last_used"};

// HMGET of a session's metadata, and of its record after it when `with_state`.
std::vector<std::string> MetaQuery(const std::string& key, bool with_state) {
  std::vector<std::string> argv = {"HMGET", key};
  argv.insert(argv.end(), kMetaFields.begin(), kMetaFields.end());
  if (with_state) argv.push_back("state");
  return argv;
}

RedisTier::Meta ParseMeta(const std::vector<RedisReply>& f) {
  RedisTier::Meta m;
  uint64_t fp = 0;
  if (absl::SimpleHexAtoi(f[0].str, &fp)) m.fingerprint = fp;
  m.model = f[1].str;
  m.owner = f[2].str;
  m.position = Int(f[3]);
  m.gen = Int(f[4]);
  m.created = absl::FromUnixMicros(Int(f[5]));
  m.last_used = absl::FromUnixMicros(Int(f[6]));
  return m;
}

}  // namespace

std::unique_ptr<RedisEndpoint> MakeRedisEndpoint(const RedisTierConfig& c, int max_connections) {
  switch (c.mode) {
    case RedisTierConfig::Mode::kCluster:
      return std::make_unique<RedisClusterClient>(c.addresses, c.timeout, max_connections, c.auth);
    case RedisTierConfig::Mode::kSentinel:
      return std::make_unique<RedisSentinelClient>(
          RedisSentinelConfig{c.addresses, c.sentinel_master, c.auth, c.sentinel_auth}, c.timeout, max_connections);
    case RedisTierConfig::Mode::kSingle:
      break;
  }
  return std::make_unique<RedisClient>(c.addresses.at(0), c.timeout, max_connections, c.auth);
}

RedisTier::RedisTier(RedisTierConfig config)
    : config_(std::move(config)), endpoint_(MakeRedisEndpoint(config_, 16)) {
  for (int i = 0; i < kWriters; ++i) threads_.emplace_back([this, i] { WriterLoop(i); });
  threads_.emplace_back([this] { MonitorLoop(); });
  // Up until a command says otherwise; the monitor's first ping tells at once.
  (void)Run({"PING"});
}

RedisTier::~RedisTier() {
  stop_ = true;
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> l(s.mu);
    s.cv.notify_all();
  }
  {
    std::lock_guard<std::mutex> l(monitor_mu_);
    monitor_cv_.notify_all();
  }
  for (std::thread& t : threads_) t.join();
}

void RedisTier::MarkDown(const absl::Status& why) {
  if (!up_.exchange(false)) return;
  LogLine(absl::StrCat("redis tier at ", address(), " is down: ", why.message(),
                       "; serving the sessions this replica holds, retrying"));
  TellHealth(false);
  std::lock_guard<std::mutex> l(monitor_mu_);
  monitor_cv_.notify_all();
}

void RedisTier::TellHealth(bool up) {
  std::function<void(bool)> health;
  {
    std::lock_guard<std::mutex> l(mu_);
    health = health_;
  }
  if (health) health(up);
}

bool RedisTier::NeedsWrite(const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  return dirty_.count(id) > 0 || held_.count(id) == 0;
}

absl::StatusOr<RedisReply> RedisTier::Run(const std::vector<std::string>& argv) {
  absl::StatusOr<std::vector<RedisReply>> r = Pipeline({argv});
  if (!r.ok()) return r.status();
  return std::move((*r)[0]);
}

absl::StatusOr<std::vector<RedisReply>> RedisTier::Pipeline(const std::vector<std::vector<std::string>>& commands) {
  if (!up_) return absl::UnavailableError(absl::StrCat("the redis tier at ", address(), " is unreachable"));
  absl::StatusOr<std::vector<RedisReply>> r = endpoint_->Pipeline(commands);
  if (!r.ok() && r.status().code() == absl::StatusCode::kUnavailable) MarkDown(r.status());
  return r;
}

absl::StatusOr<std::optional<RedisTier::Meta>> RedisTier::ReadMeta(const std::string& id) {
  absl::StatusOr<RedisReply> r = Run(MetaQuery(SessionKey(id), false));
  if (!r.ok()) return r.status();
  if (r->elements.size() != kMetaFields.size() || r->elements[0].nil()) return std::nullopt;
  return ParseMeta(r->elements);
}

absl::StatusOr<std::optional<std::pair<RedisTier::Meta, std::string>>> RedisTier::Read(const std::string& id) {
  absl::StatusOr<RedisReply> r = Run(MetaQuery(SessionKey(id), true));
  if (!r.ok()) return r.status();
  if (r->elements.size() != kMetaFields.size() + 1 || r->elements[0].nil()) return std::nullopt;
  return std::make_pair(ParseMeta(r->elements), std::move(r->elements.back().str));
}

void RedisTier::Prefetch(const std::string& id) {
  auto r = Read(id);
  if (!r.ok() || !r->has_value()) return;
  std::lock_guard<std::mutex> l(mu_);
  if (prefetched_.size() >= kMaxPrefetched && prefetched_.count(id) == 0) {
    auto oldest = prefetched_.begin();
    for (auto it = prefetched_.begin(); it != prefetched_.end(); ++it)
      if (it->second.at < oldest->second.at) oldest = it;
    prefetched_.erase(oldest);
  }
  prefetched_.insert_or_assign(id, Prefetched{**std::move(r), absl::Now()});
}

absl::StatusOr<std::optional<std::pair<RedisTier::Meta, std::string>>> RedisTier::ReadLatest(const std::string& id) {
  std::optional<Prefetched> p;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = prefetched_.find(id); it != prefetched_.end()) {
      if (absl::Now() - it->second.at < absl::Seconds(5)) p = std::move(it->second);
      prefetched_.erase(it);
    }
  }
  if (p.has_value()) {
    // Every write bumps gen (a delete removes it): the same gen is the same record.
    absl::StatusOr<RedisReply> gen = Run({"HGET", SessionKey(id), "gen"});
    if (!gen.ok()) return gen.status();
    if (!gen->nil() && Int(*gen) == p->record.first.gen) {
      std::lock_guard<std::mutex> l(mu_);
      ++stats_.prefetched;
      return std::move(p->record);
    }
  }
  return Read(id);
}

absl::Status RedisTier::Delete(const std::string& id) {
  ForgetHeld(id);
  {
    std::lock_guard<std::mutex> l(mu_);
    owners_.erase(id);
    dirty_.erase(id);
    prefetched_.erase(id);
  }
  absl::StatusOr<RedisReply> r = Run({"DEL", SessionKey(id)});
  return r.status();
}

absl::Status RedisTier::Claim(const std::string& id, bool held_here) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = claims_.find(id); it != claims_.end()) {
      ++it->second;
      return absl::OkStatus();
    }
  }
  if (pending_.load() >= config_.max_pending_writes)
    return absl::ResourceExhaustedError(absl::StrCat("the redis tier has ", config_.max_pending_writes,
                                                     " writes queued (--redis-max-pending-writes); retry later"));
  const std::string lease_ms = std::to_string(absl::ToInt64Milliseconds(config_.lease));
  absl::StatusOr<RedisReply> set = Run({"SET", LeaseKey(id), config_.replica, "NX", "PX", lease_ms});
  absl::Status st = set.status();
  if (st.ok() && set->nil()) {
    absl::StatusOr<RedisReply> holder = Run({"GET", LeaseKey(id)});
    st = holder.status();
    if (st.ok() && !holder->nil() && holder->str != config_.replica) {
      std::lock_guard<std::mutex> l(mu_);
      ++stats_.lease_conflicts;
      return absl::FailedPreconditionError(absl::StrCat("session ", id, " is in use on replica ", holder->str,
                                                        " (it holds the session's lease in redis); retry when its "
                                                        "request has ended"));
    }
  }
  if (!st.ok()) {
    if (st.code() != absl::StatusCode::kUnavailable) return st;
    // Redis cannot be asked: a session held here is served without a lease, others cannot be.
    if (!held_here)
      return absl::UnavailableError(absl::StrCat("session ", id, " is not on this replica and the redis tier at ",
                                                 address(), " is unreachable"));
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.unleased;
  }
  std::lock_guard<std::mutex> l(mu_);
  ++claims_[id];
  return absl::OkStatus();
}

void RedisTier::Unclaim(const std::string& id) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = claims_.find(id);
    if (it == claims_.end()) return;
    if (--it->second > 0) return;
    claims_.erase(it);
  }
  (void)Run({"EVAL", kRelease, "1", LeaseKey(id), config_.replica});  // down: the lease expires
}

bool RedisTier::Stale(const std::string& id) {
  int64_t mine = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (claims_.count(id) > 0 && claims_.at(id) > 1) return false;  // another request of ours runs on it
    auto it = held_.find(id);
    mine = it == held_.end() ? 0 : it->second;
  }
  absl::StatusOr<RedisReply> r = Run({"HGET", SessionKey(id), "gen"});
  return r.ok() && !r->nil() && Int(*r) > mine;
}

void RedisTier::NoteHeld(const std::string& id, int64_t gen) {
  std::lock_guard<std::mutex> l(mu_);
  held_[id] = gen;
}

void RedisTier::ForgetHeld(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  held_.erase(id);
}

void RedisTier::SetOwner(const std::string& id, const std::string& tenant) {
  {
    std::lock_guard<std::mutex> l(mu_);
    owners_[id] = tenant;
  }
  (void)Run({"HSET", SessionKey(id), "owner", tenant});
}

absl::Status RedisTier::WriteRecord(const std::string& id, uint64_t fingerprint, const std::string& model,
                                    int64_t position, const std::string& record) {
  int64_t gen = 0;
  std::string owner;
  {
    std::lock_guard<std::mutex> l(mu_);
    gen = (held_.count(id) > 0 ? held_[id] : 0) + 1;
    if (auto it = owners_.find(id); it != owners_.end()) owner = it->second;
  }
  const std::string key = SessionKey(id);
  const std::string now = Micros(absl::Now());
  std::vector<std::vector<std::string>> cmds = {
      {"HSET", key, "state", record, "fp", absl::StrCat(absl::Hex(fingerprint)), "model", model, "position",
       std::to_string(position), "gen", std::to_string(gen), "last_used", now},
      {"HSETNX", key, "created", now},
      {"HSETNX", key, "owner", owner},
  };
  if (config_.ttl > absl::ZeroDuration())
    cmds.push_back({"PEXPIRE", key, std::to_string(absl::ToInt64Milliseconds(config_.ttl))});
  absl::StatusOr<std::vector<RedisReply>> r = Pipeline(cmds);
  if (!r.ok()) return r.status();
  std::lock_guard<std::mutex> l(mu_);
  held_[id] = gen;
  ++stats_.spills;
  return absl::OkStatus();
}

void RedisTier::Commit(Write w) {
  ++pending_;  // before the end goes out: a client that then reads pending_writes == 0 may rely on it
  if (config_.async && w.then) {
    w.then();
    w.then = nullptr;
  }
  Shard& s = shards_[std::hash<std::string>()(w.id) % kWriters];
  std::lock_guard<std::mutex> l(s.mu);
  s.queue.push_back(std::move(w));
  s.cv.notify_one();
}

void RedisTier::WriterLoop(int shard) {
  Shard& s = shards_[shard];
  while (true) {
    Write w;
    {
      std::unique_lock<std::mutex> l(s.mu);
      s.cv.wait(l, [&] { return stop_ || !s.queue.empty(); });
      if (s.queue.empty()) return;  // stopping, and everything queued is written
      w = std::move(s.queue.front());
      s.queue.pop_front();
    }
    absl::Status st = WriteRecord(w.id, w.fingerprint, w.model, w.position, w.record());
    {
      std::lock_guard<std::mutex> l(mu_);
      if (st.ok()) {
        dirty_.erase(w.id);
      } else {
        dirty_[w.id] = w.fingerprint;
        ++stats_.write_failures;
      }
    }
    if (w.claimed) Unclaim(w.id);
    if (w.then) w.then();
    --pending_;
  }
}

void RedisTier::SetExporter(uint64_t fingerprint, std::string model, Exporter exporter) {
  std::lock_guard<std::mutex> l(mu_);
  exporters_[fingerprint] = ModelExporter{std::move(model), std::move(exporter)};
}

void RedisTier::ClearExporters() {
  std::lock_guard<std::mutex> l(mu_);
  exporters_.clear();
}

void RedisTier::FlushDirty() {
  std::vector<std::pair<std::string, uint64_t>> dirty;
  {
    std::lock_guard<std::mutex> l(mu_);
    dirty.assign(dirty_.begin(), dirty_.end());
  }
  for (const auto& [id, fp] : dirty) {
    ModelExporter e;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = exporters_.find(fp);
      if (it == exporters_.end()) continue;
      e = it->second;
    }
    int64_t position = 0;
    absl::StatusOr<std::string> record = e.exporter(id, &position);
    // Gone (deleted, evicted) or busy (its request's own write will carry it): nothing to do.
    if (!record.ok()) {
      if (record.status().code() != absl::StatusCode::kUnavailable) {
        std::lock_guard<std::mutex> l(mu_);
        dirty_.erase(id);
      }
      continue;
    }
    if (WriteRecord(id, fp, e.model, position, *record).ok()) {
      std::lock_guard<std::mutex> l(mu_);
      dirty_.erase(id);
    }
  }
}

void RedisTier::MonitorLoop() {
  const absl::Duration every = std::min(config_.lease / 3, absl::Milliseconds(500));
  while (!stop_) {
    {
      std::unique_lock<std::mutex> l(monitor_mu_);
      monitor_cv_.wait_for(l, absl::ToChronoNanoseconds(every), [&] { return stop_.load(); });
    }
    if (stop_) return;
    if (!up_) {
      if (!endpoint_->Ping().ok()) continue;
      up_ = true;
      LogLine(absl::StrCat("redis tier at ", address(), " is reachable again"));
      TellHealth(true);
      FlushDirty();
      continue;
    }
    std::vector<std::vector<std::string>> renew;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [id, n] : claims_)
        renew.push_back({"EVAL", kRenew, "1", LeaseKey(id), config_.replica,
                         std::to_string(absl::ToInt64Milliseconds(config_.lease))});
    }
    if (!renew.empty()) (void)Pipeline(renew);
    bool dirty = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      dirty = !dirty_.empty();
    }
    if (dirty) FlushDirty();
  }
}

void RedisTier::SetHealthListener(std::function<void(bool)> listener) {
  std::lock_guard<std::mutex> l(mu_);
  health_ = std::move(listener);
  if (health_) health_(up_);
}

void RedisTier::CountRestore(bool refused) {
  std::lock_guard<std::mutex> l(mu_);
  ++(refused ? stats_.refused : stats_.restores);
}

void RedisTier::CountMiss() {
  std::lock_guard<std::mutex> l(mu_);
  ++stats_.misses;
}

TierStats RedisTier::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  TierStats s = stats_;
  s.sessions = -1;  // the shared store's totals are Redis's to report (INFO keyspace), not one replica's
  s.bytes = -1;
  s.up = up_ ? 1 : 0;
  s.pending_writes = pending_.load();
  return s;
}

// ---- RedisParking ---------------------------------------------------------------------------

absl::Status RedisParking::Park(const std::string& id, const engine::SessionSnapshot& snapshot, absl::Time created,
                                absl::Time last_used) {
  if (host_ != nullptr && host_->Park(id, snapshot, created, last_used).ok()) return absl::OkStatus();
  // Redis has every idle session's latest state already (written through), unless its write
  // failed: only then is this the last chance to keep it.
  if (!tier_->NeedsWrite(id)) return absl::OkStatus();
  tier_->Commit(RedisTier::Write{id, model_.fingerprint, name_, snapshot.position,
                                 [m = model_, snapshot] { return EncodeSessionSnapshot(m, snapshot); }, false, nullptr});
  return absl::OkStatus();
}

absl::StatusOr<engine::SessionSnapshot> RedisParking::Unpark(const std::string& id, absl::Time* created,
                                                             std::string* tier) {
  if (host_ != nullptr) {
    absl::StatusOr<engine::SessionSnapshot> s = host_->Unpark(id, created, tier);
    if (s.status().code() != absl::StatusCode::kNotFound) return s;
  }
  *tier = kRedisTier;
  auto r = tier_->ReadLatest(id);
  if (!r.ok()) return r.status();
  if (!r->has_value() || (*r)->first.fingerprint != model_.fingerprint) {
    tier_->CountMiss();
    return absl::NotFoundError(absl::StrCat("session ", id, " is not in the redis tier"));
  }
  const RedisTier::Meta& meta = (*r)->first;
  absl::StatusOr<engine::SessionSnapshot> snap = DecodeSessionSnapshot((*r)->second, model_);
  if (!snap.ok()) {
    tier_->CountRestore(true);
    const absl::StatusCode code = snap.status().code() == absl::StatusCode::kInvalidArgument
                                      ? absl::StatusCode::kDataLoss
                                      : snap.status().code();
    return absl::Status(code, absl::StrCat("its redis record failed its check: ", snap.status().message()));
  }
  if (snap->position != meta.position) {
    tier_->CountRestore(true);
    return absl::DataLossError(absl::StrCat("its redis record says position ", meta.position, " but its state is at ",
                                            snap->position));
  }
  tier_->CountRestore(false);
  tier_->NoteHeld(id, meta.gen);
  *created = meta.created;
  return snap;
}

std::optional<engine::SessionParking::Parked> RedisParking::Find(const std::string& id) {
  if (host_ != nullptr)
    if (std::optional<Parked> p = host_->Find(id)) return p;
  auto r = tier_->ReadMeta(id);
  if (!r.ok() || !r->has_value() || (*r)->fingerprint != model_.fingerprint) return std::nullopt;
  return Parked{(*r)->position, (*r)->created, (*r)->last_used, kRedisTier};
}

void RedisParking::Prefetch(const std::string& id) {
  if (host_ != nullptr && host_->Find(id).has_value()) return;  // restored from host memory: fast
  tier_->Prefetch(id);
}

std::vector<std::pair<std::string, engine::SessionParking::Parked>> RedisParking::List() {
  // The sessions of every replica are not listed: ListSessions shows this replica's.
  if (host_ != nullptr) return host_->List();
  return {};
}

void RedisParking::Forget(const std::string& id) {
  if (host_ != nullptr) host_->Forget(id);
  (void)tier_->Delete(id);
}

void RedisParking::ForgetLocal(const std::string& id) {
  if (host_ != nullptr) host_->Forget(id);
  tier_->ForgetHeld(id);
}

absl::Status RedisParking::Claim(const std::string& id, bool held_here) {
  return tier_->Claim(id, held_here || (host_ != nullptr && host_->Find(id).has_value()));
}

void RedisParking::Commit(const std::string& id, engine::SessionSnapshot snapshot, bool claimed,
                          std::function<void()> then) {
  const int64_t position = snapshot.position;
  tier_->Commit(RedisTier::Write{id, model_.fingerprint, name_, position,
                                 [m = model_, s = std::move(snapshot)] { return EncodeSessionSnapshot(m, s); }, claimed,
                                 std::move(then)});
}

}  // namespace retain::server
