// Generate: one ServerWriteReactor per stream, fed by the engine through a GenerateSink.
//
// Threads and lifetime. The engine holds the sink (shared_ptr) and calls it on its step thread;
// gRPC calls the reactor's reactions on its own threads. Both sides take the sink's mutex, which
// guards every field of the call. The reactor deletes itself in OnDone after clearing the sink's
// pointer to it under that mutex, so the sink never touches a reactor that is gone; a sink event
// arriving later finds no call and is dropped (OnToken then answers false, so the engine drops
// the token and the session keeps exactly the tokens that were sent).
//
// Writes. One write in flight at a time: an event either starts a write (nothing in flight) or
// waits in the queue; OnWriteDone starts the next. The engine's end of the request (Finished,
// deadline, error) becomes the call's final status, sent once the queue is empty.
//
// StartWrite and Finish are called with the mutex held. That is safe because gRPC runs the
// reactions of application reactors (OnWriteDone, OnDone) from its executor, never inline
// inside StartWrite/Finish.
#include <deque>
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/generate_prepare.h"
#include "server/grpc_status.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/request_owners.h"
#include "server/request_validation.h"
#include "server/service_calls.h"
#include "server/session_owners.h"
#include "server/tenants.h"

namespace retain::server {
namespace {

v1::Finished::Reason ProtoReason(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::kLength: return v1::Finished::LENGTH;
    case engine::FinishReason::kStop: return v1::Finished::STOP;
    case engine::FinishReason::kEos: return v1::Finished::EOS;
    case engine::FinishReason::kCancelled: return v1::Finished::CANCELLED;
    case engine::FinishReason::kDeadline: return v1::Finished::REASON_UNSPECIFIED;  // ends in DEADLINE_EXCEEDED
  }
  return v1::Finished::REASON_UNSPECIFIED;
}

class GenerateCall;

class CallSink final : public engine::GenerateSink {
 public:
  CallSink(GenerateCall* call, Metrics* metrics, std::string model, std::string tenant)
      : call_(call), metrics_(metrics), model_(std::move(model)), tenant_(std::move(tenant)) {}
  void OnStarted(const engine::StartedEvent& e) override;
  bool OnToken(engine::TokenEvent&& e) override;
  void OnFinished(const engine::FinishedEvent& e) override;
  void OnError(const absl::Status& status) override;

  std::mutex mu;               // guards call_ and every field of the call
  GenerateCall* call_ = nullptr;  // null once the reactor is done

 private:
  // Counted here, not in the call: a request finishing after its client went is counted too.
  Metrics* const metrics_;
  const std::string model_, tenant_;
};

class GenerateCall final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateCall(const ServiceDeps& deps, grpc::CallbackServerContext* ctx) : deps_(deps), ctx_(ctx) { deps_.calls->Enter(); }

  void Start(const v1::GenerateRequest& request);

  // Sink side, with sink_->mu held.
  void EngineStarted(const engine::StartedEvent& e);
  bool EngineToken(engine::TokenEvent&& e);
  void EngineFinished(const engine::FinishedEvent& e);
  void EngineError(const absl::Status& status);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void Reject(const absl::Status& status);  // before Submit; no sink, no lock needed
  void Enqueue(v1::GenerateResponse&& response);
  void StartNextWrite();
  void MaybeFinish();
  void End(const grpc::Status& status, const std::string& outcome, const engine::FinishedEvent* e);

  const ServiceDeps deps_;
  grpc::CallbackServerContext* const ctx_;
  const absl::Time start_ = absl::Now();
  ServedModel* model_ = nullptr;
  std::string session_id_;
  std::string tenant_;
  RequestPlace place_;  // the tenant's request place, held until the request ends (End)
  std::shared_ptr<CallSink> sink_;

  std::string request_id_;
  bool cancelled_ = false;  // client cancel or a failed write: no more writes
  std::deque<v1::GenerateResponse> queue_;
  v1::GenerateResponse writing_msg_;  // alive until its OnWriteDone
  bool writing_ = false;
  std::optional<grpc::Status> final_;
  bool finish_called_ = false;
};

