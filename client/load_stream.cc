// retain load --streams N: N threads, each running Generate requests back to back on a shared
// channel until the duration ends; then every request in flight is cancelled. Times are taken
// on this side, at each token's arrival: time to first token from the call's start, inter-token
// latency between consecutive tokens of one request. With --warmup W the streams run W seconds
// first; then tokens and inter-token gaps count from the end of the warm-up, and requests (with
// their time to first token and prompt tokens) when they started after it, so the figures are the
// steady state, not the ramp-up of N streams starting together.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
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

struct Slot {
  std::mutex mu;
  grpc::ClientContext* ctx = nullptr;  // the call in flight, cancelled at the end
};

struct Run {
  Clock::time_point measure_from;  // start + warm-up
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> all_tokens{0};  // warm-up included, for the progress line
  std::atomic<uint64_t> requests{0}, tokens{0}, prompt_tokens{0}, cancelled_at_end{0};
  LatencyHistogram ttft, itl;
  ErrorTally errors;
};

void Stream(int index, const GlobalOptions& g, const LoadOptions& o, const LoadTarget& t, Slot& slot, Run& run) {
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index) + 1);
  std::uniform_int_distribution<int> id(0, t.vocab_size - 1);
  auto stub = v1::Retain::NewStub(t.channels[static_cast<size_t>(index) % t.channels.size()]);
  while (!run.stop.load()) {
    v1::GenerateRequest req;
    req.set_model(t.model);
    for (int i = 0; i < o.prompt_tokens; ++i) req.add_prompt_tokens(id(rng));
    req.mutable_sampling()->set_temperature(o.temperature);
    req.mutable_sampling()->set_seed(rng());
    req.mutable_stopping()->set_max_tokens(o.max_tokens);
    req.mutable_stopping()->set_ignore_eos(true);

    grpc::ClientContext ctx;
    ApplyCallOptions(ctx, g);
    {
      std::lock_guard<std::mutex> l(slot.mu);
      if (run.stop.load()) break;
      slot.ctx = &ctx;
    }
    const Clock::time_point start = Clock::now();
    const bool measured = start >= run.measure_from;
    Clock::time_point last;
    bool first = true;
    auto reader = stub->Generate(&ctx, req);
    v1::GenerateResponse resp;
    int prompt = 0;
    while (reader->Read(&resp)) {
      if (resp.has_token()) {
        const Clock::time_point now = Clock::now();
        const bool counted = now >= run.measure_from;
        if (first) {
          if (measured) run.ttft.Add(Since(start, now));
          first = false;
        } else if (counted) {
          run.itl.Add(Since(last, now));
        }
        last = now;
        run.all_tokens.fetch_add(1, std::memory_order_relaxed);
        if (counted) run.tokens.fetch_add(1, std::memory_order_relaxed);
      } else if (resp.has_finished()) {
        prompt = resp.finished().usage().prompt_tokens();
      }
    }
    grpc::Status st = reader->Finish();
    {
      std::lock_guard<std::mutex> l(slot.mu);
      slot.ctx = nullptr;
    }
    if (st.ok() && !measured) {
      // started in the warm-up: its tokens after it count, the request does not
    } else if (st.ok()) {
      run.requests.fetch_add(1);
      run.prompt_tokens.fetch_add(static_cast<uint64_t>(prompt));
    } else if (run.stop.load() && st.error_code() == grpc::StatusCode::CANCELLED) {
      run.cancelled_at_end.fetch_add(1);
    } else {
      run.errors.Add(st);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // no hot loop against a refusing server
    }
  }
}

nlohmann::json Percentiles(const LatencyHistogram& h) {
  return {{"p50", h.Percentile(50)}, {"p90", h.Percentile(90)}, {"p99", h.Percentile(99)},
          {"mean", h.Mean()},        {"count", h.count()}};
}

}  // namespace

