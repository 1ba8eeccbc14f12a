#include "server/server_config.h"

#include <sys/stat.h>

#include <cmath>
#include <limits>
#include <cstdio>
#include <set>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/history_flags.h"

#ifndef RETAIN_DEFAULT_MODEL_DIR
#define RETAIN_DEFAULT_MODEL_DIR ""
#endif

namespace retain::server {

absl::Status FlagError(const std::string& flag, const std::string& value, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, " ", why, " (got \"", value, "\")"));
}

absl::Status ParseIntFlag(const std::string& value, const char* flag, int lo, int hi, int* out) {
  int v = 0;
  if (!absl::SimpleAtoi(value, &v) || v < lo || v > hi)
    return FlagError(flag, value, absl::StrCat("must be an integer in [", lo, ", ", hi, "]"));
  *out = v;
  return absl::OkStatus();
}

absl::Status ParseSecondsFlag(const std::string& value, const char* flag, double lo, absl::Duration* out) {
  double v = 0;
  if (!absl::SimpleAtod(value, &v) || !std::isfinite(v) || v < lo || v > 1e9)
    return FlagError(flag, value, absl::StrCat("must be a number of seconds >= ", lo));
  *out = absl::Seconds(v);
  return absl::OkStatus();
}

namespace {

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool ValidModelName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

// The flags as typed; every one is checked by Build.
struct RawFlags {
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  std::vector<std::string> models;
  std::string backend = "cpu";
  std::string threads = "0";
  std::string state_budget = "256MiB";
  std::string session_ttl = "0";
  std::string max_batch = "64";
  std::string max_step_tokens = "512";
  std::string max_decode_slowdown = "1.5";
  std::string max_queue = "256";
  std::string max_prompt_tokens = "65536";
  std::string max_tokens_limit = "8192";
  std::string max_tokens_default = "256";
  std::string drain_timeout = "30";
  std::string test_fail_step = "0";
  RawSecurityFlags security;
  RawHistoryFlags history;
  RawHttpFlags http;
  RawTierFlags tiers;
};

absl::StatusOr<ServerConfig> Build(const RawFlags& f) {
  ServerConfig c;
  c.listen = f.listen;
  c.metrics_listen = f.metrics_listen;
  c.backend = f.backend;
  for (const std::string& m : f.models) {
    auto spec = ParseModelSpec(m);
    if (!spec.ok()) return spec.status();
    c.models.push_back(*std::move(spec));
  }
  if (c.models.empty()) {
    const std::string dir = RETAIN_DEFAULT_MODEL_DIR;
    if (dir.empty()) return absl::InvalidArgumentError("--model is required: this build has no default model");
    auto spec = ParseModelSpec(dir);
    if (!spec.ok()) return absl::InvalidArgumentError(absl::StrCat("the shipped default model: ", spec.status().message()));
    c.models.push_back(*std::move(spec));
  }
  engine::ServingOptions& s = c.serving;
  absl::Status st;
  if (!(st = ParseIntFlag(f.threads, "--threads", 0, 1024, &c.threads)).ok()) return st;
  auto budget = ParseByteSize(f.state_budget, "--state-budget-bytes");
  if (!budget.ok()) return budget.status();
  s.state_budget_bytes = *budget;
  if (!(st = ParseSecondsFlag(f.session_ttl, "--session-ttl", 0, &s.session_ttl)).ok()) return st;
  if (!(st = ParseIntFlag(f.max_batch, "--max-batch", 1, 4096, &s.max_batch)).ok()) return st;
  if (!(st = ParseIntFlag(f.max_step_tokens, "--max-step-tokens", 1, 1 << 20, &s.max_step_tokens)).ok()) return st;
  if (!absl::SimpleAtod(f.max_decode_slowdown, &s.max_decode_slowdown) ||
      !(s.max_decode_slowdown == 0 || (s.max_decode_slowdown >= 1 && s.max_decode_slowdown <= 1000)))
    return FlagError("--max-decode-slowdown", f.max_decode_slowdown, "must be 0 (no cap) or a number in [1, 1000]");
  if (!(st = ParseIntFlag(f.max_queue, "--max-queue", 0, 1 << 20, &s.max_queue)).ok()) return st;
  if (!(st = ParseIntFlag(f.max_prompt_tokens, "--max-prompt-tokens", 1, 1 << 24, &s.max_prompt_tokens)).ok()) return st;
  if (!(st = ParseIntFlag(f.max_tokens_limit, "--max-tokens-limit", 0, 1 << 24, &s.max_tokens_limit)).ok()) return st;
  if (!(st = ParseIntFlag(f.max_tokens_default, "--max-tokens-default", 0, 1 << 24, &s.default_max_tokens)).ok()) return st;
  int fail_step = 0;
  if (!(st = ParseIntFlag(f.test_fail_step, "--test-fail-step", 0, std::numeric_limits<int>::max(), &fail_step)).ok()) return st;
  s.test_fail_step = fail_step;
  if (!(st = ParseSecondsFlag(f.drain_timeout, "--drain-timeout", 0, &c.drain_timeout)).ok()) return st;
  if (!(st = BuildSecurityConfig(f.security, &c.security)).ok()) return st;
  if (!(st = BuildHistoryConfig(f.history, &c.serving, &c.prefix_cache_shared)).ok()) return st;
  if (!(st = BuildHttpConfig(f.http, &c.http)).ok()) return st;
  if (!(st = BuildTierConfig(f.tiers, &c.tiers)).ok()) return st;
  if (!(st = ValidateServerConfig(c)).ok()) return st;
  return c;
}

}  // namespace

