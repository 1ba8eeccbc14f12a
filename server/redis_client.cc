#include "server/redis_client.h"

#include <sys/time.h>

#include <hiredis.h>

#include "absl/strings/str_cat.h"

namespace retain::server {
namespace {

RedisReply Copy(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Copy(r->element[i]));
      break;
    default:
      break;
  }
  return out;
}


void Append(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  redisAppendCommandArgv(c, static_cast<int>(args.size()), args.data(), lens.data());
}

}  // namespace

RedisClient::RedisClient(std::string host, int port, absl::Duration timeout, int max_connections)
    : host_(std::move(host)), port_(port), timeout_(timeout), max_connections_(max_connections) {}

RedisClient::~RedisClient() {
  for (redisContext* c : idle_) redisFree(c);
}

absl::StatusOr<redisContext*> RedisClient::Acquire() {
  {
    std::unique_lock<std::mutex> l(mu_);
    // Callers wait for a connection rather than open more than the bound.
    if (!freed_.wait_for(l, absl::ToChronoNanoseconds(timeout_), [&] { return !idle_.empty() || open_ < max_connections_; }))
      return absl::UnavailableError(
          absl::StrCat("all ", max_connections_, " connections to redis at ", address(), " stayed busy"));
    if (!idle_.empty()) {
      redisContext* c = idle_.back();
      idle_.pop_back();
      return c;
    }
    ++open_;
  }
  redisContext* c = redisConnectWithTimeout(host_.c_str(), port_, absl::ToTimeval(timeout_));
  if (c == nullptr || c->err != 0) {
    std::string why = c != nullptr ? c->errstr : "out of memory";
    if (c != nullptr) redisFree(c);
    std::lock_guard<std::mutex> l(mu_);
    --open_;
    freed_.notify_one();
    return absl::UnavailableError(absl::StrCat("cannot connect to redis at ", address(), ": ", why));
  }
  redisSetTimeout(c, absl::ToTimeval(timeout_));
  return c;
}

void RedisClient::Return(redisContext* c, bool healthy) {
  std::lock_guard<std::mutex> l(mu_);
  freed_.notify_one();
  if (healthy) {
    idle_.push_back(c);
    return;
  }
  redisFree(c);
  --open_;
}

absl::StatusOr<RedisReply> RedisClient::Run(const std::vector<std::string>& argv) {
  absl::StatusOr<std::vector<RedisReply>> r = Pipeline({argv});
  if (!r.ok()) return r.status();
  return std::move((*r)[0]);
}

absl::StatusOr<std::vector<RedisReply>> RedisClient::Pipeline(const std::vector<std::vector<std::string>>& commands) {
  absl::StatusOr<redisContext*> c = Acquire();
  if (!c.ok()) return c.status();
  for (const auto& argv : commands) Append(*c, argv);
  std::vector<RedisReply> out;
  absl::Status error = absl::OkStatus();
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(*c, &raw) != REDIS_OK || raw == nullptr) {
      const std::string why = (*c)->errstr[0] != '\0' ? (*c)->errstr : "no reply";
      Return(*c, false);  // the connection's state is unknown now: never reused
      return absl::UnavailableError(absl::StrCat("redis at ", address(), ": ", why));
    }
    auto* reply = static_cast<redisReply*>(raw);
    if (reply->type == REDIS_REPLY_ERROR && error.ok())
      error = absl::InternalError(absl::StrCat("redis at ", address(), " answered ", commands[i][0], ": ",
                                               std::string(reply->str, reply->len)));
    out.push_back(Copy(reply));
    freeReplyObject(reply);
  }
  Return(*c, true);
  if (!error.ok()) return error;
  return out;
}

}  // namespace retain::server
