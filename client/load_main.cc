// retain load: options, bounds, the target model (ListModels), then one of the three modes.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include "client/commands.h"
#include "client/load.h"
#include "retain/v1/retain.grpc.pb.h"

namespace retain::client {

void ErrorTally::Add(const grpc::Status& s) {
  std::lock_guard<std::mutex> l(mu_);
  ++by_code_[StatusCodeName(s.error_code())];
  ++total_;
  if (!have_first_) {
    have_first_ = true;
    first_ = s;
  }
}

uint64_t ErrorTally::total() const {
  std::lock_guard<std::mutex> l(mu_);
  return total_;
}

std::map<std::string, uint64_t> ErrorTally::by_code() const {
  std::lock_guard<std::mutex> l(mu_);
  return by_code_;
}

int ErrorTally::ExitCode() const {
  std::lock_guard<std::mutex> l(mu_);
  if (!have_first_) return kExitOk;
  std::fprintf(stderr, "retain: load: %llu requests failed; the first:\n", static_cast<unsigned long long>(total_));
  return ReportRpcError(first_);
}

namespace {

struct LoadFlags {
  LoadOptions o;
  std::vector<CLI::Option*> soak_extra;  // flags of the soak alone
  bool soak_only_given() const {
    for (const CLI::Option* opt : soak_extra)
      if (opt->count()) return true;
    return false;
  }
  CLI::Option *soak, *metrics, *server_pid, *streams, *duration, *warmup, *prompt_tokens, *conversations, *turns, *turn_tokens, *max_tokens, *temperature;
};

int RunLoad(const GlobalOptions& g, const LoadFlags& f) {
  const LoadOptions& o = f.o;
  const bool soak_mode = o.soak;
  const bool stream_mode = f.streams->count() > 0 && !soak_mode;
  const bool conv_mode = f.conversations->count() > 0;
  if (stream_mode == conv_mode && !soak_mode)
    return Fail(kExitUsage, "load: give exactly one of --streams N (stream mode) or --conversations C (conversation mode)");
  if (soak_mode) {
    if (conv_mode || f.turns->count() || f.turn_tokens->count() || f.temperature->count())
      return Fail(kExitUsage, "load --soak: --conversations, --turns, --turn-tokens and --temperature do not apply (the soak is greedy)");
    if (!f.streams->count() || !f.duration->count() || !f.prompt_tokens->count() || !f.max_tokens->count() ||
        !f.metrics->count())
      return Fail(kExitUsage,
                  "load --soak needs --streams N, --duration S, --prompt-tokens P (the longest prompt), --max-tokens M "
                  "(the longest generation) and --metrics HOST:PORT (the server's /metrics)");
    if (!o.allow_remote && !IsLoopbackTarget(o.metrics))
      return Fail(kExitUsage, "load --soak: refusing --metrics " + o.metrics + ": only this machine unless --allow-remote");
  } else if (f.metrics->count() || f.server_pid->count() || f.soak_only_given()) {
    return Fail(kExitUsage, "load: --metrics, --server-pid, --slow-readers and --soak-* belong to --soak");
  } else if (stream_mode) {
    if (!f.duration->count() || !f.prompt_tokens->count() || !f.max_tokens->count())
      return Fail(kExitUsage, "load --streams needs --duration S, --prompt-tokens P and --max-tokens M");
    if (f.turns->count() || f.turn_tokens->count())
      return Fail(kExitUsage, "load --streams: --turns and --turn-tokens belong to --conversations");
  } else {
    if (!f.turns->count() || !f.turn_tokens->count() || !f.max_tokens->count())
      return Fail(kExitUsage, "load --conversations needs --turns T, --turn-tokens P and --max-tokens M");
    if (f.duration->count() || f.prompt_tokens->count() || f.temperature->count() || f.warmup->count())
      return Fail(kExitUsage,
                  "load --conversations: --duration, --warmup, --prompt-tokens and --temperature belong to --streams "
                  "(conversations are greedy)");
  }
  if (!o.allow_remote && !IsLoopbackTarget(g.server))
    return Fail(kExitUsage, "load: refusing to load " + g.server +
                                ": only 127.0.0.1 / localhost / ::1 unless --allow-remote is given");

  LoadTarget t;
  for (int i = 0; i < o.channels; ++i) t.channels.push_back(MakeChannel(g, i));
  {
    auto stub = v1::Retain::NewStub(t.channels[0]);
    grpc::ClientContext ctx;
    ApplyCallOptions(ctx, g);
    v1::ListModelsResponse resp;
    grpc::Status st = stub->ListModels(&ctx, v1::ListModelsRequest(), &resp);
    if (!st.ok()) return ReportRpcError(st);
    for (const auto& m : resp.models())
      if (o.model.empty() ? m.is_default() : m.name() == o.model) {
        t.model = m.name();
        t.vocab_size = m.vocab_size();
      }
    if (t.model.empty())
      return Fail(kExitUsage, o.model.empty() ? "load: the server names no default model"
                                              : "load: --model " + o.model + " is not served there (retain models)");
    if (t.vocab_size <= 0) return Fail(kExitUsage, "load: model " + t.model + " reports no vocabulary size");
  }
  if (soak_mode) {
    LoadOptions so = o;
    if (so.slow_readers < 0) so.slow_readers = std::max(1, so.streams / 50);
    return RunSoakLoad(g, so, t);
  }
  return stream_mode ? RunStreamLoad(g, o, t) : RunConversationLoad(g, o, t);
}

}  // namespace

void AddLoadCommand(CLI::App& app, const GlobalOptions& g, Action* action) {
  auto f = std::make_shared<LoadFlags>();
  LoadOptions& o = f->o;
  CLI::App* sub = app.add_subcommand(
      "load",
      "Load generator. Stream mode: --streams N --duration S --prompt-tokens P --max-tokens M. "
      "Conversation mode: --conversations C --turns T --turn-tokens P --max-tokens M. "
      "Soak: --soak --streams N --duration S --prompt-tokens P --max-tokens M --metrics HOST:PORT [--server-pid PID]");
  f->streams = sub->add_option("--streams", o.streams, "concurrent Generate streams")
                   ->check(CLI::Range(1, kMaxLoadStreams));
  f->duration = sub->add_option("--duration", o.duration, "seconds to run (stream and soak modes)")
                    ->check(CLI::Range(0.001, kMaxLoadDurationSeconds));
  f->warmup = sub->add_option("--warmup", o.warmup,
                              "stream mode: seconds the streams run before the measured --duration starts "
                              "(not counted in tokens/s, latencies or requests)")
                  ->check(CLI::Range(0.0, kMaxLoadDurationSeconds));
  f->prompt_tokens = sub->add_option("--prompt-tokens", o.prompt_tokens, "random prompt ids per request")
                         ->check(CLI::Range(1, kMaxLoadPromptTokens));
  f->conversations = sub->add_option("--conversations", o.conversations, "concurrent conversations (sessions)")
                         ->check(CLI::Range(1, kMaxLoadStreams));
  f->turns = sub->add_option("--turns", o.turns, "turns per conversation")->check(CLI::Range(1, kMaxLoadTurns));
  f->turn_tokens = sub->add_option("--turn-tokens", o.turn_tokens, "new random ids appended per turn")
                       ->check(CLI::Range(1, kMaxLoadPromptTokens));
  f->max_tokens = sub->add_option("--max-tokens", o.max_tokens, "tokens generated per request (EOS ignored)")
                      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--model", o.model, "model name (default: the server's default model)");
  sub->add_option("--seed", o.seed, "seed of the random prompts")->capture_default_str();
  sub->add_option("--channels", o.channels, "gRPC connections the streams are spread over")
      ->check(CLI::Range(1, kMaxLoadChannels))
      ->capture_default_str();
  f->temperature = sub->add_option("--temperature", o.temperature, "stream mode sampling temperature (0 = greedy)")
                       ->check(CLI::Range(0.0, 100.0))
                       ->capture_default_str();
  f->soak = sub->add_flag("--soak", o.soak,
                          "soak mode: --streams workers of random session actions (create, continue, fork, export + "
                          "import, stop, cancel, drop, deadline, slow reads) for --duration, then every session checked "
                          "against a replay, every stream's status, /metrics and memory (exit 3 when a check fails)");
  f->metrics = sub->add_option("--metrics", o.metrics, "soak: HOST:PORT of the server's Prometheus /metrics");
  f->server_pid = sub->add_option("--server-pid", o.server_pid, "soak: the server's pid, for its VmRSS (this machine)")
                      ->check(CLI::PositiveNumber);
  f->soak_extra.push_back(sub->add_option("--slow-readers", o.slow_readers,
                                          "soak: workers whose streams read one message a second or pause for "
                                          "seconds (default streams / 50, at least 1)")
                              ->check(CLI::Range(0, kMaxLoadStreams)));
  f->soak_extra.push_back(sub->add_option("--soak-sessions", o.soak_sessions, "soak: sessions one worker holds at most")
                              ->check(CLI::Range(1, 16))
                              ->capture_default_str());
  f->soak_extra.push_back(sub->add_option("--soak-max-position", o.soak_max_position,
                                          "soak: a session past this many tokens is verified and deleted")
                              ->check(CLI::Range(1, 1 << 20))
                              ->capture_default_str());
  f->soak_extra.push_back(sub->add_option("--soak-continuation", o.soak_continuation,
                                          "soak: greedy tokens compared between a session and its replay")
                              ->check(CLI::Range(1, 4096))
                              ->capture_default_str());
  f->soak_extra.push_back(sub->add_option("--test-corrupt-history", o.test_corrupt_history,
                                          "soak, tests only: change the last known token of this many sessions per "
                                          "worker before verifying them (the verification must then fail)")
                              ->check(CLI::Range(0, 16)));
  sub->add_flag("--json", o.json, "the result as one JSON object on stdout");
  sub->add_flag("--quiet", o.quiet, "no progress line each second");
  sub->add_flag("--allow-remote", o.allow_remote, "allow a --server that is not this machine");
  sub->add_flag("--keep-sessions", o.keep_sessions, "conversation mode: do not delete the sessions at the end");
  sub->callback([&g, f, action] { *action = [&g, f] { return RunLoad(g, *f); }; });
}

}  // namespace retain::client
