// retain.v1.Retain on gRPC's callback API: a thin adapter over the model registry's engines.
// Every call first authenticates its tenant (tenants.h) and sees only that tenant's sessions
// (session_owners.h). Streaming calls have their own reactors (generate_call.cc, session_calls.cc); the unary ones
// run on the gRPC thread and finish at once. Every error goes through ToGrpcStatus and is
// counted in retain_request_errors_total. Thread-safe; its only state is which requests run.
#pragma once

#include "retain/v1/retain.grpc.pb.h"
#include "server/request_owners.h"
#include "server/service_calls.h"

namespace retain::server {

class RetainService final : public v1::Retain::CallbackService {
 public:
  // Both outlive the service and the gRPC server it is registered with.
  RetainService(ModelRegistry* registry, Metrics* metrics, const Tenants* tenants, SessionOwners* owners,
                bool prefix_cache_shared = false)
      : deps_{registry, metrics, &calls_, tenants, owners, &requests_, prefix_cache_shared} {}

  // True once every streaming call (and CreateSession prefill) has ended, waiting at most `timeout`.
  bool WaitForCalls(absl::Duration timeout) { return calls_.WaitIdle(timeout); }
  // What the calls share, for the HTTP front-end to serve through the same pieces.
  const ServiceDeps& deps() const { return deps_; }

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* StopGeneration(grpc::CallbackServerContext* ctx, const v1::StopGenerationRequest* request,
                                           v1::StopGenerationResponse* response) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* ctx, const v1::CreateSessionRequest* request,
                                          v1::Session* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* ctx, const v1::GetSessionRequest* request,
                                       v1::Session* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx, const v1::ListSessionsRequest* request,
                                         v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteSession(grpc::CallbackServerContext* ctx, const v1::DeleteSessionRequest* request,
                                          v1::DeleteSessionResponse* response) override;
  grpc::ServerUnaryReactor* ForkSession(grpc::CallbackServerContext* ctx, const v1::ForkSessionRequest* request,
                                        v1::Session* response) override;
  grpc::ServerUnaryReactor* RewindSession(grpc::CallbackServerContext* ctx, const v1::RewindSessionRequest* request,
                                          v1::Session* response) override;
  grpc::ServerWriteReactor<v1::SessionChunk>* ExportSession(grpc::CallbackServerContext* ctx,
                                                            const v1::ExportSessionRequest* request) override;
  grpc::ServerReadReactor<v1::SessionChunk>* ImportSession(grpc::CallbackServerContext* ctx,
                                                           v1::Session* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx, const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx, const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;

 private:
  CallTracker calls_;
  RequestOwners requests_;
  const ServiceDeps deps_;
};

}  // namespace retain::server
