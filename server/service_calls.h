// Internal to retain_service*.cc: the reactors behind retain.v1.Retain, one file per kind of
// call so each heavy gRPC translation unit stays small (generate_call.cc, session_calls.cc).
// Includes the generated gRPC header: never include it from a header outside server/.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "retain/v1/retain.grpc.pb.h"
#include "retain/engine/serving.h"
#include "server/service_deps.h"

namespace retain::server {

class PrefillCall;

// The engine sink of a prefill-only request: counts it in the metrics and hands its end to the
// waiting reactor, reached only through `call` under `mu` (cleared in the reactor's OnDone, as
// the sink may outlive it).
class PrefillSink final : public engine::GenerateSink {
 public:
  PrefillSink(Metrics* metrics, std::string model, std::string tenant)
      : metrics_(metrics), model_(std::move(model)), tenant_(std::move(tenant)) {}
  void OnStarted(const engine::StartedEvent&) override {}
  bool OnToken(engine::TokenEvent&&) override { return false; }  // max_tokens 0: never called
  void OnFinished(const engine::FinishedEvent& e) override;
  void OnError(const absl::Status& status) override;

  std::mutex mu;
  PrefillCall* call = nullptr;  // null once the reactor is done

 private:
  Metrics* const metrics_;
  const std::string model_, tenant_;
};

// A unary reactor waiting for an engine prefill-only request (CreateSession's prefix, a rewind's
// re-read tokens), whose end reaches it through sink_. A client that goes away cancels the
// request; OnDone unhooks the sink (which may outlive the reactor) and deletes the reactor.
class PrefillCall : public grpc::ServerUnaryReactor {
 public:
  // Both with sink_->mu held.
  virtual void Prefilled(const engine::FinishedEvent& e) = 0;
  virtual void Failed(const absl::Status& status) = 0;
  void OnCancel() override;
  void OnDone() override;

 protected:
  explicit PrefillCall(const ServiceDeps& deps) : deps_(deps) { deps_.calls->Enter(); }
  ~PrefillCall() override = default;

  const ServiceDeps deps_;
  ServedModel* model_ = nullptr;
  std::shared_ptr<PrefillSink> sink_;
  std::string request_id_;  // under sink_->mu
};

// The call's tenant from its `authorization` metadata; Unauthenticated when tenants are on and
// the token is missing or unknown.
absl::StatusOr<Caller> Authenticate(const ServiceDeps& deps, const grpc::CallbackServerContext* ctx);

grpc::ServerWriteReactor<v1::GenerateResponse>* StartGenerate(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                                              const v1::GenerateRequest* request);
grpc::ServerUnaryReactor* StartCreateSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                             const v1::CreateSessionRequest* request, v1::Session* response);
grpc::ServerWriteReactor<v1::SessionChunk>* StartExportSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                                               const v1::ExportSessionRequest* request);
// The end of a reactor's call (session_calls.cc): an error counted against its model (none while
// it is unknown) and the log line; the status to finish with.
grpc::Status EndCall(const ServiceDeps& deps, const char* rpc, const ServedModel* model, const std::string& session,
                     const absl::Status& status, absl::Time start, const std::string& extra,
                     const grpc::CallbackServerContext* ctx);

// history_calls.cc: RewindSession, and ForkSession with a position.
grpc::ServerUnaryReactor* StartRewindSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                             const std::string& session_id, int64_t position, bool fork,
                                             v1::Session* response);
grpc::ServerReadReactor<v1::SessionChunk>* StartImportSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                                              v1::Session* response);

// Shared helpers (retain_service.cc).
void FillSession(const ServedModel& model, const engine::SessionInfo& info, v1::Session* out);
// Finishes a unary call through the context's default reactor, counting an error in the
// metrics under `model` ("" when none was resolved).
grpc::ServerUnaryReactor* FinishUnary(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                      const absl::Status& status, const std::string& model);
// The call's deadline as absl time (InfiniteFuture when the client set none).
absl::Time CallDeadline(const grpc::CallbackServerContext* ctx);
// " tenant=NAME" for a log line, "" for the anonymous tenant (no --auth-tokens).
inline std::string TenantField(const std::string& tenant) { return tenant.empty() ? "" : " tenant=" + tenant; }
// The client's address for log lines ("ipv4:127.0.0.1:53122").
std::string Peer(const grpc::CallbackServerContext* ctx);

}  // namespace retain::server