int RunStreamLoad(const GlobalOptions& g, const LoadOptions& o, const LoadTarget& t) {
  Run run;
  std::vector<Slot> slots(static_cast<size_t>(o.streams));
  std::vector<std::thread> threads;
  threads.reserve(slots.size());
  const Clock::time_point start = Clock::now();
  run.measure_from = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup));
  const Clock::time_point end =
      run.measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
  auto stop_all = [&] {
    run.stop.store(true);
    for (Slot& s : slots) {
      std::lock_guard<std::mutex> l(s.mu);
      if (s.ctx != nullptr) s.ctx->TryCancel();
    }
    for (std::thread& th : threads) th.join();
  };
  try {
    for (int i = 0; i < o.streams; ++i)
      threads.emplace_back(Stream, i, std::cref(g), std::cref(o), std::cref(t), std::ref(slots[static_cast<size_t>(i)]),
                           std::ref(run));
  } catch (const std::system_error& e) {
    stop_all();
    return Fail(kExitLocal, "load: cannot start " + std::to_string(o.streams) + " stream threads: " + e.what());
  }

  uint64_t last_tokens = 0;
  for (int second = 1;; ++second) {
    const Clock::time_point tick = std::min(end, start + std::chrono::seconds(second));
    std::this_thread::sleep_until(tick);
    if (tick >= end) break;
    const uint64_t tokens = run.all_tokens.load();
    if (!o.quiet)
      std::fprintf(stderr, "[load] %3ds: %llu requests, %llu tokens, %.1f tok/s, ttft p50 %.1f ms, itl p50 %.2f ms, %llu errors\n",
                   second, static_cast<unsigned long long>(run.requests.load()),
                   static_cast<unsigned long long>(tokens), static_cast<double>(tokens - last_tokens),
                   run.ttft.Percentile(50) * 1e3, run.itl.Percentile(50) * 1e3,
                   static_cast<unsigned long long>(run.errors.total()));
    last_tokens = tokens;
  }
  stop_all();
  const double elapsed = Since(run.measure_from, Clock::now());
  const uint64_t tokens = run.tokens.load();
  const double rate = static_cast<double>(tokens) / elapsed;

  if (o.json) {
    nlohmann::json errors = nlohmann::json::object();
    for (const auto& [code, n] : run.errors.by_code()) errors[code] = n;
    nlohmann::json j = {{"mode", "streams"},
                        {"server", g.server},
                        {"model", t.model},
                        {"streams", o.streams},
                        {"channels", o.channels},
                        {"duration_seconds", o.duration},
                        {"warmup_seconds", o.warmup},
                        {"elapsed_seconds", elapsed},
                        {"prompt_tokens", o.prompt_tokens},
                        {"max_tokens", o.max_tokens},
                        {"temperature", o.temperature},
                        {"requests", run.requests.load()},
                        {"cancelled_at_end", run.cancelled_at_end.load()},
                        {"errors", errors},
                        {"prompt_tokens_processed", run.prompt_tokens.load()},
                        {"generated_tokens", tokens},
                        {"tokens_per_second", rate},
                        {"ttft_seconds", Percentiles(run.ttft)},
                        {"itl_seconds", Percentiles(run.itl)}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("streams %d over %d channel(s), %.2f s after %.2f s of warm-up, model %s, prompt %d tokens, max %d tokens\n",
                o.streams, o.channels, elapsed, o.warmup, t.model.c_str(), o.prompt_tokens, o.max_tokens);
    std::printf("requests %llu (+%llu cancelled at the end), errors %llu\n",
                static_cast<unsigned long long>(run.requests.load()),
                static_cast<unsigned long long>(run.cancelled_at_end.load()),
                static_cast<unsigned long long>(run.errors.total()));
    std::printf("generated tokens %llu, %.1f tokens/s\n", static_cast<unsigned long long>(tokens), rate);
    std::printf("time to first token  p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms  (%llu)\n", run.ttft.Percentile(50) * 1e3,
                run.ttft.Percentile(90) * 1e3, run.ttft.Percentile(99) * 1e3,
                static_cast<unsigned long long>(run.ttft.count()));
    std::printf("inter-token latency  p50 %8.2f ms  p90 %8.2f ms  p99 %8.2f ms  (%llu)\n", run.itl.Percentile(50) * 1e3,
                run.itl.Percentile(90) * 1e3, run.itl.Percentile(99) * 1e3,
                static_cast<unsigned long long>(run.itl.count()));
  }
  std::fflush(stdout);
  return run.errors.ExitCode();
}

}  // namespace retain::client
