// The session RPCs that need their own reactors: CreateSession (a prefix is prefilled through the
// engine before the call returns), ExportSession (the snapshot streamed in chunks) and
// ImportSession (chunks read, bounded, then checked and handed to the engine). Same lifetime rule
// as generate_call.cc: a reactor deletes itself in OnDone, and an engine sink that may outlive it
// reaches it only through a mutex-guarded pointer cleared there.
#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/grpc_status.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/request_validation.h"
#include "server/service_calls.h"
#include "server/session_owners.h"
#include "server/session_snapshot.h"
#include "server/tenants.h"

namespace retain::server {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;  // the proto's limit for SessionChunk.data

void LogCall(const char* rpc, const std::string& model, const std::string& session, const absl::Status& status,
             absl::Time start, const std::string& extra, const grpc::CallbackServerContext* ctx) {
  std::string line = absl::StrCat(rpc, " model=", model.empty() ? "-" : model, " session=", session.empty() ? "-" : session,
                                  " outcome=", status.ok() ? "ok" : StatusCodeLabel(status.code()), extra,
                                  absl::StrFormat(" total=%.3fs", absl::ToDoubleSeconds(absl::Now() - start)));
  if (!status.ok()) absl::StrAppend(&line, " error=\"", status.message(), "\"");
  absl::StrAppend(&line, " peer=", Peer(ctx));
  LogLine(line);
}

// ---- CreateSession ------------------------------------------------------------------------

class CreateSessionCall final : public PrefillCall {
 public:
  CreateSessionCall(const ServiceDeps& deps, grpc::CallbackServerContext* ctx, v1::Session* response)
      : PrefillCall(deps), ctx_(ctx), response_(response) {}

  void Start(const v1::CreateSessionRequest& request) {
    auto caller = Authenticate(deps_, ctx_);
    if (!caller.ok()) return Done(caller.status(), "");
    tenant_ = caller->tenant;
    auto m = deps_.registry->Find(request.model());
    if (!m.ok()) return Done(m.status(), "");
    model_ = *m;
    engine::Engine& engine = *model_->engine;
    ValidationContext vc{&engine.options(), engine.model().config().vocab_size, engine.tokenizer()};
    auto prefix = ValidateSessionPrefix(request, vc);
    if (!prefix.ok()) return Done(prefix.status(), "");
    auto place = TakeRequestPlace(*caller);
    if (!place.ok()) return Done(place.status(), "");
    place_ = *std::move(place);
    auto info = deps_.owners->Add(*caller, *model_, [&] { return engine.CreateSession(); });
    if (!info.ok()) return Done(info.status(), "");
    session_id_ = info->id;
    if (prefix->empty()) {
      FillSession(*model_, *info, response_);
      return Done(absl::OkStatus(), "");
    }
    engine::GenerateInput in;
    in.session_id = session_id_;
    in.prompt = *std::move(prefix);
    in.max_tokens = 0;  // prefill only
    in.sampling.temperature = 0;
    in.deadline = CallDeadline(ctx_);
    in.cache_namespace = CacheNamespace(deps_, tenant_);
    sink_ = std::make_shared<PrefillSink>(deps_.metrics, model_->name, tenant_);
    sink_->call = this;
    auto id = engine.Submit(std::move(in), sink_);
    if (!id.ok()) {
      sink_->call = nullptr;
      (void)engine.DeleteSession(session_id_);
      deps_.owners->Remove(session_id_);
      return Done(id.status(), "");
    }
    std::lock_guard<std::mutex> l(sink_->mu);
    request_id_ = *id;
  }

  // With sink_->mu held.
  void Prefilled(const engine::FinishedEvent& e) override {
    engine::Engine& engine = *model_->engine;
    if (e.reason == engine::FinishReason::kLength) {
      auto info = engine.GetSession(session_id_);
      if (info.ok()) {
        FillSession(*model_, *info, response_);
        return DoneAfterPrefill(absl::OkStatus(), e);
      }
      return DoneAfterPrefill(info.status(), e);
    }
    (void)engine.DeleteSession(session_id_);  // a half-made session is never handed out
    deps_.owners->Remove(session_id_);
    if (e.reason == engine::FinishReason::kDeadline)
      return DoneAfterPrefill(absl::DeadlineExceededError("deadline passed while the prefix was prefilled"), e);
    return DoneAfterPrefill(absl::CancelledError("cancelled while the prefix was prefilled"), e);
  }
  void Failed(const absl::Status& status) override {
    (void)model_->engine->DeleteSession(session_id_);
    deps_.owners->Remove(session_id_);
    Done(status, "");
  }