absl::StatusOr<ModelSpec> ParseModelSpec(const std::string& value) {
  ModelSpec spec;
  const size_t eq = value.find('=');
  if (eq != std::string::npos && ValidModelName(value.substr(0, eq))) {
    spec.name = value.substr(0, eq);
    spec.dir = value.substr(eq + 1);
  } else {
    spec.dir = value;
    absl::string_view base = value;
    while (base.size() > 1 && base.back() == '/') base.remove_suffix(1);
    const size_t slash = base.rfind('/');
    if (slash != absl::string_view::npos) base.remove_prefix(slash + 1);
    spec.name = std::string(base);
    if (!ValidModelName(spec.name))
      return FlagError("--model", value,
                 "must be NAME=DIR or DIR whose last component is a name of letters, digits, '.', '_', '-' (at most 64)");
  }
  if (spec.dir.empty()) return FlagError("--model", value, "names no directory");
  if (!IsDir(spec.dir)) return FlagError("--model", value, absl::StrCat("names no directory: ", spec.dir, " does not exist"));
  if (!IsFile(spec.dir + "/model.safetensors"))
    return FlagError("--model", value, absl::StrCat(spec.dir, " holds no model.safetensors"));
  return spec;
}

absl::Status CheckHostPort(const std::string& value, const char* flag) {
  const size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0) return FlagError(flag, value, "must be HOST:PORT");
  const std::string host = value.substr(0, colon);
  if (host.front() == '[' && host.back() != ']') return FlagError(flag, value, "has an unclosed '[' in HOST");
  if (host.front() != '[' && host.find(':') != std::string::npos)
    return FlagError(flag, value, "must put an IPv6 HOST in brackets ([::1]:PORT)");
  int port = 0;
  if (!absl::SimpleAtoi(value.substr(colon + 1), &port) || port < 0 || port > 65535)
    return FlagError(flag, value, "must end in a PORT in [0, 65535]");
  return absl::OkStatus();
}

absl::StatusOr<size_t> ParseByteSize(const std::string& value, const char* flag) {
  absl::string_view v = absl::StripAsciiWhitespace(value);
  uint64_t mult = 1;
  struct Suffix { const char* s; uint64_t m; };
  static constexpr Suffix kSuffixes[] = {{"GiB", 1ull << 30}, {"MiB", 1ull << 20}, {"KiB", 1ull << 10},
                                         {"G", 1ull << 30},   {"M", 1ull << 20},   {"K", 1ull << 10}};
  for (const Suffix& s : kSuffixes) {
    if (absl::ConsumeSuffix(&v, s.s)) {
      mult = s.m;
      break;
    }
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n == 0 || n > (uint64_t{1} << 50) / mult)
    return FlagError(flag, value, "must be a byte count > 0 (optionally with K, M, G, KiB, MiB or GiB)");
  return static_cast<size_t>(n * mult);
}

