// Internal to server/http/*.cc: the front-end's state and the helpers its handlers share. The one
// header that includes cpp-httplib, so only these files pay for it.
#pragma once

#include <atomic>
#include <map>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/http/chat_template.h"
#include "server/http/http_config.h"
#include "server/http/http_frontend.h"
#include "server/http/openai_api.h"
#include "server/service_deps.h"
#include "server/tenants.h"

namespace retain::server {

struct HttpFrontEnd::Impl {
  HttpConfig config;
  ServiceDeps deps;
  std::map<std::string, ChatTemplate> templates;  // by model name
  std::unique_ptr<httplib::Server> server;  // an httplib::SSLServer when TLS is configured
  std::thread listener;
  int port = 0;
  std::atomic<bool> draining{false};
  std::atomic<int> generations{0};  // completions the engines hold (slots of --http-max-generations)
  CallTracker responses;            // completions not yet written out (the drain waits for them)

  void Routes();
  void Completion(const httplib::Request& req, httplib::Response& res, ApiKind kind);
  void Sessions();

  // The caller from the Authorization header, as gRPC's `authorization` metadata.
  absl::StatusOr<Caller> Authenticate(const httplib::Request& req) const;
  // An OpenAI error JSON with its HTTP status, counted in retain_request_errors_total{protocol="http"}.
  void Fail(httplib::Response& res, const absl::Status& status, const std::string& model) const;
  bool TakeGenerationSlot();
  void ReleaseGenerationSlot() { generations.fetch_sub(1); }
};

void ReplyJson(httplib::Response& res, int status, const nlohmann::json& body);
// "127.0.0.1:53122", for log lines.
std::string HttpPeer(const httplib::Request& req);

}  // namespace retain::server
