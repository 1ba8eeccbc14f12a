// retain load --soak: --streams workers for --duration seconds (after --warmup), each looping over
// random actions on sessions of its own: create, continue (greedy streaming Generate), fork,
// export + import (continuing the copy), stop mid-stream (StopGeneration), cancel mid-stream,
// drop the stream unread, a deadline that expires mid-stream, delete; a few workers
// (--slow-readers) read their streams slowly or stop reading for seconds. Each worker keeps, per
// session, exactly the ids it sent and read (soak_history.h). Then:
//   (a) every surviving session (and every one retired mid-run, past --soak-max-position) equals
//       a single-stream replay of its history: positions equal, greedy continuations equal;
//   (b) every stream ended OK with `finished`, CANCELLED (cancelled by us), DEADLINE_EXCEEDED
//       (a deadline of ours) or RESOURCE_EXHAUSTED (a full queue or pool, documented); tallied;
//   (c) the server's /metrics (--metrics HOST:PORT) moved, over the measured run, by what the
//       clients saw: generated tokens exactly (read + sent-but-unread, the latter from positions),
//       finished requests by reason within the streams that ended before `started`;
//   (d) with --server-pid, the server's VmRSS once every session is deleted is within 5 % of the
//       baseline taken after the warm-up (less the growth of its bounded caches, from /metrics).
// Exit code 3 when a check fails (client/README.md).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "client/load.h"
#include "client/soak.h"
#include "retain/v1/retain.grpc.pb.h"

namespace retain::client {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kRssTolerance = 0.05;

struct Tracked {
  std::string id;
  SessionHistory history;
  std::string last;  // the session's last event, for failure messages
};

class Worker {
 public:
  Worker(int index, const LoadOptions& o, const LoadTarget& t, const SoakContext& c)
      : o_(o), c_(c), rng_(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index) + 1), id_(0, t.vocab_size - 1),
        slow_(index < o.slow_readers),
        stub_(v1::Retain::NewStub(t.channels[static_cast<size_t>(index) % t.channels.size()])) {}

