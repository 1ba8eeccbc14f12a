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
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(r->str, r->len);
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

RedisClient::RedisClient(RedisAddress at, absl::Duration timeout, int max_connections, RedisAuth auth)
    : at_(std::move(at)), timeout_(timeout), max_connections_(max_connections), auth_(std::move(auth)) {}

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
  absl::StatusOr<redisContext*> c = Connect();
  if (!c.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    --open_;
    freed_.notify_one();
  }
  return c;
}

absl::StatusOr<redisContext*> RedisClient::Connect() {
  redisContext* c = redisConnectWithTimeout(at_.host.c_str(), at_.port, absl::ToTimeval(timeout_));
  if (c == nullptr || c->err != 0) {
    std::string why = c != nullptr ? c->errstr : "out of memory";
    if (c != nullptr) redisFree(c);
    return absl::UnavailableError(absl::StrCat("cannot connect to redis at ", address(), ": ", why));
  }
  redisSetTimeout(c, absl::ToTimeval(timeout_));
  if (auth_.password.empty()) return c;
  std::vector<std::string> argv = {"AUTH"};
  if (!auth_.user.empty()) argv.push_back(auth_.user);
  argv.push_back(auth_.password);
  Append(c, argv);
  void* raw = nullptr;
  std::string why;
  if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) {
    why = c->errstr[0] != '\0' ? c->errstr : "no reply";
  } else {
    auto* reply = static_cast<redisReply*>(raw);
    if (reply->type == REDIS_REPLY_ERROR) why = std::string(reply->str, reply->len);
    freeReplyObject(reply);
  }
  if (why.empty()) return c;
  redisFree(c);
  // A refused AUTH is reported as Unavailable too: the tier cannot be used until it is fixed,
  // and the message says which (the password itself is never logged).
  return absl::UnavailableError(absl::StrCat("redis at ", address(), " refused AUTH", auth_.user.empty() ? "" : " for user ",
                                             auth_.user, ": ", why));
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

absl::StatusOr<std::vector<RedisReply>> RedisClient::Exchange(const std::vector<std::vector<std::string>>& commands) {
  absl::StatusOr<redisContext*> c = Acquire();
  if (!c.ok()) return c.status();
  for (const auto& argv : commands) Append(*c, argv);
  std::vector<RedisReply> out;
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(*c, &raw) != REDIS_OK || raw == nullptr) {
      const std::string why = (*c)->errstr[0] != '\0' ? (*c)->errstr : "no reply";
      Return(*c, false);  // the connection's state is unknown now: never reused
      return absl::UnavailableError(absl::StrCat("redis at ", address(), ": ", why));
    }
    auto* reply = static_cast<redisReply*>(raw);
    out.push_back(Copy(reply));
    freeReplyObject(reply);
  }
  Return(*c, true);
  return out;
}

}  // namespace retain::server