 private:
  void DoneAfterPrefill(const absl::Status& status, const engine::FinishedEvent& e) {
    Done(status, absl::StrCat(" prefix=", e.prompt_tokens, absl::StrFormat(" queue=%.3fs", e.queue_seconds)));
  }
  void Done(const absl::Status& status, const std::string& extra) {
    place_ = RequestPlace();  // free before the log line says the call ended
    Finish(EndCall(deps_, "create_session", model_, status.ok() ? session_id_ : "", status, start_,
                   TenantField(tenant_) + extra, ctx_));
  }

  grpc::CallbackServerContext* const ctx_;
  v1::Session* const response_;
  const absl::Time start_ = absl::Now();
  std::string session_id_;
  std::string tenant_;
  RequestPlace place_;
};

// ---- ExportSession ------------------------------------------------------------------------

class ExportCall final : public grpc::ServerWriteReactor<v1::SessionChunk> {
 public:
  ExportCall(const ServiceDeps& deps, grpc::CallbackServerContext* ctx) : deps_(deps), ctx_(ctx) { deps_.calls->Enter(); }

  void Start(const v1::ExportSessionRequest& request) {
    auto caller = Authenticate(deps_, ctx_);
    if (!caller.ok()) return Done(caller.status());
    tenant_ = caller->tenant;
    absl::Status st = CheckSessionId(request.session_id(), "session_id");
    if (!st.ok()) return Done(st);
    session_id_ = request.session_id();
    auto owner = deps_.owners->Find(*caller, session_id_);
    if (!owner.ok()) return Done(owner.status());
    model_ = owner->first;
    auto snapshot = model_->engine->ExportSession(session_id_);
    if (!snapshot.ok()) return Done(snapshot.status());
    bytes_ = EncodeSessionSnapshot(model_->snapshot, *snapshot);
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Done(absl::CancelledError("the client went away during the export"));
    if (offset_ == bytes_.size()) return Done(absl::OkStatus());
    WriteNext();
  }
  void OnDone() override {
    CallTracker* calls = deps_.calls;
    delete this;
    calls->Exit();
  }

 private:
  void WriteNext() {
    const size_t n = std::min(kChunkBytes, bytes_.size() - offset_);
    chunk_.set_data(bytes_.data() + offset_, n);
    offset_ += n;
    StartWrite(&chunk_);
  }
  void Done(const absl::Status& status) {
    Finish(EndCall(deps_, "export_session", model_, session_id_, status, start_,
                   absl::StrCat(TenantField(tenant_), " bytes=", bytes_.size()), ctx_));
  }

  const ServiceDeps deps_;
  grpc::CallbackServerContext* const ctx_;
  const absl::Time start_ = absl::Now();
  ServedModel* model_ = nullptr;
  std::string session_id_;
  std::string tenant_;
  std::string bytes_;
  size_t offset_ = 0;
  v1::SessionChunk chunk_;
};

// ---- ImportSession ------------------------------------------------------------------------

class ImportCall final : public grpc::ServerReadReactor<v1::SessionChunk> {
 public:
  ImportCall(const ServiceDeps& deps, grpc::CallbackServerContext* ctx, v1::Session* response)
      : deps_(deps), ctx_(ctx), response_(response) {
    deps_.calls->Enter();
    auto caller = Authenticate(deps_, ctx_);
    if (!caller.ok()) {
      Done(caller.status());
      return;
    }
    caller_ = *std::move(caller);
    // Until the header names the model, the bound is the largest any served model accepts.
    for (const auto& m : deps_.registry->models()) limit_ = std::max(limit_, MaxSnapshotBytes(m->snapshot));
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return Complete();  // the client closed its side: the bytes are all here
    if (chunk_.data().size() > kChunkBytes)
      return Done(absl::InvalidArgumentError(absl::StrCat("data: a chunk of ", chunk_.data().size(),
                                                          " bytes is over the 1 MiB (1048576) limit")));
    bytes_ += chunk_.data();
    if (model_ == nullptr && bytes_.size() >= kSnapshotHeaderMaxBytes) {
      absl::Status st = PickModel();
      if (!st.ok()) return Done(st);
    }
    if (bytes_.size() > limit_)
      return Done(absl::InvalidArgumentError(absl::StrCat("data: ", bytes_.size(), " bytes so far, over the ", limit_,
                                                          " a session snapshot of ",
                                                          model_ != nullptr ? model_->name : "any served model",
                                                          " can take")));
    StartRead(&chunk_);
  }
  void OnDone() override {
    CallTracker* calls = deps_.calls;
    delete this;
    calls->Exit();
  }

