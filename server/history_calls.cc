// RewindSession, and ForkSession with a position (a fork rewound before it is handed out): the
// engine restores the nearest checkpoint at once and re-reads the tokens after it with a
// prefill-only request, whose end finishes the call. Same lifetime rule as session_calls.cc.
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/model_registry.h"
#include "server/request_validation.h"
#include "server/service_calls.h"
#include "server/session_owners.h"
#include "server/tenants.h"

namespace retain::server {
namespace {

class RewindCall final : public PrefillCall {
 public:
  RewindCall(const ServiceDeps& deps, grpc::CallbackServerContext* ctx, bool fork, v1::Session* response)
      : PrefillCall(deps), ctx_(ctx), fork_(fork), response_(response) {}

  void Start(const std::string& session_id, int64_t position) {
    position_ = position;
    auto caller = Authenticate(deps_, ctx_);
    if (!caller.ok()) return Done(caller.status());
    tenant_ = caller->tenant;
    absl::Status st = CheckSessionId(session_id, "session_id");
    if (!st.ok()) return Done(st);
    source_ = session_id;
    auto owner = deps_.owners->Find(*caller, session_id);
    if (!owner.ok()) return Done(owner.status());
    model_ = owner->first;
    engine::Engine& engine = *model_->engine;
    auto place = TakeRequestPlace(*caller);
    if (!place.ok()) return Done(place.status());
    place_ = *std::move(place);
    target_ = session_id;
    if (fork_) {
      auto info = deps_.owners->Add(*caller, *model_, [&] { return engine.ForkSession(session_id); });
      if (!info.ok()) return Done(info.status());
      target_ = info->id;
    }
    sink_ = std::make_shared<PrefillSink>(deps_.metrics, model_->name, tenant_);
    sink_->call = this;
    auto id = engine.RewindSession(target_, position, CallDeadline(ctx_), sink_);
    if (!id.ok()) {
      sink_->call = nullptr;  // the engine never calls a sink it refused
      DropFork();
      return Done(id.status());
    }
    std::lock_guard<std::mutex> l(sink_->mu);
    request_id_ = *id;
  }

  // With sink_->mu held.
  void Prefilled(const engine::FinishedEvent& e) override {
    refed_ = e.prompt_tokens;
    if (e.reason == engine::FinishReason::kLength) {
      auto info = model_->engine->GetSession(target_);
      if (info.ok()) FillSession(*model_, *info, response_);
      return Done(info.status());
    }
    DropFork();
    // The session stays consistent: it holds exactly the tokens re-read so far.
    const std::string where = fork_ ? "" : absl::StrCat("; the session is at position ", e.position, ", not ", position_);
    if (e.reason == engine::FinishReason::kDeadline)
      return Done(absl::DeadlineExceededError(absl::StrCat("deadline passed while the rewind re-read its tokens", where)));
    Done(absl::CancelledError(absl::StrCat("cancelled while the rewind re-read its tokens", where)));
  }
  void Failed(const absl::Status& status) override {
    DropFork();
    Done(status);
  }

 private:
  // A fork that could not be rewound is never handed out.
  void DropFork() {
    if (!fork_ || target_ == source_) return;
    (void)model_->engine->DeleteSession(target_);
    deps_.owners->Remove(target_);
  }
  void Done(const absl::Status& status) {
    place_ = RequestPlace();
    const std::string session = fork_ ? absl::StrCat(source_.substr(0, kMaxSessionIdBytes), "->", status.ok() ? target_ : "")
                                      : source_.substr(0, kMaxSessionIdBytes);
    Finish(EndCall(deps_, fork_ ? "fork_session" : "rewind_session", model_, session, status, start_,
                   absl::StrCat(TenantField(tenant_), " position=", position_, " refed=", refed_), ctx_));
  }

  grpc::CallbackServerContext* const ctx_;
  const bool fork_;
  v1::Session* const response_;
  const absl::Time start_ = absl::Now();
  std::string source_, target_, tenant_;
  int64_t position_ = 0;
  int refed_ = 0;
  RequestPlace place_;
};

}  // namespace

grpc::ServerUnaryReactor* StartRewindSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                             const std::string& session_id, int64_t position, bool fork,
                                             v1::Session* response) {
  auto* call = new RewindCall(deps, ctx, fork, response);
  call->Start(session_id, position);
  return call;
}

}  // namespace retain::server
