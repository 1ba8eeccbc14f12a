// Driving the serving engine in tests: a sink that records a request's stream, the engine on the
// shipped default model, and greedy requests run to their end.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "retain/engine/serving.h"
#include "tests/testing/direct_greedy.h"
#include "tests/testing/paths.h"

namespace retain::testing {

// Records what a request streams; Wait() blocks until it ends. Refuses tokens past
// `accept_tokens` (>= 0), as a stream that went away does.
class RecordingSink : public engine::GenerateSink {
 public:
  explicit RecordingSink(int accept_tokens = -1) : accept_(accept_tokens) {}
  void OnStarted(const engine::StartedEvent& e) override {
    std::lock_guard<std::mutex> l(mu_);
    started = e;
  }
  bool OnToken(engine::TokenEvent&& e) override {
    std::lock_guard<std::mutex> l(mu_);
    if (accept_ >= 0 && static_cast<int>(tokens.size()) >= accept_) return false;
    tokens.push_back(e.id);
    text += e.text;
    events.push_back(std::move(e));
    return true;
  }
  void OnFinished(const engine::FinishedEvent& e) override {
    std::lock_guard<std::mutex> l(mu_);
    finished = e;
    done_ = true;
    cv_.notify_all();
  }
  void OnError(const absl::Status& s) override {
    std::lock_guard<std::mutex> l(mu_);
    error = s;
    done_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return done_; });
  }

  std::optional<engine::StartedEvent> started;
  std::vector<engine::TokenId> tokens;
  std::vector<engine::TokenEvent> events;
  std::string text;
  std::optional<engine::FinishedEvent> finished;
  absl::Status error;

 private:
  int accept_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

inline std::unique_ptr<engine::Engine> MakeEngine(engine::ServingOptions o = {}, engine::EngineObserver* observer = nullptr,
                                                  int threads = 1) {
  auto model = engine::LoadModel(DefaultModelDir(), engine::ModelOptions{.num_threads = threads});
  EXPECT_TRUE(model.ok()) << model.status();
  auto tok = engine::LoadModelTokenizer((*model)->config());
  EXPECT_TRUE(tok.ok()) << tok.status();
  auto engine = engine::Engine::Create(std::move(*model), std::move(*tok), o, observer);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

inline engine::GenerateInput Greedy(std::vector<engine::TokenId> prompt, int max_tokens, std::string session = "") {
  engine::GenerateInput in;
  in.session_id = std::move(session);
  in.prompt = std::move(prompt);
  in.sampling.temperature = 0;
  in.max_tokens = max_tokens;
  return in;
}

inline std::shared_ptr<RecordingSink> RunToEnd(engine::Engine& e, engine::GenerateInput in, int accept = -1) {
  auto sink = std::make_shared<RecordingSink>(accept);
  auto id = e.Submit(std::move(in), sink);
  EXPECT_TRUE(id.ok()) << id.status();
  if (id.ok()) sink->Wait();
  return sink;
}

// The truth the engine tests compare with: DirectGreedy on the shipped default model they serve.
inline std::vector<engine::TokenId> DirectGreedy(const std::vector<engine::TokenId>& prompt, int n) {
  return DirectGreedy(DefaultModelDir(), prompt, n);
}

}  // namespace retain::testing
