// One HTTP completion's link to the engine: the engine's GenerateSink on one side (called on the
// step thread), a blocking Take() on the other (the HTTP worker thread that writes the response).
//
// Bounded: the events queued are at most the request's max_tokens plus two. When the client is
// gone (a failed write), Abandon() makes OnToken refuse further tokens, so the engine stops and
// the session keeps exactly the tokens handed over, as over gRPC. The tenant's request place and
// the front-end's generation slot are released when the engine ends the request, not when the
// response is written, so they bound the engine's work.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "retain/engine/serving.h"
#include "server/tenants.h"

namespace retain::server {

class Metrics;
class RequestOwners;

class HttpGeneration final : public engine::GenerateSink {
 public:
  struct Event {
    std::optional<engine::TokenEvent> token;
    std::optional<engine::FinishedEvent> finished;
    std::optional<absl::Status> error;
    std::optional<engine::StartedEvent> started;
  };

  // `release` runs once, when the engine ends the request (frees the front-end's slot).
  HttpGeneration(Metrics* metrics, std::string model, std::string tenant, RequestPlace place,
                 std::function<void()> release);
  ~HttpGeneration() override;

  void OnStarted(const engine::StartedEvent& e) override;
  bool OnToken(engine::TokenEvent&& e) override;
  void OnFinished(const engine::FinishedEvent& e) override;
  void OnError(const absl::Status& status) override;

  // The events since the last Take, waiting up to `timeout` for one; empty on timeout.
  std::deque<Event> Take(absl::Duration timeout);
  // The client went away: every later token is refused (the engine then ends the request).
  void Abandon();
  // Submit failed: the engine will never call this sink, so release now.
  void ReleaseUnsubmitted();
  // Submit gave the request `id`: lists it in `owners` (so StopGeneration reaches it) until the
  // engine ends it; a request that has ended already is never listed.
  void Register(RequestOwners* owners, const std::string& id, engine::Engine* engine);

 private:
  void Push(Event e);
  void ReleaseLocked();

  Metrics* const metrics_;
  const std::string model_, tenant_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  bool abandoned_ = false;
  RequestPlace place_;
  std::function<void()> release_;
  bool ended_ = false;
  RequestOwners* owners_ = nullptr;  // set while listed there under request_id_
  std::string request_id_;
};

}  // namespace retain::server
