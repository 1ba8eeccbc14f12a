#include "server/http/http_generation.h"

#include "server/metrics.h"
#include "server/request_owners.h"

namespace retain::server {

HttpGeneration::HttpGeneration(Metrics* metrics, std::string model, std::string tenant, RequestPlace place,
                               std::function<void()> release)
    : metrics_(metrics),
      model_(std::move(model)),
      tenant_(std::move(tenant)),
      place_(std::move(place)),
      release_(std::move(release)) {}

HttpGeneration::~HttpGeneration() {
  std::lock_guard<std::mutex> l(mu_);
  ReleaseLocked();
}

void HttpGeneration::ReleaseLocked() {
  ended_ = true;
  if (owners_ != nullptr) {
    owners_->Remove(request_id_);
    owners_ = nullptr;
  }
  place_ = RequestPlace();
  if (release_) {
    release_();
    release_ = nullptr;
  }
}

void HttpGeneration::Push(Event e) {
  events_.push_back(std::move(e));
  cv_.notify_all();
}

void HttpGeneration::OnStarted(const engine::StartedEvent& e) {
  std::lock_guard<std::mutex> l(mu_);
  Event ev;
  ev.started = e;
  Push(std::move(ev));
}

bool HttpGeneration::OnToken(engine::TokenEvent&& e) {
  std::lock_guard<std::mutex> l(mu_);
  if (abandoned_) return false;
  Event ev;
  ev.token = std::move(e);
  Push(std::move(ev));
  return true;
}

void HttpGeneration::OnFinished(const engine::FinishedEvent& e) {
  // Counted here, not by the writer: a request that ends after its client went is counted too.
  metrics_->RecordFinished(model_, tenant_, Protocol::kHttp, e);
  std::lock_guard<std::mutex> l(mu_);
  ReleaseLocked();
  Event ev;
  ev.finished = e;
  Push(std::move(ev));
}

void HttpGeneration::OnError(const absl::Status& status) {
  std::lock_guard<std::mutex> l(mu_);
  ReleaseLocked();
  Event ev;
  ev.error = status;
  Push(std::move(ev));
}

std::deque<HttpGeneration::Event> HttpGeneration::Take(absl::Duration timeout) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, absl::ToChronoNanoseconds(timeout), [&] { return !events_.empty(); });
  std::deque<Event> out;
  out.swap(events_);
  return out;
}

void HttpGeneration::Abandon() {
  std::lock_guard<std::mutex> l(mu_);
  abandoned_ = true;
}

void HttpGeneration::Register(RequestOwners* owners, const std::string& id, engine::Engine* engine) {
  std::lock_guard<std::mutex> l(mu_);
  if (ended_) return;
  owners->Add(id, engine, tenant_);
  owners_ = owners;
  request_id_ = id;
}

void HttpGeneration::ReleaseUnsubmitted() {
  std::lock_guard<std::mutex> l(mu_);
  ReleaseLocked();
}

}  // namespace retain::server
