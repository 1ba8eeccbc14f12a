// retain load --conversations C: C threads, each a session on the server whose every turn appends
// --turn-tokens new random ids and generates --max-tokens greedily. Reported per turn number:
// time to first token (measured here, and the server's own) and the prompt tokens the server
// says it consumed (Finished.usage.prompt_tokens). Nothing is ever re-sent, so a recurrent
// model's turn 50 should cost what turn 1 costs.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "client/load.h"
#include "client/load_stats.h"
#include "retain/v1/retain.grpc.pb.h"

namespace retain::client {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Turn {
  bool ok = false;
  double ttft = 0, server_ttft = 0, total = 0;
  int prompt_tokens = 0, generated = 0;
  int64_t position = 0;
};

struct Run {
  std::atomic<uint64_t> turns_done{0}, tokens{0};
  ErrorTally errors;
};

void Conversation(int index, const GlobalOptions& g, const LoadOptions& o, const LoadTarget& t, std::vector<Turn>& turns,
                  Run& run) {
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index) + 1);
  std::uniform_int_distribution<int> id(0, t.vocab_size - 1);
  auto stub = v1::Retain::NewStub(t.channels[static_cast<size_t>(index) % t.channels.size()]);
  v1::Session session;
  {
    grpc::ClientContext ctx;
    ApplyCallOptions(ctx, g);
    v1::CreateSessionRequest req;
    req.set_model(t.model);
    grpc::Status st = stub->CreateSession(&ctx, req, &session);
    if (!st.ok()) return run.errors.Add(st);
  }
  for (int turn = 0; turn < o.turns; ++turn) {
    v1::GenerateRequest req;
    req.set_session_id(session.id());
    for (int i = 0; i < o.turn_tokens; ++i) req.add_prompt_tokens(id(rng));
    req.mutable_sampling()->set_temperature(0);
    req.mutable_stopping()->set_max_tokens(o.max_tokens);
    req.mutable_stopping()->set_ignore_eos(true);
    grpc::ClientContext ctx;
    ApplyCallOptions(ctx, g);
    Turn r;
    const Clock::time_point start = Clock::now();
    bool first = true;
    auto reader = stub->Generate(&ctx, req);
    v1::GenerateResponse resp;
    while (reader->Read(&resp)) {
      if (resp.has_token()) {
        if (first) r.ttft = Since(start, Clock::now());
        first = false;
        run.tokens.fetch_add(1, std::memory_order_relaxed);
      } else if (resp.has_finished()) {
        const v1::Finished& f = resp.finished();
        r.prompt_tokens = f.usage().prompt_tokens();
        r.generated = f.usage().generated_tokens();
        r.server_ttft = f.usage().time_to_first_token_seconds();
        r.position = f.position();
      }
    }
    grpc::Status st = reader->Finish();
    r.total = Since(start, Clock::now());
    if (!st.ok()) {
      run.errors.Add(st);
      break;  // the conversation ends at its first failed turn
    }
    r.ok = true;
    turns[static_cast<size_t>(turn)] = r;
    run.turns_done.fetch_add(1);
  }
  if (!o.keep_sessions) {
    grpc::ClientContext ctx;
    ApplyCallOptions(ctx, g);
    v1::DeleteSessionRequest req;
    req.set_session_id(session.id());
    v1::DeleteSessionResponse resp;
    grpc::Status st = stub->DeleteSession(&ctx, req, &resp);
    if (!st.ok()) run.errors.Add(st);
  }
}

}  // namespace