 private:
  absl::Status PickModel() {
    auto header = ParseSnapshotHeader(bytes_);
    if (!header.ok()) return header.status();
    auto m = deps_.registry->FindByFingerprint(header->model.fingerprint);
    if (!m.ok()) return m.status();
    model_ = *m;
    limit_ = MaxSnapshotBytes(model_->snapshot);
    return absl::OkStatus();
  }

  void Complete() {
    if (model_ == nullptr) {
      absl::Status st = PickModel();
      if (!st.ok()) return Done(st);
    }
    auto snapshot = DecodeSessionSnapshot(bytes_, model_->snapshot);
    if (!snapshot.ok()) return Done(snapshot.status());
    ServedModel* m = model_;
    auto info = deps_.owners->Add(caller_, *m, [&] { return m->engine->ImportSession(*snapshot); });
    if (!info.ok()) return Done(info.status());
    session_id_ = info->id;
    FillSession(*model_, *info, response_);
    Done(absl::OkStatus());
  }

  void Done(const absl::Status& status) {
    Finish(EndCall(deps_, "import_session", model_, session_id_, status, start_,
                   absl::StrCat(TenantField(caller_.tenant), " bytes=", bytes_.size()), ctx_));
  }

  const ServiceDeps deps_;
  grpc::CallbackServerContext* const ctx_;
  v1::Session* const response_;
  const absl::Time start_ = absl::Now();
  ServedModel* model_ = nullptr;
  std::string session_id_;
  std::string bytes_;
  uint64_t limit_ = 0;
  v1::SessionChunk chunk_;
  Caller caller_;  // the importer, who owns the imported session
};

}  // namespace

grpc::Status EndCall(const ServiceDeps& deps, const char* rpc, const ServedModel* model, const std::string& session,
                     const absl::Status& status, absl::Time start, const std::string& extra,
                     const grpc::CallbackServerContext* ctx) {
  const std::string name = model != nullptr ? model->name : "";
  if (!status.ok()) deps.metrics->RecordError(name, status.code());
  LogCall(rpc, name, session, status, start, extra, ctx);
  return ToGrpcStatus(status);
}

void PrefillCall::OnCancel() {
  if (sink_ == nullptr) return;
  std::string id;
  {
    std::lock_guard<std::mutex> l(sink_->mu);
    id = request_id_;
  }
  if (!id.empty()) model_->engine->Cancel(id);
}

void PrefillCall::OnDone() {
  if (sink_ != nullptr) {
    std::lock_guard<std::mutex> l(sink_->mu);
    sink_->call = nullptr;
  }
  CallTracker* calls = deps_.calls;
  delete this;
  calls->Exit();
}

void PrefillSink::OnFinished(const engine::FinishedEvent& e) {
  metrics_->RecordFinished(model_, tenant_, Protocol::kGrpc, e);
  std::lock_guard<std::mutex> l(mu);
  if (call != nullptr) call->Prefilled(e);
}
void PrefillSink::OnError(const absl::Status& status) {
  std::lock_guard<std::mutex> l(mu);
  if (call != nullptr) call->Failed(status);
}

grpc::ServerUnaryReactor* StartCreateSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                             const v1::CreateSessionRequest* request, v1::Session* response) {
  auto* call = new CreateSessionCall(deps, ctx, response);
  call->Start(*request);
  return call;
}

grpc::ServerWriteReactor<v1::SessionChunk>* StartExportSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                                               const v1::ExportSessionRequest* request) {
  auto* call = new ExportCall(deps, ctx);
  call->Start(*request);
  return call;
}

grpc::ServerReadReactor<v1::SessionChunk>* StartImportSession(const ServiceDeps& deps, grpc::CallbackServerContext* ctx,
                                                              v1::Session* response) {
  return new ImportCall(deps, ctx, response);
}

}  // namespace retain::server
