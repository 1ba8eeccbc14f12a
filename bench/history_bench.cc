// retain-history-bench: what checkpoints, rewind and the prefix-state cache save, in the serving
// engine on a random-weight model at a real shape.
//
//   retain-history-bench [--arch rwkv7] [--shape 0.1b] [--dtype f16] [--turns 8] [--turn-tokens 104]
//                        [--system 4096] [--suffix 32] [--requests 8]      (--help or -h: the usage)
//
// Three measurements, one JSON line each:
//   edit      a session of --turns prefill-only turns of --turn-tokens (8 x 104 = the issue's
//             832-token history) is rewound to the middle turn boundary, and to a position
//             between checkpoints, then a new turn is sent; against a fresh session re-reading the
//             same history. Tokens fed and seconds to the new turn's first token.
//   last_turn the same for a rewind of one turn (regenerate the last answer).
//   system    --requests concurrent requests of a --system-token shared prompt plus a --suffix of
//             their own: time to first token with the prefix cache off, and on after one request
//             primed it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "bench/cli.h"
#include "bench/random_models.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "retain/engine/serving.h"
#include "retain/engine/status_macros.h"

namespace retain::bench {
namespace {

using Clock = std::chrono::steady_clock;
using engine::TokenId;

constexpr char kUsage[] =
    "usage: retain-history-bench [--arch rwkv7] [--shape 0.1b] [--dtype f16] [--turns 8] [--turn-tokens 104]\n"
    "                            [--system 4096] [--suffix 32] [--requests 8]\n"
    "Rewind and edit of a multi-turn session against re-reading it, and concurrent requests sharing a\n"
    "long system prompt with the prefix cache off and on; one JSON line per measurement.\n";

struct Options {
  std::string arch = "rwkv7", shape = "0.1b", dtype = "f16";
  int turns = 8, turn_tokens = 104, system = 4096, suffix = 32, requests = 8;
  bool help = false;
};

absl::StatusOr<Options> Parse(int argc, char** argv) {
  Options o;
  RETAIN_RETURN_IF_ERROR(ParseFlags(
      argc, argv,
      {.strings = {{"--arch", &o.arch}, {"--shape", &o.shape}, {"--dtype", &o.dtype}},
       .ints = {{"--turns", {&o.turns, 2, 1 << 10}},
                {"--turn-tokens", {&o.turn_tokens, 2, 1 << 16}},
                {"--system", {&o.system, 1, 1 << 20}},
                {"--suffix", {&o.suffix, 1, 1 << 16}},
                {"--requests", {&o.requests, 1, 1024}}},
       .doubles = {},
       .switches = {}},
      &o.help));
  return o;
}

// One request's end, or its error.
class Wait final : public engine::GenerateSink {
 public:
  void OnStarted(const engine::StartedEvent&) override {}
  bool OnToken(engine::TokenEvent&&) override { return true; }
  void OnFinished(const engine::FinishedEvent& e) override { end_.set_value(e); }
  void OnError(const absl::Status& s) override { end_.set_value(s); }
  absl::StatusOr<engine::FinishedEvent> Get() { return end_.get_future().get(); }

 private:
  std::promise<absl::StatusOr<engine::FinishedEvent>> end_;
};

absl::StatusOr<engine::FinishedEvent> Generate(engine::Engine& e, const std::string& session, std::vector<TokenId> prompt,
                                               int max_tokens) {
  engine::GenerateInput in;
  in.session_id = session;
  in.prompt = std::move(prompt);
  in.sampling.temperature = 0;
  in.max_tokens = max_tokens;
  in.ignore_eos = true;
  auto sink = std::make_shared<Wait>();
  RETAIN_RETURN_IF_ERROR(e.Submit(std::move(in), sink).status());
  return sink->Get();
}

absl::StatusOr<engine::FinishedEvent> Rewind(engine::Engine& e, const std::string& session, int64_t position) {
  auto sink = std::make_shared<Wait>();
  RETAIN_RETURN_IF_ERROR(e.RewindSession(session, position, absl::InfiniteFuture(), sink).status());
  return sink->Get();
}

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Random token ids of the model's vocabulary.
struct Bench {
  const Options& o;
  std::mt19937 rng;
  int vocab;

