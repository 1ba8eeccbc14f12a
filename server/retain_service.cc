#include "server/retain_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "retain/engine/text_stream.h"
#include "server/grpc_status.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_fingerprint.h"
#include "server/model_registry.h"
#include "server/request_validation.h"
#include "server/session_ops.h"
#include "server/session_owners.h"
#include "server/tenants.h"

namespace retain::server {

// ---- helpers shared with the reactors (service_calls.h) ----------------------------------

void FillSession(const ServedModel& model, const engine::SessionInfo& info, v1::Session* out) {
  out->set_id(info.id);
  out->set_model(model.name);
  out->set_position(info.position);
  out->set_created_unix_seconds(absl::ToDoubleSeconds(info.created - absl::UnixEpoch()));
  out->set_last_used_unix_seconds(absl::ToDoubleSeconds(info.last_used - absl::UnixEpoch()));
  out->set_state_bytes(static_cast<int64_t>(info.state_bytes));
  out->set_busy(info.busy);
  for (int64_t p : info.checkpoints) out->add_checkpoint_positions(p);
  out->set_history_start(info.history_start);
  out->set_tier(info.tier);
}

grpc::ServerUnaryReactor* FinishUnary(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                      const absl::Status& status, const std::string& model) {
  if (!status.ok()) deps.metrics->RecordError(model, status.code());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Time CallDeadline(const grpc::CallbackServerContext* ctx) {
  const auto deadline = ctx->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

std::string Peer(const grpc::CallbackServerContext* ctx) { return ctx->peer(); }

absl::StatusOr<Caller> Authenticate(const ServiceDeps& deps, const grpc::CallbackServerContext* ctx) {
  if (!deps.tenants->enabled()) return deps.tenants->Authenticate(nullptr);
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return deps.tenants->Authenticate(nullptr);
  const std::string value(it->second.data(), it->second.size());
  return deps.tenants->Authenticate(&value);
}

namespace {

// A unary call's log line: what it was, on what, how it ended.
void LogUnary(const char* rpc, const std::string& model, const std::string& session, const std::string& tenant,
              const absl::Status& status, absl::Time start, const grpc::CallbackServerContext* ctx) {
  std::string line = absl::StrCat(rpc, " model=", model.empty() ? "-" : model, " session=", session.empty() ? "-" : session,
                                  TenantField(tenant), " outcome=", status.ok() ? "ok" : StatusCodeLabel(status.code()),
                                  absl::StrFormat(" total=%.3fs", absl::ToDoubleSeconds(absl::Now() - start)));
  if (!status.ok()) absl::StrAppend(&line, " error=\"", status.message(), "\"");
  absl::StrAppend(&line, " peer=", Peer(ctx));
  LogLine(line);
}

}  // namespace

// ---- Retain ---------------------------------------------------------------------------------

grpc::ServerWriteReactor<v1::GenerateResponse>* RetainService::Generate(grpc::CallbackServerContext* ctx,
                                                                        const v1::GenerateRequest* request) {
  return StartGenerate(deps_, ctx, request);
}

grpc::ServerUnaryReactor* RetainService::CreateSession(grpc::CallbackServerContext* ctx,
                                                       const v1::CreateSessionRequest* request, v1::Session* response) {
  return StartCreateSession(deps_, ctx, request, response);
}

grpc::ServerUnaryReactor* RetainService::GetSession(grpc::CallbackServerContext* ctx, const v1::GetSessionRequest* request,
                                                    v1::Session* response) {
  auto caller = Authenticate(deps_, ctx);
  if (!caller.ok()) return FinishUnary(deps_, ctx, caller.status(), "");
  absl::Status st = CheckSessionId(request->session_id(), "session_id");
  if (!st.ok()) return FinishUnary(deps_, ctx, st, "");
  auto owner = deps_.owners->Find(*caller, request->session_id());
  if (!owner.ok()) return FinishUnary(deps_, ctx, owner.status(), "");
  FillSession(*owner->first, owner->second, response);
  return FinishUnary(deps_, ctx, absl::OkStatus(), owner->first->name);
}

grpc::ServerUnaryReactor* RetainService::ListSessions(grpc::CallbackServerContext* ctx,
                                                      const v1::ListSessionsRequest* request,
                                                      v1::ListSessionsResponse* response) {
  auto caller = Authenticate(deps_, ctx);
  if (!caller.ok()) return FinishUnary(deps_, ctx, caller.status(), "");
  const ServedModel* only = nullptr;
  if (!request->model().empty()) {
    auto m = deps_.registry->Find(request->model());
    if (!m.ok()) return FinishUnary(deps_, ctx, m.status(), "");
    only = *m;
  }
  for (const auto& m : deps_.registry->models()) {
    if (only != nullptr && m.get() != only) continue;
    for (const engine::SessionInfo& info : m->engine->ListSessions())
      if (deps_.owners->Owns(*caller, info.id)) FillSession(*m, info, response->add_sessions());
  }
  return FinishUnary(deps_, ctx, absl::OkStatus(), only != nullptr ? only->name : "");
}

grpc::ServerUnaryReactor* RetainService::StopGeneration(grpc::CallbackServerContext* ctx,
                                                        const v1::StopGenerationRequest* request,
                                                        v1::StopGenerationResponse* /*response*/) {
  const absl::Time start = absl::Now();
  auto caller = Authenticate(deps_, ctx);
  absl::Status st = caller.status();
  const std::string id = request->request_id().substr(0, 64);
  if (st.ok() && request->request_id().empty()) st = absl::InvalidArgumentError("request_id is empty");
  if (st.ok()) {
    // The HTTP API's completion ids are the engine's request id behind OpenAI's prefixes.
    absl::string_view rid = request->request_id();
    if (!absl::ConsumePrefix(&rid, "chatcmpl-")) absl::ConsumePrefix(&rid, "cmpl-");
    const std::string engine_id(rid);
    engine::Engine* engine = deps_.requests->Find(engine_id, caller->tenant);
    if (engine != nullptr) {
      engine->Cancel(engine_id);
    } else {
      st = absl::NotFoundError(absl::StrCat("request_id ", id, " is not running (finished, or never existed)"));
    }
  }
  LogUnary("stop_generation", "", "", caller.ok() ? caller->tenant : "", st, start, ctx);
  return FinishUnary(deps_, ctx, st, "");
}

grpc::ServerUnaryReactor* RetainService::DeleteSession(grpc::CallbackServerContext* ctx,
                                                       const v1::DeleteSessionRequest* request,
                                                       v1::DeleteSessionResponse* /*response*/) {
  const absl::Time start = absl::Now();
  auto caller = Authenticate(deps_, ctx);
  std::string model;
  absl::Status st = caller.ok() ? DeleteOwnedSession(deps_, *caller, request->session_id(), &model) : caller.status();
  LogUnary("delete_session", model, request->session_id().substr(0, kMaxSessionIdBytes),
           caller.ok() ? caller->tenant : "", st, start, ctx);
  return FinishUnary(deps_, ctx, st, model);
}

grpc::ServerUnaryReactor* RetainService::ForkSession(grpc::CallbackServerContext* ctx,
                                                     const v1::ForkSessionRequest* request, v1::Session* response) {
  if (request->has_position())
    return StartRewindSession(deps_, ctx, request->session_id(), request->position(), /*fork=*/true, response);
  const absl::Time start = absl::Now();
  auto caller = Authenticate(deps_, ctx);
  std::string model, fork_id;
  absl::Status st = caller.status();
  if (st.ok()) {
    auto fork = ForkOwnedSession(deps_, *caller, request->session_id(), &model);
    if (fork.ok()) {
      fork_id = fork->second.id;
      FillSession(*fork->first, fork->second, response);
    }
    st = fork.status();
  }
  LogUnary("fork_session", model, absl::StrCat(request->session_id().substr(0, kMaxSessionIdBytes), "->", fork_id),
           caller.ok() ? caller->tenant : "", st, start, ctx);
  return FinishUnary(deps_, ctx, st, model);
}

grpc::ServerUnaryReactor* RetainService::RewindSession(grpc::CallbackServerContext* ctx,
                                                       const v1::RewindSessionRequest* request, v1::Session* response) {
  return StartRewindSession(deps_, ctx, request->session_id(), request->position(), /*fork=*/false, response);
}

grpc::ServerWriteReactor<v1::SessionChunk>* RetainService::ExportSession(grpc::CallbackServerContext* ctx,
                                                                         const v1::ExportSessionRequest* request) {
  return StartExportSession(deps_, ctx, request);
}

grpc::ServerReadReactor<v1::SessionChunk>* RetainService::ImportSession(grpc::CallbackServerContext* ctx,
                                                                        v1::Session* response) {
  return StartImportSession(deps_, ctx, response);
}

grpc::ServerUnaryReactor* RetainService::ListModels(grpc::CallbackServerContext* ctx,
                                                    const v1::ListModelsRequest* /*request*/,
                                                    v1::ListModelsResponse* response) {
  if (auto caller = Authenticate(deps_, ctx); !caller.ok()) return FinishUnary(deps_, ctx, caller.status(), "");
  for (const auto& m : deps_.registry->models()) {
    const engine::Engine& e = *m->engine;
    const engine::ModelConfig& c = m->engine->model().config();
    v1::Model* out = response->add_models();
    out->set_name(m->name);
    out->set_architecture(std::string(engine::ArchitectureName(c.arch)));
    out->set_vocab_size(c.vocab_size);
    out->set_n_layer(c.n_layer);
    out->set_n_embd(c.n_embd);
    out->set_state_bytes(static_cast<int64_t>(m->snapshot.state_bytes));
    out->set_weight_dtype(std::string(engine::DTypeName(c.weight_dtype)));
    out->set_backend(m->backend);
    out->set_tokenizer(e.tokenizer() != nullptr ? e.tokenizer()->name() : "");
    out->set_is_default(m->is_default);
    out->set_fingerprint(FingerprintHex(m->fingerprint));
  }
  return FinishUnary(deps_, ctx, absl::OkStatus(), "");
}

namespace {

// The named model's tokenizer, for Tokenize and Detokenize; FailedPrecondition when the model has
// none. *model is set once the model is found, so that an error can be counted against it.
absl::StatusOr<const engine::Tokenizer*> FindTokenizer(const ModelRegistry& registry, const std::string& name,
                                                       ServedModel** model) {
  auto m = registry.Find(name);
  if (!m.ok()) return m.status();
  *model = *m;
  const engine::Tokenizer* tok = (*m)->engine->tokenizer();
  if (tok == nullptr)
    return absl::FailedPreconditionError(absl::StrCat("model ", (*m)->name, " has no tokenizer (token ids only)"));
  return tok;
}

}  // namespace

grpc::ServerUnaryReactor* RetainService::Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* request,
                                                  v1::TokenizeResponse* response) {
  if (auto caller = Authenticate(deps_, ctx); !caller.ok()) return FinishUnary(deps_, ctx, caller.status(), "");
  ServedModel* m = nullptr;
  auto tok = FindTokenizer(*deps_.registry, request->model(), &m);
  if (!tok.ok()) return FinishUnary(deps_, ctx, tok.status(), m != nullptr ? m->name : "");
  for (engine::TokenId id : (*tok)->Encode(request->text())) response->add_ids(id);
  return FinishUnary(deps_, ctx, absl::OkStatus(), m->name);
}

grpc::ServerUnaryReactor* RetainService::Detokenize(grpc::CallbackServerContext* ctx,
                                                    const v1::DetokenizeRequest* request,
                                                    v1::DetokenizeResponse* response) {
  if (auto caller = Authenticate(deps_, ctx); !caller.ok()) return FinishUnary(deps_, ctx, caller.status(), "");
  ServedModel* m = nullptr;
  auto tok = FindTokenizer(*deps_.registry, request->model(), &m);
  if (!tok.ok()) return FinishUnary(deps_, ctx, tok.status(), m != nullptr ? m->name : "");
  absl::Status st = CheckTokenIds(absl::MakeConstSpan(request->ids().data(), request->ids_size()), "ids",
                                  std::min((*tok)->vocab_size(), m->engine->model().config().vocab_size));
  if (!st.ok()) return FinishUnary(deps_, ctx, st, m->name);
  // The same decoding as Generate's text: whole characters, invalid bytes as U+FFFD.
  engine::TextStream stream(*tok, {});
  std::string text;
  for (engine::TokenId id : request->ids()) {
    auto piece = stream.Push(id);
    if (!piece.ok()) return FinishUnary(deps_, ctx, piece.status(), m->name);
    text += piece->text;
  }
  text += stream.Flush();
  response->set_text(std::move(text));
  return FinishUnary(deps_, ctx, absl::OkStatus(), m->name);
}

}  // namespace retain::server
