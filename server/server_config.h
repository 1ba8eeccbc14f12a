// retain-server's configuration: the command line (CLI11) parsed into a ServerConfig, every
// value checked, every error naming its flag. Owns no resources; loads nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "retain/engine/serving.h"
#include "server/http/http_config.h"
#include "server/security_config.h"
#include "server/tier_flags.h"

namespace retain::server {

struct ModelSpec {
  std::string name;  // what requests put in `model`
  std::string dir;   // model.safetensors (+ config.json)
};

struct ServerConfig {
  std::string listen = "127.0.0.1:50051";          // HOST:PORT; port 0 = any free port
  std::string metrics_listen = "127.0.0.1:9464";   // HOST:PORT; empty = no /metrics endpoint
  std::vector<ModelSpec> models;                   // at least one; the first is the default
  std::string backend = "cpu";
  int threads = 0;                                 // per model; 0 = every core this process may use
  // Per-model serving options (eos_token_id is set per model from its tokenizer at load).
  engine::ServingOptions serving;
  absl::Duration drain_timeout = absl::Seconds(30);
  SecurityConfig security;  // TLS, tenants, gRPC transport limits (security_config.h)
  bool prefix_cache_shared = false;  // --prefix-cache-shared (history_flags.h)
  HttpConfig http;          // the OpenAI-compatible HTTP front-end (http/http_config.h)
  TierConfig tiers;         // where idle sessions spill below the device pool (tier_flags.h)
};

struct ParsedFlags {
  std::optional<ServerConfig> config;  // set when the server should run
  int exit_code = 0;                   // otherwise: 0 after --help, 2 after a bad flag
};

// Parses argv. --help prints the usage to stdout; a bad value prints one line naming the flag to
// stderr. Without --model the shipped default model (RETAIN_DEFAULT_MODEL_DIR) is served, named
// after its directory.
ParsedFlags ParseServerConfig(int argc, const char* const* argv);

// Cross-field and file-system checks of a config built in code (ParseServerConfig runs it too).
// InvalidArgument naming the flag.
absl::Status ValidateServerConfig(const ServerConfig& config);

// "NAME=DIR", or "DIR" (named after the directory's last component).
absl::StatusOr<ModelSpec> ParseModelSpec(const std::string& value);

// Checks HOST:PORT (port in [0, 65535]; host non-empty, brackets allowed for IPv6).
absl::Status CheckHostPort(const std::string& value, const char* flag);

// "268435456", "256MiB", "256M", "1GiB", "64K" (binary multiples).
absl::StatusOr<size_t> ParseByteSize(const std::string& value, const char* flag);

// The checks every numeric flag shares, so each says what it wants in the same words:
// InvalidArgument "FLAG WHY (got \"VALUE\")".
absl::Status FlagError(const std::string& flag, const std::string& value, const std::string& why);
// An integer in [lo, hi].
absl::Status ParseIntFlag(const std::string& value, const char* flag, int lo, int hi, int* out);
// A finite number of seconds in [lo, 1e9].
absl::Status ParseSecondsFlag(const std::string& value, const char* flag, double lo, absl::Duration* out);

}  // namespace retain::server