void CallSink::OnStarted(const engine::StartedEvent& e) {
  std::lock_guard<std::mutex> l(mu);
  if (call_ != nullptr) call_->EngineStarted(e);
}
bool CallSink::OnToken(engine::TokenEvent&& e) {
  std::lock_guard<std::mutex> l(mu);
  return call_ != nullptr && call_->EngineToken(std::move(e));
}
void CallSink::OnFinished(const engine::FinishedEvent& e) {
  metrics_->RecordFinished(model_, tenant_, Protocol::kGrpc, e);
  std::lock_guard<std::mutex> l(mu);
  if (call_ != nullptr) call_->EngineFinished(e);
}
void CallSink::OnError(const absl::Status& status) {
  std::lock_guard<std::mutex> l(mu);
  if (call_ != nullptr) call_->EngineError(status);
}

void GenerateCall::Start(const v1::GenerateRequest& request) {
  auto caller = Authenticate(deps_, ctx_);
  if (!caller.ok()) return Reject(caller.status());
  tenant_ = caller->tenant;
  auto model = ResolveGenerateModel(deps_, *caller, request);
  if (!model.ok()) return Reject(model.status());
  session_id_ = request.session_id();  // checked by ResolveGenerateModel, so safe to log
  model_ = *model;
  engine::Engine& engine = *model_->engine;
  auto prepared = PrepareGenerate(deps_, *caller, *model_, request, CallDeadline(ctx_));
  if (!prepared.ok()) return Reject(prepared.status());
  place_ = std::move(prepared->place);

  sink_ = std::make_shared<CallSink>(this, deps_.metrics, model_->name, tenant_);
  auto id = engine.Submit(std::move(prepared->input), sink_);
  if (!id.ok()) {
    sink_->call_ = nullptr;  // the engine never calls a sink whose Submit failed
    return Reject(id.status());
  }
  bool cancel_now = false;
  {
    std::lock_guard<std::mutex> l(sink_->mu);
    request_id_ = *id;
    cancel_now = cancelled_;  // OnCancel came before the id was known
    // Under the lock End takes (from EngineFinished): a request that has already ended is never
    // registered, and one registered here is removed by End.
    if (!final_) deps_.requests->Add(request_id_, &engine, tenant_);
  }
  if (cancel_now) engine.Cancel(*id);
}

void GenerateCall::Reject(const absl::Status& status) {
  End(ToGrpcStatus(status), StatusCodeLabel(status.code()), nullptr);
  finish_called_ = true;
  Finish(ToGrpcStatus(status));
}

void GenerateCall::EngineStarted(const engine::StartedEvent& e) {
  // Under the sink's lock, as in Start: a short request can start (and finish) before Submit
  // has returned its id there, and the log line must still name it.
  request_id_ = e.request_id;
  v1::GenerateResponse r;
  v1::Started* s = r.mutable_started();
  s->set_request_id(e.request_id);
  s->set_session_id(e.session_id);
  s->set_model(model_->name);
  s->set_prompt_tokens(e.prompt_tokens);
  s->set_position_before(e.position_before);
  Enqueue(std::move(r));
}

bool GenerateCall::EngineToken(engine::TokenEvent&& e) {
  if (cancelled_) return false;
  v1::GenerateResponse r;
  v1::Token* t = r.mutable_token();
  t->set_id(e.id);
  t->set_text(std::move(e.text));
  t->set_logprob(e.logprob);
  const engine::Tokenizer* tok = model_->engine->tokenizer();
  for (const auto& [id, logprob] : e.top_logprobs) {
    v1::TopLogprob* alt = t->add_top_logprobs();
    alt->set_id(id);
    alt->set_logprob(logprob);
    alt->set_text(AlternativeText(tok, id));
  }
  Enqueue(std::move(r));
  return true;
}

void GenerateCall::EngineFinished(const engine::FinishedEvent& e) {
  if (e.reason == engine::FinishReason::kDeadline) {
    End(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                     absl::StrCat("deadline passed after ", e.generated_tokens, " generated tokens; the session is at ",
                                  e.position)),
        "deadline", &e);
  } else if (e.reason == engine::FinishReason::kCancelled && cancelled_) {
    End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"), "cancelled", &e);
  } else {
    v1::GenerateResponse r;
    v1::Finished* f = r.mutable_finished();
    f->set_reason(ProtoReason(e.reason));
    f->set_stop(e.stop);
    if (e.stop_token_id >= 0) f->set_stop_token_id(e.stop_token_id);
    v1::Usage* u = f->mutable_usage();
    u->set_prompt_tokens(e.prompt_tokens);
    u->set_generated_tokens(e.generated_tokens);
    u->set_time_to_first_token_seconds(e.time_to_first_token_seconds);
    u->set_total_seconds(e.total_seconds);
    u->set_queue_seconds(e.queue_seconds);
    u->set_cached_tokens(e.cached_tokens);
    f->set_position(e.position);
    f->set_text_tail(e.text_tail);
    Enqueue(std::move(r));
    End(grpc::Status::OK, engine::FinishReasonName(e.reason), &e);
  }
  MaybeFinish();
}