  std::vector<TokenId> Tokens(int n) {
    std::vector<TokenId> v(static_cast<size_t>(n));
    for (TokenId& t : v) t = static_cast<TokenId>(rng() % static_cast<uint32_t>(vocab));
    return v;
  }
};

// Rewind `session` (holding `history`) to `position`, then a new turn, against a fresh session
// fed history[0, position) and the same turn.
absl::StatusOr<nlohmann::json> EditAt(engine::Engine& e, const std::string& session, const std::vector<TokenId>& history,
                                      int64_t position, const std::vector<TokenId>& turn) {
  const auto t0 = Clock::now();
  RETAIN_ASSIGN_OR_RETURN(engine::FinishedEvent rw, Rewind(e, session, position));
  RETAIN_ASSIGN_OR_RETURN(engine::FinishedEvent next, Generate(e, session, turn, 1));
  const double rewind_s = Since(t0);
  RETAIN_ASSIGN_OR_RETURN(engine::SessionInfo fresh, e.CreateSession());
  std::vector<TokenId> all(history.begin(), history.begin() + position);
  all.insert(all.end(), turn.begin(), turn.end());
  const auto t1 = Clock::now();
  RETAIN_ASSIGN_OR_RETURN(engine::FinishedEvent full, Generate(e, fresh.id, all, 1));
  const double full_s = Since(t1);
  RETAIN_RETURN_IF_ERROR(e.DeleteSession(fresh.id));
  return nlohmann::json{{"position", position},
                        {"rewind_tokens_fed", rw.prompt_tokens + next.prompt_tokens},
                        {"rewind_seconds", rewind_s},
                        {"reprefill_tokens_fed", full.prompt_tokens},
                        {"reprefill_seconds", full_s}};
}

absl::Status EditBench(Bench& b, engine::Engine& e) {
  const Options& o = b.o;
  RETAIN_ASSIGN_OR_RETURN(engine::SessionInfo s, e.CreateSession());
  std::vector<TokenId> history;
  for (int t = 0; t < o.turns; ++t) {
    std::vector<TokenId> turn = b.Tokens(o.turn_tokens);
    history.insert(history.end(), turn.begin(), turn.end());
    RETAIN_RETURN_IF_ERROR(Generate(e, s.id, std::move(turn), 0).status());
  }
  const int64_t mid = static_cast<int64_t>(o.turns / 2) * o.turn_tokens;
  const std::vector<TokenId> turn = b.Tokens(o.turn_tokens);
  nlohmann::json edits = nlohmann::json::array();
  for (int64_t p : {mid, mid + o.turn_tokens / 3}) {
    // Each edit starts from the whole history again (a fork of the original).
    RETAIN_ASSIGN_OR_RETURN(engine::SessionInfo f, e.ForkSession(s.id));
    RETAIN_ASSIGN_OR_RETURN(nlohmann::json j, EditAt(e, f.id, history, p, turn));
    edits.push_back(j);
    RETAIN_RETURN_IF_ERROR(e.DeleteSession(f.id));
  }
  const nlohmann::json edit = {{"measure", "edit"},          {"arch", o.arch},     {"shape", o.shape},
                               {"history_tokens", history.size()}, {"turn_tokens", o.turn_tokens},
                               {"edits", edits}};
  std::printf("%s\n", edit.dump().c_str());
  const int64_t last = static_cast<int64_t>(o.turns - 1) * o.turn_tokens;
  RETAIN_ASSIGN_OR_RETURN(nlohmann::json j, EditAt(e, s.id, history, last, turn));
  j["measure"] = "last_turn";
  j["arch"] = o.arch;
  j["shape"] = o.shape;
  std::printf("%s\n", j.dump().c_str());
  return absl::OkStatus();
}

// Time to first token of --requests concurrent requests sharing the system prompt.
absl::StatusOr<std::vector<double>> SystemRound(Bench& b, engine::Engine& e, const std::vector<TokenId>& system,
                                                std::vector<int>* cached) {
  std::vector<std::shared_ptr<Wait>> sinks;
  for (int i = 0; i < b.o.requests; ++i) {
    engine::GenerateInput in;
    in.prompt = system;
    const std::vector<TokenId> own = b.Tokens(b.o.suffix);
    in.prompt.insert(in.prompt.end(), own.begin(), own.end());
    in.sampling.temperature = 0;
    in.max_tokens = 1;
    in.ignore_eos = true;
    sinks.push_back(std::make_shared<Wait>());
    RETAIN_RETURN_IF_ERROR(e.Submit(std::move(in), sinks.back()).status());
  }
  std::vector<double> ttft;
  for (auto& s : sinks) {
    RETAIN_ASSIGN_OR_RETURN(engine::FinishedEvent f, s->Get());
    ttft.push_back(f.time_to_first_token_seconds);
    cached->push_back(f.cached_tokens);
  }
  return ttft;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status Run(const Options& o) {
  RETAIN_ASSIGN_OR_RETURN(const engine::DType dtype, ParseDType(o.dtype));
  auto load = [&](size_t cache_bytes) -> absl::StatusOr<std::unique_ptr<engine::Engine>> {
    RETAIN_ASSIGN_OR_RETURN(RandomModelImage image, BuildRandomModel(o.arch, o.shape, dtype, 1234));
    RETAIN_ASSIGN_OR_RETURN(auto config_dir, ConfigDir::Write(image));
    RETAIN_ASSIGN_OR_RETURN(auto weights, engine::SafetensorsFile::FromMemory("random", std::move(image.bytes)));
    RETAIN_ASSIGN_OR_RETURN(auto model, engine::LoadModelFromWeights(*weights, config_dir->path(), {}));
    engine::ServingOptions so;
    so.prefix_cache_bytes = cache_bytes;
    so.eos_token_id = -1;
    so.max_prompt_tokens = 1 << 20;
    so.state_budget_bytes = model->state_bytes() * static_cast<size_t>(o.requests + 8);
    so.checkpoint_budget_bytes = model->state_bytes() * static_cast<size_t>(4 * o.turns + 8);
    return engine::Engine::Create(std::move(model), nullptr, so);
  };
  RETAIN_ASSIGN_OR_RETURN(auto plain, load(0));
  Bench b{o, std::mt19937(7), plain->model().config().vocab_size};
  RETAIN_RETURN_IF_ERROR(EditBench(b, *plain));

  const std::vector<TokenId> system = b.Tokens(o.system);
  std::vector<int> cached_off, cached_on, primed;
  RETAIN_ASSIGN_OR_RETURN(std::vector<double> off, SystemRound(b, *plain, system, &cached_off));
  plain.reset();
  RETAIN_ASSIGN_OR_RETURN(auto cached, load(static_cast<size_t>(4) << 30));
  {
    Options one = o;
    one.requests = 1;
    Bench prime{one, std::mt19937(8), b.vocab};
    RETAIN_RETURN_IF_ERROR(SystemRound(prime, *cached, system, &primed).status());
  }
  RETAIN_ASSIGN_OR_RETURN(std::vector<double> on, SystemRound(b, *cached, system, &cached_on));
  const nlohmann::json j = {{"measure", "system"},
                            {"arch", o.arch},
                            {"shape", o.shape},
                            {"system_tokens", o.system},
                            {"suffix_tokens", o.suffix},
                            {"requests", o.requests},
                            {"ttft_median_seconds_cache_off", Median(off)},
                            {"ttft_median_seconds_cache_on", Median(on)},
                            {"cached_tokens_min", *std::min_element(cached_on.begin(), cached_on.end())}};
  std::printf("%s\n", j.dump().c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace retain::bench

int main(int argc, char** argv) {
  return retain::bench::ToolMain("retain-history-bench", retain::bench::kUsage, retain::bench::Parse(argc, argv),
                                 retain::bench::Run);
}