absl::Status ValidateServerConfig(const ServerConfig& c) {
  absl::Status st = CheckHostPort(c.listen, "--listen");
  if (!st.ok()) return st;
  if (!c.metrics_listen.empty() && !(st = CheckHostPort(c.metrics_listen, "--metrics-listen")).ok()) return st;
  if (c.models.empty()) return absl::InvalidArgumentError("--model: at least one model is needed");
  std::set<std::string> names;
  for (const ModelSpec& m : c.models)
    if (!names.insert(m.name).second)
      return absl::InvalidArgumentError(absl::StrCat("--model: the name \"", m.name, "\" is given twice"));
  if (c.backend.empty()) return absl::InvalidArgumentError("--backend must not be empty");
  const engine::ServingOptions& s = c.serving;
  if (s.max_step_tokens < s.max_batch)
    return absl::InvalidArgumentError(absl::StrCat("--max-step-tokens (", s.max_step_tokens,
                                                   ") must be >= --max-batch (", s.max_batch,
                                                   ") so every running request decodes each step"));
  if (s.default_max_tokens > s.max_tokens_limit)
    return absl::InvalidArgumentError(absl::StrCat("--max-tokens-default (", s.default_max_tokens,
                                                   ") must be <= --max-tokens-limit (", s.max_tokens_limit, ")"));
  // Whatever the engine checks beyond these is reported with its option name.
  if (!(st = engine::ValidateServingOptions(s)).ok())
    return absl::InvalidArgumentError(absl::StrCat("serving options: ", st.message()));
  return absl::OkStatus();
}

ParsedFlags ParseServerConfig(int argc, const char* const* argv) {
  RawFlags f;
  CLI::App app{"retain-server: the gRPC service (retain.v1.Retain) over recurrent LLMs", "retain-server"};
  app.add_option("--listen", f.listen, "gRPC address HOST:PORT (port 0: any free port)")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  app.add_option("--metrics-listen", f.metrics_listen, "Prometheus /metrics address HOST:PORT; empty = off")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  app.add_option("--model", f.models,
                 "NAME=DIR (or DIR, named after it); repeatable, the first is the default; none = the shipped "
                 "default model")
      ->type_name("NAME=DIR")
      ->take_all();
  app.add_option("--backend", f.backend, "compute backend: cpu, or cuda (RWKV-7 models only; builds with nvcc; unverified on GPU)")->type_name("NAME")->capture_default_str();
  app.add_option("--threads", f.threads, "compute threads per model; 0 = every CPU this process may use (affinity mask, cgroup quota)")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--state-budget-bytes", f.state_budget,
                 "bytes of session state per model (slots = budget / state bytes); K, M, G, KiB, MiB, GiB")
      ->type_name("BYTES")->capture_default_str();
  app.add_option("--session-ttl", f.session_ttl, "seconds an idle session lives; 0 = until evicted for room")
      ->type_name("SECONDS")->capture_default_str();
  app.add_option("--max-batch", f.max_batch, "requests stepped together")->type_name("N")->capture_default_str();
  app.add_option("--max-step-tokens", f.max_step_tokens, "tokens per step (decodes + prefill chunks)")
      ->type_name("N")->capture_default_str();
  app.add_option("--max-decode-slowdown", f.max_decode_slowdown,
                 "while streams decode, a step carrying prompt tokens aims at most this many times a decode-only "
                 "step (prompt chunks sized from measured step times, >= 16 tokens); 0 = no cap")
      ->type_name("X")->capture_default_str();
  app.add_option("--max-queue", f.max_queue, "requests waiting for a place; past it RESOURCE_EXHAUSTED")
      ->type_name("N")->capture_default_str();
  app.add_option("--max-prompt-tokens", f.max_prompt_tokens, "longest prompt a request may send")
      ->type_name("N")->capture_default_str();
  app.add_option("--max-tokens-limit", f.max_tokens_limit, "largest max_tokens a request may ask for")
      ->type_name("N")->capture_default_str();
  app.add_option("--max-tokens-default", f.max_tokens_default, "max_tokens when a request gives none")
      ->type_name("N")->capture_default_str();
  app.add_option("--drain-timeout", f.drain_timeout,
                 "seconds running requests may take to finish after SIGTERM before they are cancelled")
      ->type_name("SECONDS")->capture_default_str();
  // Fault injection, for the reliability tests only: not for production, so kept out of --help.
  app.add_option("--test-fail-step", f.test_fail_step, "tests only: the Nth model step fails (INTERNAL), once")
      ->type_name("N")->group("");
  AddSecurityFlags(app, &f.security);
  AddHistoryFlags(app, &f.history);
  AddHttpFlags(app, &f.http);
  AddTierFlags(app, &f.tiers);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return {std::nullopt, app.exit(e)};
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "retain-server: %s (see --help)\n", e.what());
    return {std::nullopt, 2};
  }
  auto config = Build(f);
  if (!config.ok()) {
    std::fprintf(stderr, "retain-server: %s\n", std::string(config.status().message()).c_str());
    return {std::nullopt, 2};
  }
  return {*std::move(config), 0};
}

}  // namespace retain::server