void GenerateCall::EngineError(const absl::Status& status) {
  End(ToGrpcStatus(status), StatusCodeLabel(status.code()), nullptr);
  MaybeFinish();
}

// Records the call's outcome once: final status, error metric, the request's log line.
void GenerateCall::End(const grpc::Status& status, const std::string& outcome, const engine::FinishedEvent* e) {
  // The engine is done with the request, so its place is free, before the log line says it ended.
  place_ = RequestPlace();
  if (!request_id_.empty()) deps_.requests->Remove(request_id_);
  final_ = status;
  if (!status.ok())
    deps_.metrics->RecordError(model_ != nullptr ? model_->name : "", static_cast<absl::StatusCode>(status.error_code()));
  std::string line = absl::StrCat("generate ", request_id_.empty() ? "-" : request_id_,
                                  " model=", model_ != nullptr ? model_->name : "-",
                                  " session=", session_id_.empty() ? "-" : session_id_,
                                  tenant_.empty() ? "" : absl::StrCat(" tenant=", tenant_), " outcome=", outcome);
  if (e != nullptr) {
    absl::StrAppend(&line, " prompt=", e->prompt_tokens, " generated=", e->generated_tokens, " position=", e->position,
                    absl::StrFormat(" queue=%.3fs ttft=%.3fs total=%.3fs", e->queue_seconds,
                                    e->time_to_first_token_seconds, e->total_seconds));
  } else {
    absl::StrAppend(&line, absl::StrFormat(" total=%.3fs", absl::ToDoubleSeconds(absl::Now() - start_)));
  }
  if (!status.ok()) absl::StrAppend(&line, " error=\"", status.error_message(), "\"");
  absl::StrAppend(&line, " peer=", Peer(ctx_));
  LogLine(line);
}

void GenerateCall::Enqueue(v1::GenerateResponse&& response) {
  if (cancelled_ || finish_called_) return;
  queue_.push_back(std::move(response));
  if (!writing_) StartNextWrite();
}

void GenerateCall::StartNextWrite() {
  writing_msg_ = std::move(queue_.front());
  queue_.pop_front();
  writing_ = true;
  StartWrite(&writing_msg_);
}

void GenerateCall::MaybeFinish() {
  if (!final_ || writing_ || !queue_.empty() || finish_called_) return;
  finish_called_ = true;
  Finish(*final_);
}

void GenerateCall::OnWriteDone(bool ok) {
  std::string cancel_id;
  {
    std::lock_guard<std::mutex> l(sink_->mu);
    writing_ = false;
    if (!ok && !cancelled_) {  // the stream broke: stop writing and end the request
      cancelled_ = true;
      queue_.clear();
      if (!final_) cancel_id = request_id_;
    }
    if (!queue_.empty()) {
      StartNextWrite();
    } else {
      MaybeFinish();
    }
  }
  if (!cancel_id.empty()) model_->engine->Cancel(cancel_id);
}

void GenerateCall::OnCancel() {
  if (sink_ == nullptr) return;  // rejected before Submit: already finished
  std::string cancel_id;
  {
    std::lock_guard<std::mutex> l(sink_->mu);
    if (cancelled_) return;
    cancelled_ = true;
    queue_.clear();
    if (!final_) cancel_id = request_id_;
    MaybeFinish();
  }
  if (!cancel_id.empty()) model_->engine->Cancel(cancel_id);
}

void GenerateCall::OnDone() {
  if (sink_ != nullptr) {
    std::lock_guard<std::mutex> l(sink_->mu);
    sink_->call_ = nullptr;
  }
  CallTracker* calls = deps_.calls;
  delete this;
  calls->Exit();
}

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* StartGenerate(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                                              const v1::GenerateRequest* request) {
  auto* call = new GenerateCall(deps, ctx);
  call->Start(*request);
  return call;
}

}  // namespace retain::server