int RunConversationLoad(const GlobalOptions& g, const LoadOptions& o, const LoadTarget& t) {
  Run run;
  // records[c][turn], each conversation writing only its own row.
  std::vector<std::vector<Turn>> records(static_cast<size_t>(o.conversations),
                                         std::vector<Turn>(static_cast<size_t>(o.turns)));
  std::vector<std::thread> threads;
  std::atomic<int> running{0};
  const Clock::time_point start = Clock::now();
  try {
    for (int c = 0; c < o.conversations; ++c) {
      running.fetch_add(1);
      threads.emplace_back([&, c] {
        Conversation(c, g, o, t, records[static_cast<size_t>(c)], run);
        running.fetch_sub(1);
      });
    }
  } catch (const std::system_error& e) {
    running.fetch_sub(1);  // the one that did not start
    for (std::thread& th : threads) th.join();
    return Fail(kExitLocal, "load: cannot start " + std::to_string(o.conversations) + " conversation threads: " + e.what());
  }
  const uint64_t total_turns = static_cast<uint64_t>(o.conversations) * static_cast<uint64_t>(o.turns);
  for (int second = 1; running.load() > 0; ++second) {
    // Wake often to notice the end, print once a second.
    const Clock::time_point tick = start + std::chrono::seconds(second);
    while (Clock::now() < tick && running.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (running.load() == 0) break;
    if (!o.quiet)
      std::fprintf(stderr, "[load] %3ds: %llu/%llu turns, %llu tokens, %llu errors\n", second,
                   static_cast<unsigned long long>(run.turns_done.load()), static_cast<unsigned long long>(total_turns),
                   static_cast<unsigned long long>(run.tokens.load()),
                   static_cast<unsigned long long>(run.errors.total()));
  }
  for (std::thread& th : threads) th.join();
  const double elapsed = Since(start, Clock::now());

  nlohmann::json per_turn = nlohmann::json::array();
  if (!o.json) {
    std::printf("conversations %d x %d turns, %d new tokens and %d generated per turn, model %s, %.2f s\n",
                o.conversations, o.turns, o.turn_tokens, o.max_tokens, t.model.c_str(), elapsed);
    std::printf("%5s %6s %14s %14s %18s %14s %10s\n", "turn", "done", "ttft_p50_ms", "ttft_p90_ms", "server_ttft_p50_ms",
                "prompt_tokens", "position");
  }
  for (int turn = 0; turn < o.turns; ++turn) {
    std::vector<double> ttft, server_ttft, prompt, position;
    for (const auto& row : records) {
      const Turn& r = row[static_cast<size_t>(turn)];
      if (!r.ok) continue;
      ttft.push_back(r.ttft);
      server_ttft.push_back(r.server_ttft);
      prompt.push_back(r.prompt_tokens);
      position.push_back(static_cast<double>(r.position));
    }
    const int pmin = static_cast<int>(Percentile(prompt, 0));
    const int pmax = static_cast<int>(Percentile(prompt, 100));
    if (o.json) {
      per_turn.push_back({{"turn", turn + 1},
                          {"completed", ttft.size()},
                          {"ttft_p50_seconds", Percentile(ttft, 50)},
                          {"ttft_p90_seconds", Percentile(ttft, 90)},
                          {"server_ttft_p50_seconds", Percentile(server_ttft, 50)},
                          {"prompt_tokens_p50", static_cast<int>(Percentile(prompt, 50))},
                          {"prompt_tokens_min", pmin},
                          {"prompt_tokens_max", pmax},
                          {"position_p50", static_cast<int64_t>(Percentile(position, 50))}});
    } else {
      const std::string prompt_col = pmin == pmax ? std::to_string(pmin) : std::to_string(pmin) + ".." + std::to_string(pmax);
      std::printf("%5d %6zu %14.2f %14.2f %18.2f %14s %10lld\n", turn + 1, ttft.size(), Percentile(ttft, 50) * 1e3,
                  Percentile(ttft, 90) * 1e3, Percentile(server_ttft, 50) * 1e3, prompt_col.c_str(),
                  static_cast<long long>(Percentile(position, 50)));
    }
  }
  if (o.json) {
    nlohmann::json errors = nlohmann::json::object();
    for (const auto& [code, n] : run.errors.by_code()) errors[code] = n;
    nlohmann::json j = {{"mode", "conversations"},
                        {"server", g.server},
                        {"model", t.model},
                        {"conversations", o.conversations},
                        {"turns", o.turns},
                        {"turn_tokens", o.turn_tokens},
                        {"max_tokens", o.max_tokens},
                        {"elapsed_seconds", elapsed},
                        {"turns_completed", run.turns_done.load()},
                        {"generated_tokens", run.tokens.load()},
                        {"errors", errors},
                        {"per_turn", per_turn}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("turns completed %llu/%llu, generated tokens %llu, errors %llu\n",
                static_cast<unsigned long long>(run.turns_done.load()), static_cast<unsigned long long>(total_turns),
                static_cast<unsigned long long>(run.tokens.load()), static_cast<unsigned long long>(run.errors.total()));
  }
  std::fflush(stdout);
  return run.errors.ExitCode();
}

}  // namespace retain::client
