// retain sessions over HTTP (an extension of the OpenAI API; server/README.md): create, read,
// fork, delete. Each is the gRPC RPC's implementation (session_ops.h, SessionOwners) behind a
// JSON face, so tenants and limits hold exactly as over gRPC.
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/http/http_internal.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/request_validation.h"
#include "server/session_ops.h"
#include "server/session_owners.h"

namespace retain::server {
namespace {

nlohmann::json SessionJson(const ServedModel& m, const engine::SessionInfo& info) {
  return {{"id", info.id},
          {"object", "session"},
          {"model", m.name},
          {"position", info.position},
          {"state_bytes", info.state_bytes},
          {"busy", info.busy},
          {"created", absl::ToDoubleSeconds(info.created - absl::UnixEpoch())},
          {"last_used", absl::ToDoubleSeconds(info.last_used - absl::UnixEpoch())}};
}

// The id as typed only when it is a valid one: a path can carry anything, even a newline.
std::string Shown(const std::string& id) { return CheckSessionId(id, "").ok() ? id : "-"; }

void LogSession(const char* op, const std::string& model, const std::string& session, const std::string& tenant,
                const absl::Status& st, const httplib::Request& req) {
  LogLine(absl::StrCat("http ", op, " model=", model.empty() ? "-" : model, " session=", session.empty() ? "-" : session,
                       tenant.empty() ? "" : absl::StrCat(" tenant=", tenant),
                       " outcome=", st.ok() ? "ok" : absl::StatusCodeToString(st.code()),
                       st.ok() ? "" : absl::StrCat(" error=\"", st.message(), "\""), " peer=", HttpPeer(req)));
}

}  // namespace

void HttpFrontEnd::Impl::Sessions() {
  // POST /v1/sessions {"model": NAME}: a new, empty session (its first completion is its prompt).
  server->Post("/v1/sessions", [this](const httplib::Request& req, httplib::Response& res) {
    auto caller = Authenticate(req);
    if (!caller.ok()) return Fail(res, caller.status(), "");
    std::string name;
    if (!req.body.empty()) {
      const auto body = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded() || !body.is_object())
        return Fail(res, absl::InvalidArgumentError("the request body must be a JSON object"), "");
      if (body.contains("model") && !body["model"].is_null()) {
        if (!body["model"].is_string()) return Fail(res, absl::InvalidArgumentError("model must be a string"), "");
        name = body["model"].get<std::string>();
      }
    }
    auto m = deps.registry->Find(name);
    if (!m.ok()) return Fail(res, m.status(), "");
    ServedModel* model = *m;
    auto info = deps.owners->Add(*caller, *model, [&] { return model->engine->CreateSession(); });
    LogSession("create_session", model->name, info.ok() ? info->id : "", caller->tenant, info.status(), req);
    if (!info.ok()) return Fail(res, info.status(), model->name);
    ReplyJson(res, 200, SessionJson(*model, *info));
  });
  server->Get(R"(/v1/sessions/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    auto caller = Authenticate(req);
    if (!caller.ok()) return Fail(res, caller.status(), "");
    const std::string id = req.matches[1];
    absl::Status st = CheckSessionId(id, "session_id");
    if (!st.ok()) return Fail(res, st, "");
    auto owner = deps.owners->Find(*caller, id);
    if (!owner.ok()) return Fail(res, owner.status(), "");
    ReplyJson(res, 200, SessionJson(*owner->first, owner->second));
  });
  server->Post(R"(/v1/sessions/([^/]+)/fork)", [this](const httplib::Request& req, httplib::Response& res) {
    auto caller = Authenticate(req);
    if (!caller.ok()) return Fail(res, caller.status(), "");
    const std::string id = req.matches[1];
    std::string model;
    auto fork = ForkOwnedSession(deps, *caller, id, &model);
    LogSession("fork_session", model, absl::StrCat(Shown(id), "->", fork.ok() ? fork->second.id : ""),
               caller->tenant, fork.status(), req);
    if (!fork.ok()) return Fail(res, fork.status(), model);
    ReplyJson(res, 200, SessionJson(*fork->first, fork->second));
  });
  server->Delete(R"(/v1/sessions/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    auto caller = Authenticate(req);
    if (!caller.ok()) return Fail(res, caller.status(), "");
    const std::string id = req.matches[1];
    std::string model;
    absl::Status st = DeleteOwnedSession(deps, *caller, id, &model);
    LogSession("delete_session", model, Shown(id), caller->tenant, st, req);
    if (!st.ok()) return Fail(res, st, model);
    ReplyJson(res, 200, {{"id", id}, {"object", "session"}, {"deleted", true}});
  });
}

}  // namespace retain::server
