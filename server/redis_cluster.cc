#include "server/redis_cluster.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace retain::server {
namespace {

uint16_t Crc16(absl::string_view s) {
  uint16_t crc = 0;
  for (unsigned char c : s) {
    crc ^= static_cast<uint16_t>(c << 8);
    for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : crc << 1;
  }
  return crc;
}

// The key a command of the tier names, or -1 for none (PING, WAIT: they follow the command before).
int KeyIndex(const std::vector<std::string>& argv) {
  if (argv.size() < 2) return -1;
  const std::string cmd = absl::AsciiStrToUpper(argv[0]);
  if (cmd == "EVAL" || cmd == "EVALSHA") return argv.size() > 3 && argv[2] != "0" ? 3 : -1;
  if (cmd == "WAIT" || cmd == "PING" || cmd == "CLUSTER" || cmd == "INFO") return -1;
  return 1;
}

// "MOVED 3999 127.0.0.1:6381" -> the address.
bool ParseRedirect(absl::string_view error, absl::string_view kind, RedisAddress* at) {
  std::vector<absl::string_view> parts = absl::StrSplit(error, ' ');
  if (parts.size() != 3 || parts[0] != kind) return false;
  const size_t colon = parts[2].rfind(':');
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(parts[2].substr(colon + 1), &at->port)) return false;
  at->host = std::string(parts[2].substr(0, colon));
  return true;
}

}  // namespace

int RedisKeySlot(absl::string_view key) {
  const size_t open = key.find('{');
  if (open != absl::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != absl::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return Crc16(key) % kRedisClusterSlots;
}

RedisClusterClient::RedisClusterClient(std::vector<RedisAddress> seeds, absl::Duration timeout, int max_connections,
                                       RedisAuth auth)
    : seeds_(std::move(seeds)), timeout_(timeout), max_connections_(max_connections), auth_(std::move(auth)) {}

std::string RedisClusterClient::address() const {
  std::vector<std::string> s;
  for (const RedisAddress& a : seeds_) s.push_back(a.str());
  return absl::StrCat("cluster ", absl::StrJoin(s, ","));
}

std::shared_ptr<RedisClient> RedisClusterClient::Node(const RedisAddress& at) {
  std::lock_guard<std::mutex> l(mu_);
  std::shared_ptr<RedisClient>& c = nodes_[at.str()];
  if (c == nullptr) c = std::make_shared<RedisClient>(at, timeout_, max_connections_, auth_);
  return c;
}

absl::Status RedisClusterClient::Refresh() {
  // Known nodes first (the seeds may be gone), then the seeds.
  std::vector<RedisAddress> ask;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [name, c] : nodes_) ask.push_back(c->at());
  }
  ask.insert(ask.end(), seeds_.begin(), seeds_.end());
  std::string why;
  for (const RedisAddress& at : ask) {
    std::shared_ptr<RedisClient> node = Node(at);
    absl::StatusOr<RedisReply> r = node->Run({"CLUSTER", "SLOTS"});
    if (!r.ok()) {
      absl::StrAppend(&why, "; ", r.status().message());
      continue;
    }
    auto map = std::make_shared<Map>();
    std::unordered_map<std::string, int16_t> index;
    int covered = 0;
    for (const RedisReply& range : r->elements) {
      if (range.elements.size() < 3 || range.elements[2].elements.size() < 2) continue;
      const RedisReply& master = range.elements[2];
      RedisAddress m{master.elements[0].str, static_cast<int>(master.elements[1].integer)};
      if (m.host.empty() || m.host == "?") m.host = at.host;  // "the node you asked", in Redis 7's words
      auto [it, added] = index.emplace(m.str(), static_cast<int16_t>(map->masters.size()));
      if (added) map->masters.push_back(Node(m));
      const int64_t lo = range.elements[0].integer, hi = range.elements[1].integer;
      for (int64_t s = std::max<int64_t>(lo, 0); s <= hi && s < kRedisClusterSlots; ++s, ++covered)
        map->slot_master[s] = it->second;
    }
    if (covered == 0) {
      absl::StrAppend(&why, "; ", at.str(), " has no slots assigned (is it a cluster node?)");
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    map_ = std::move(map);
    return absl::OkStatus();
  }
  std::lock_guard<std::mutex> l(mu_);
  map_.reset();
  return absl::UnavailableError(absl::StrCat("no node of redis ", address(), " gave its slot map", why));
}

