// Internal to retain_service*.cc: the reactors behind retain.v1.Retain, one file per kind of
// call so each heavy gRPC translation unit stays small (generate_call.cc, session_calls.cc).
// Includes the generated gRPC header: never include it from a header outside server/.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "retain/v1/retain.grpc.pb.h"
#include "retain/engine/serving.h"
#include "server/service_deps.h"

namespace retain::server {

// The call's tenant from its `authorization` metadata; Unauthenticated when tenants are on and
// the token is missing or unknown.
absl::StatusOr<Caller> Authenticate(const ServiceDeps& deps, const grpc::CallbackServerContext* ctx);

grpc::ServerWriteReactor<v1::GenerateResponse>* StartGenerate(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                                              const v1::GenerateRequest* request);
grpc::ServerUnaryReactor* StartCreateSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                             const v1::CreateSessionRequest* request, v1::Session* response);
grpc::ServerWriteReactor<v1::SessionChunk>* StartExportSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                                               const v1::ExportSessionRequest* request);
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
