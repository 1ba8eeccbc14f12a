#include "server/redis_endpoint.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace retain::server {

std::string RedisAddress::str() const { return absl::StrCat(host, ":", port); }

absl::StatusOr<std::vector<RedisAddress>> ParseRedisAddresses(absl::string_view list, absl::string_view flag) {
  std::vector<RedisAddress> out;
  for (absl::string_view one : absl::StrSplit(list, ',')) {
    const size_t colon = one.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || colon == 0 || !absl::SimpleAtoi(one.substr(colon + 1), &port) || port < 1 ||
        port > 65535)
      return absl::InvalidArgumentError(absl::StrCat(flag, ": \"", one, "\" is not HOST:PORT"));
    out.push_back({std::string(one.substr(0, colon)), port});
  }
  if (out.size() > 64) return absl::InvalidArgumentError(absl::StrCat(flag, ": more than 64 addresses"));
  return out;
}

bool TransientRedisError(absl::string_view e) {
  for (absl::string_view prefix : {"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING", "READONLY", "MOVED", "ASK "})
    if (absl::StartsWith(e, prefix)) return true;
  return false;
}

absl::Status RedisEndpoint::Ping() {
  absl::StatusOr<RedisReply> r = Run({"PING"});
  return r.status();
}

absl::StatusOr<std::vector<RedisReply>> RedisEndpoint::Pipeline(const std::vector<std::vector<std::string>>& commands) {
  absl::StatusOr<std::vector<RedisReply>> r = Exchange(commands);
  if (!r.ok()) return r.status();
  for (size_t i = 0; i < r->size(); ++i) {
    const RedisReply& reply = (*r)[i];
    if (!reply.error()) continue;
    std::string why = absl::StrCat("redis at ", address(), " answered ", commands[i][0], ": ", reply.str);
    if (TransientRedisError(reply.str)) return absl::UnavailableError(why);
    // maxmemory reached with noeviction: Redis is full, which callers say as a full pool.
    if (absl::StartsWith(reply.str, "OOM"))
      return absl::ResourceExhaustedError(absl::StrCat(why, " (Redis is at its maxmemory)"));
    return absl::InternalError(why);
  }
  return r;
}

absl::StatusOr<RedisReply> RedisEndpoint::Run(const std::vector<std::string>& argv) {
  absl::StatusOr<std::vector<RedisReply>> r = Pipeline({argv});
  if (!r.ok()) return r.status();
  return std::move((*r)[0]);
}

}  // namespace retain::server