absl::StatusOr<std::shared_ptr<const RedisClusterClient::Map>> RedisClusterClient::CurrentMap() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (map_ != nullptr) return map_;
  }
  absl::Status st = Refresh();
  if (!st.ok()) return st;
  std::lock_guard<std::mutex> l(mu_);
  if (map_ == nullptr) return absl::UnavailableError(absl::StrCat("redis ", address(), " has no slot map"));
  return map_;
}

RedisReply RedisClusterClient::Redirect(const std::vector<std::string>& argv, const RedisReply& reply, bool* moved) {
  RedisAddress at;
  if (ParseRedirect(reply.str, "MOVED", &at)) {
    *moved = true;
    absl::StatusOr<std::vector<RedisReply>> r = Node(at)->Exchange({argv});
    return r.ok() ? std::move((*r)[0]) : reply;
  }
  if (ParseRedirect(reply.str, "ASK", &at)) {
    absl::StatusOr<std::vector<RedisReply>> r = Node(at)->Exchange({{"ASKING"}, argv});
    return r.ok() ? std::move((*r)[1]) : reply;
  }
  return reply;
}

absl::StatusOr<std::vector<RedisReply>> RedisClusterClient::Exchange(
    const std::vector<std::vector<std::string>>& commands) {
  absl::StatusOr<std::shared_ptr<const Map>> map = CurrentMap();
  if (!map.ok()) return map.status();
  // Split by owner, keeping each owner's commands in order (one session's commands share a key,
  // so they stay in order too).
  std::vector<int> owner(commands.size(), -1);
  int last = -1;
  for (size_t i = 0; i < commands.size(); ++i) {
    const int k = KeyIndex(commands[i]);
    owner[i] = k < 0 ? last : (*map)->slot_master[RedisKeySlot(commands[i][k])];
    if (owner[i] < 0) owner[i] = last >= 0 ? last : 0;
    last = owner[i];
  }
  std::vector<RedisReply> out(commands.size());
  bool moved = false;
  for (size_t m = 0; m < (*map)->masters.size(); ++m) {
    std::vector<size_t> mine;
    std::vector<std::vector<std::string>> batch;
    for (size_t i = 0; i < commands.size(); ++i)
      if (owner[i] == static_cast<int>(m)) {
        mine.push_back(i);
        batch.push_back(commands[i]);
      }
    if (batch.empty()) continue;
    absl::StatusOr<std::vector<RedisReply>> r = (*map)->masters[m]->Exchange(batch);
    if (!r.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      if (map_ == *map) map_.reset();  // a failover may have moved its slots: read the map again next time
      return r.status();
    }
    for (size_t j = 0; j < mine.size(); ++j) {
      RedisReply& reply = (*r)[j];
      out[mine[j]] = reply.error() ? Redirect(batch[j], reply, &moved) : std::move(reply);
    }
  }
  if (moved) (void)Refresh();
  return out;
}

absl::Status RedisClusterClient::Ping() {
  absl::StatusOr<std::shared_ptr<const Map>> map = CurrentMap();
  if (!map.ok()) return map.status();
  for (int16_t m : (*map)->slot_master)
    if (m < 0) return absl::UnavailableError(absl::StrCat("redis ", address(), " has slots no master serves"));
  for (const std::shared_ptr<RedisClient>& master : (*map)->masters) {
    absl::StatusOr<RedisReply> r = master->Run({"PING"});
    if (!r.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      if (map_ == *map) map_.reset();
      return r.status();
    }
  }
  return absl::OkStatus();
}

}  // namespace retain::server