  void Run() {
    while (!c_.stop->load()) Step();
    for (Tracked& s : sessions_) Retire(s);
    sessions_.clear();
  }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  std::vector<int32_t> Ids(int n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int32_t& x : v) x = id_(rng_);
    return v;
  }

  // A unary RPC failed: RESOURCE_EXHAUSTED (pool or limits full) is documented and tallied, the
  // rest fails the soak. Backs off a moment either way (no hot loop against a refusing server).
  void UnaryFailed(const std::string& what, const grpc::Status& st) {
    c_.tally->RpcError(st);
    if (st.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED)
      c_.tally->Fail(what + ": " + StatusCodeName(st.error_code()) + " " + st.error_message());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  void Step() {
    if (sessions_.empty()) return Create();
    const size_t pick = static_cast<size_t>(Uniform(0, static_cast<int>(sessions_.size()) - 1));
    if (sessions_[pick].history.position() > o_.soak_max_position) return RetireAt(pick);
    const int r = Uniform(0, 99);
    if (r < 8) return sessions_.size() < static_cast<size_t>(o_.soak_sessions) ? Create() : RetireAt(pick);
    if (r < 16) return Fork(pick);
    if (r < 22) return ExportImport(pick);
    if (r < 24) return Delete(pick);
    StreamPlan plan;
    const int max_tokens = Uniform(1, o_.max_tokens);
    if (slow_) {
      plan.kind = StreamPlan::kSlow;
      if (Uniform(0, 1) == 0) {
        plan.read_delay_ms = 1000;  // one message a second
      } else {
        plan.pause_after = Uniform(0, max_tokens);  // stop reading for a while, then drain
        plan.pause_ms = Uniform(2000, 5000);
      }
    } else if (r < 34) {
      plan.kind = StreamPlan::kStop;
    } else if (r < 44) {
      plan.kind = StreamPlan::kCancel;
    } else if (r < 54) {
      plan.kind = StreamPlan::kDrop;
    } else if (r < 64) {
      plan.kind = StreamPlan::kDeadline;
      plan.deadline_ms = Uniform(5, 200);
    }
    plan.after = Uniform(1, std::max(1, max_tokens - 1));
    Continue(pick, plan, max_tokens);
  }

  void Continue(size_t i, const StreamPlan& plan, int max_tokens) {
    c_.tally->Action(PlanName(plan.kind));
    Tracked& s = sessions_[i];
    const v1::GenerateRequest req = GreedyRequest(s.id, Ids(Uniform(0, o_.prompt_tokens)), max_tokens);
    StreamOutcome out = RunSoakStream(c_, *stub_, req, plan, "after " + s.last);
    const int64_t before = s.history.position();
    if (!AccountStream(c_, *stub_, s.id, req, out, s.history)) return Forget(i);
    s.last = std::string(PlanName(plan.kind)) + " stream of a " + std::to_string(req.prompt_tokens_size()) +
             "-token prompt at position " + std::to_string(before) + ", max_tokens " + std::to_string(max_tokens) +
             ", read " + std::to_string(out.tokens.size()) + ", ended " +
             (out.status_read ? StatusCodeName(out.status.error_code()) : "dropped") + ", position then " +
             std::to_string(s.history.position());
    if (out.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  void Create() {
    c_.tally->Action("create");
    const std::vector<int32_t> prefix = Ids(Uniform(1, o_.prompt_tokens));
    grpc::ClientContext ctx;
    ApplyCallOptions(ctx, *c_.g);
    v1::CreateSessionRequest req;
    req.set_model(c_.model);
    for (int32_t id : prefix) req.add_prefix_tokens(id);
    v1::Session s;
    grpc::Status st = stub_->CreateSession(&ctx, req, &s);
    CountPrefill(*c_.tally, st);
    if (!st.ok()) return UnaryFailed("CreateSession", st);
    Tracked t{s.id(), {}, "created with a " + std::to_string(prefix.size()) + "-token prefix"};
    t.history.AppendKnown(prefix);
    Adopt(std::move(t), s.position(), "CreateSession");
  }

  void Fork(size_t i) {
    c_.tally->Action("fork");
    if (sessions_.size() >= static_cast<size_t>(o_.soak_sessions)) return RetireAt(i == 0 ? 1 : 0);
    grpc::ClientContext ctx;
    ApplyCallOptions(ctx, *c_.g);
    v1::ForkSessionRequest req;
    req.set_session_id(sessions_[i].id);
    v1::Session s;
    grpc::Status st = stub_->ForkSession(&ctx, req, &s);
    if (!st.ok()) return UnaryFailed("ForkSession", st);
    Adopt(Tracked{s.id(), sessions_[i].history, "forked from a session after " + sessions_[i].last},
          s.position(),
          "ForkSession");
  }

  // Export the session's bytes and import them as a new session, then continue the copy at once.
  void ExportImport(size_t i) {
    c_.tally->Action("export_import");
    if (sessions_.size() >= static_cast<size_t>(o_.soak_sessions)) return RetireAt(i == 0 ? 1 : 0);
    std::vector<v1::SessionChunk> chunks;
    {
      grpc::ClientContext ctx;
      ApplyCallOptions(ctx, *c_.g);
      v1::ExportSessionRequest req;
      req.set_session_id(sessions_[i].id);
      auto reader = stub_->ExportSession(&ctx, req);
      v1::SessionChunk chunk;
      while (reader->Read(&chunk)) chunks.push_back(chunk);
      grpc::Status st = reader->Finish();
      if (!st.ok()) return UnaryFailed("ExportSession", st);
    }
    v1::Session s;
    {
      grpc::ClientContext ctx;
      ApplyCallOptions(ctx, *c_.g);
      auto writer = stub_->ImportSession(&ctx, &s);
      for (const v1::SessionChunk& chunk : chunks)
        if (!writer->Write(chunk)) break;
      writer->WritesDone();
      grpc::Status st = writer->Finish();
      if (!st.ok()) return UnaryFailed("ImportSession", st);
    }
    if (Adopt(Tracked{s.id(), sessions_[i].history, "imported from a session after " + sessions_[i].last},
              s.position(),
              "ImportSession"))
      Continue(sessions_.size() - 1, StreamPlan(), Uniform(1, o_.max_tokens));
  }

  bool Adopt(Tracked t, int64_t position, const std::string& rpc) {
    if (position != t.history.position()) {
      c_.tally->Fail(rpc + " " + t.id + ": position " + std::to_string(position) + ", its client counts " +
                     std::to_string(t.history.position()));
      DeleteSession(c_, *stub_, t.id);
      return false;
    }
    sessions_.push_back(std::move(t));
    return true;
  }

  void Delete(size_t i) {
    c_.tally->Action("delete");
    DeleteSession(c_, *stub_, sessions_[i].id);
    sessions_.erase(sessions_.begin() + static_cast<long>(i));
  }

  // (a) for one session, then it is deleted.
  void Retire(Tracked& s) {
    c_.tally->Action("verify");
    if (o_.test_corrupt_history > 0 && corrupted_ < o_.test_corrupt_history) {
      s.history.CorruptLastKnown(c_.vocab_size);
      ++corrupted_;
      c_.tally->histories_corrupted.fetch_add(1);
    }
    std::string why = VerifySession(c_, *stub_, s.id, s.history, o_.soak_continuation);
    c_.tally->sessions_verified.fetch_add(1);
    if (s.history.unread_tokens() > 0) c_.tally->sessions_with_unread.fetch_add(1);
    if (!why.empty()) {
      c_.tally->sessions_mismatched.fetch_add(1);
      c_.tally->Fail("session " + s.id + " is not its replay: " + why);
    }
    DeleteSession(c_, *stub_, s.id);
  }

  void RetireAt(size_t i) {
    if (i >= sessions_.size()) return;
    Retire(sessions_[i]);
    sessions_.erase(sessions_.begin() + static_cast<long>(i));
  }

  // Its history no longer follows the server (a check already failed): delete, never verify.
  void Forget(size_t i) {
    DeleteSession(c_, *stub_, sessions_[i].id);
    sessions_.erase(sessions_.begin() + static_cast<long>(i));
  }

  const LoadOptions& o_;
  const SoakContext& c_;
  std::mt19937_64 rng_;
  std::uniform_int_distribution<int32_t> id_;
  const bool slow_;
  std::unique_ptr<v1::Retain::Stub> stub_;
  std::vector<Tracked> sessions_;
  int corrupted_ = 0;
};

// One phase (the warm-up or the measured run): the workers for `seconds`, then each verifies and
// deletes what it holds. false when the threads could not start.
bool RunPhase(const LoadOptions& o, const LoadTarget& t, const SoakContext& c, double seconds, const char* name,
              std::string* error) {
  std::vector<std::thread> threads;
  std::atomic<int> running{0};
  auto join = [&] {
    c.stop->store(true);
    for (std::thread& th : threads) th.join();
  };
  c.stop->store(false);
  try {
    for (int i = 0; i < o.streams; ++i) {
      running.fetch_add(1);
      threads.emplace_back([&, i] {
        Worker w(i, o, t, c);
        w.Run();
        running.fetch_sub(1);
      });
    }
  } catch (const std::system_error& e) {
    join();
    *error = "cannot start " + std::to_string(o.streams) + " soak threads: " + e.what();
    return false;
  }
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (int second = 1;; ++second) {
    const Clock::time_point tick = start + std::chrono::seconds(second);
    std::this_thread::sleep_until(std::min(tick, end));
    if (Clock::now() >= end) break;
    if (!o.quiet)
      std::fprintf(stderr, "[soak %s] %3ds: %llu streams, %llu tokens, %llu sessions verified, %llu failures\n", name,
                   second, static_cast<unsigned long long>(c.tally->streams.load()),
                   static_cast<unsigned long long>(c.tally->tokens_read.load()),
                   static_cast<unsigned long long>(c.tally->sessions_verified.load()),
                   static_cast<unsigned long long>(c.tally->failures_total()));
  }
  c.stop->store(true);
  if (!o.quiet) std::fprintf(stderr, "[soak %s] verifying the sessions left\n", name);
  for (std::thread& th : threads) th.join();
  return true;
}

// /metrics once the server is idle (no request running or waiting: a cancelled request's end is
// counted a moment after its client stopped) and stable (two scrapes agree).
bool IdleSample(const LoadOptions& o, MetricsSample* m, std::string* error) {
  MetricsSample prev;
  bool have_prev = false;
  for (int i = 0; i < 600; ++i) {
    if (!ScrapeMetrics(o.metrics, o.server_pid, m, error)) return false;
    if (m->requests_running == 0 && m->requests_waiting == 0 && have_prev &&
        prev.generation_tokens == m->generation_tokens && prev.finished_by_reason == m->finished_by_reason)
      return true;
    prev = *m;
    have_prev = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  *error = "the server did not go idle within 60 s after the soak";
  return false;
}

double Delta(const std::map<std::string, double>& a, const std::map<std::string, double>& b, const std::string& k) {
  auto ia = a.find(k), ib = b.find(k);
  return (ib == b.end() ? 0 : ib->second) - (ia == a.end() ? 0 : ia->second);
}

}  // namespace

int RunSoakLoad(const GlobalOptions& g, const LoadOptions& o, const LoadTarget& t) {
  std::atomic<bool> stop{false};
  SoakTally warm, run;
  SoakContext wc{&g, t.model, t.vocab_size, &stop, &warm};
  SoakContext rc{&g, t.model, t.vocab_size, &stop, &run};
  std::string error;
  if (o.warmup > 0 && !RunPhase(o, t, wc, o.warmup, "warm-up", &error)) return Fail(kExitLocal, "load --soak: " + error);
  MetricsSample before, after;
  if (!IdleSample(o, &before, &error)) return Fail(kExitLocal, "load --soak: before the run: " + error);
  const Clock::time_point start = Clock::now();
  if (!RunPhase(o, t, rc, o.duration, "run", &error)) return Fail(kExitLocal, "load --soak: " + error);
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (!IdleSample(o, &after, &error)) return Fail(kExitLocal, "load --soak: after the run: " + error);

  // (c) The metrics against the clients.
  std::vector<std::string> checks;  // failed checks, beside run.failures
  const double server_tokens = after.generation_tokens - before.generation_tokens;
  const uint64_t client_tokens = run.tokens_generated.load();
  if (server_tokens != static_cast<double>(client_tokens))
    checks.push_back("retain_generation_tokens_total moved " + std::to_string(static_cast<uint64_t>(server_tokens)) +
                     ", the clients count " + std::to_string(client_tokens) + " (" + std::to_string(run.tokens_read.load()) +
                     " read + " + std::to_string(run.tokens_unread.load()) + " sent but unread)");
  const double length = Delta(before.finished_by_reason, after.finished_by_reason, "length");
  const double short_ends = Delta(before.finished_by_reason, after.finished_by_reason, "cancelled") +
                            Delta(before.finished_by_reason, after.finished_by_reason, "deadline");
  const double other_ends = Delta(before.finished_by_reason, after.finished_by_reason, "stop") +
                            Delta(before.finished_by_reason, after.finished_by_reason, "eos");
  const double unsure = static_cast<double>(run.ended_unsure.load());
  const double c_length = static_cast<double>(run.ended_length.load());
  const double c_short = static_cast<double>(run.ended_short.load());
  if (length < c_length || length > c_length + unsure)
    checks.push_back("requests finished length: " + std::to_string(static_cast<uint64_t>(length)) + ", the clients " +
                     std::to_string(static_cast<uint64_t>(c_length)) + " (+ up to " +
                     std::to_string(static_cast<uint64_t>(unsure)) + " ended before started)");
  if (short_ends < c_short || short_ends > c_short + unsure || length + short_ends > c_length + c_short + unsure)
    checks.push_back("requests finished cancelled + deadline: " + std::to_string(static_cast<uint64_t>(short_ends)) +
                     ", the clients " + std::to_string(static_cast<uint64_t>(c_short)) + " (+ up to " +
                     std::to_string(static_cast<uint64_t>(unsure)) + ")");
  if (other_ends != 0) checks.push_back("requests finished stop/eos: the soak ignores EOS and sets no stops");
  for (const char* bad : {"UNKNOWN", "INTERNAL", "DATA_LOSS", "UNAVAILABLE"}) {
    const double n = Delta(before.errors_by_code, after.errors_by_code, bad);
    if (n != 0) checks.push_back(std::string("retain_request_errors_total{code=") + bad + "} moved " + std::to_string(n));
  }
  // (d) Memory, less what the bounded caches (prefix states, checkpoints, tiers) grew by.
  double rss_ratio = 0;
  if (o.server_pid > 0) {
    const double grown_caches = after.held_bytes - before.held_bytes;
    rss_ratio = (static_cast<double>(after.rss_bytes) - grown_caches) / static_cast<double>(before.rss_bytes);
    if (rss_ratio > 1 + kRssTolerance)
      checks.push_back("VmRSS " + std::to_string(after.rss_bytes) + " after (less " +
                       std::to_string(static_cast<int64_t>(grown_caches)) + " bytes of grown caches) against " +
                       std::to_string(before.rss_bytes) + " before: more than 5 % up");
  }
  for (const std::string& f : warm.failures) checks.push_back("warm-up: " + f);
  for (const std::string& f : run.failures) checks.push_back(f);
  const uint64_t failures = run.failures_total() + warm.failures_total() + (checks.size() - warm.failures.size() - run.failures.size());
  const bool pass = failures == 0;

  std::lock_guard<std::mutex> l(run.mu);
  if (o.json) {
    nlohmann::json j = {{"mode", "soak"},
                        {"server", g.server},
                        {"model", t.model},
                        {"streams", o.streams},
                        {"slow_readers", o.slow_readers},
                        {"duration_seconds", o.duration},
                        {"warmup_seconds", o.warmup},
                        {"elapsed_seconds", elapsed},
                        {"requests", run.streams.load()},
                        {"tokens_read", run.tokens_read.load()},
                        {"tokens_sent_unread", run.tokens_unread.load()},
                        {"server_generated_tokens", server_tokens},
                        {"ends", run.ends},
                        {"actions", run.actions},
                        {"rpc_errors", run.rpc_errors},
                        {"sessions_verified", run.sessions_verified.load()},
                        {"sessions_with_unread", run.sessions_with_unread.load()},
                        {"sessions_mismatched", run.sessions_mismatched.load()},
                        {"histories_corrupted", run.histories_corrupted.load()},
                        {"server_finished", after.finished_by_reason},
                        {"rss_before_bytes", before.rss_bytes},
                        {"rss_after_bytes", after.rss_bytes},
                        {"cache_bytes_before", before.held_bytes},
                        {"cache_bytes_after", after.held_bytes},
                        {"rss_ratio", rss_ratio},
                        {"failures", failures},
                        {"failed_checks", checks},
                        {"verdict", pass ? "PASS" : "FAIL"}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("soak: %d workers (%d slow readers) for %.1f s after %.1f s of warm-up, model %s\n", o.streams,
                o.slow_readers, elapsed, o.warmup, t.model.c_str());
    std::printf("streams %llu, tokens read %llu (+%llu sent but unread), server counted %llu\n",
                static_cast<unsigned long long>(run.streams.load()),
                static_cast<unsigned long long>(run.tokens_read.load()),
                static_cast<unsigned long long>(run.tokens_unread.load()), static_cast<unsigned long long>(server_tokens));
    std::printf("stream ends:");
    for (const auto& [k, n] : run.ends) std::printf(" %s %llu", k.c_str(), static_cast<unsigned long long>(n));
    std::printf("\nactions:");
    for (const auto& [k, n] : run.actions) std::printf(" %s %llu", k.c_str(), static_cast<unsigned long long>(n));
    std::printf("\nunary errors:");
    for (const auto& [k, n] : run.rpc_errors) std::printf(" %s %llu", k.c_str(), static_cast<unsigned long long>(n));
    std::printf("\nsessions verified %llu (%llu with sent-but-unread tokens), mismatched %llu\n",
                static_cast<unsigned long long>(run.sessions_verified.load()),
                static_cast<unsigned long long>(run.sessions_with_unread.load()),
                static_cast<unsigned long long>(run.sessions_mismatched.load()));
    if (o.server_pid > 0)
      std::printf("server VmRSS %.1f MiB before, %.1f MiB after (caches %.1f -> %.1f MiB): ratio %.3f\n",
                  before.rss_bytes / 1048576.0, after.rss_bytes / 1048576.0, before.held_bytes / 1048576.0,
                  after.held_bytes / 1048576.0, rss_ratio);
    else
      std::printf("server memory not checked (no --server-pid)\n");
    for (const std::string& c : checks) std::printf("FAILED: %s\n", c.c_str());
    std::printf("verdict: %s (%llu failed checks)\n", pass ? "PASS" : "FAIL", static_cast<unsigned long long>(failures));
  }
  std::fflush(stdout);
  return pass ? kExitOk : kExitSoakFailed;
}

}  // namespace retain::client
