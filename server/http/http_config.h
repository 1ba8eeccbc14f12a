// The HTTP front-end's part of retain-server's configuration (--http-*): where the OpenAI-
// compatible API and the playground listen, and the bounds that keep a flood of HTTP clients from
// holding unbounded threads, sockets or engine requests. Parsed by http_flags.cc into ServerConfig.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace CLI {
class App;
}

namespace retain::server {

struct HttpConfig {
  std::string listen;        // --http-listen HOST:PORT; empty = no HTTP front-end
  int threads = 16;          // --http-threads: connections served at once (one thread each)
  int max_generations = 8;   // --http-max-generations: completions in flight; past it 429
  int max_pending = 64;      // --http-max-pending: accepted connections waiting for a thread
  absl::Duration timeout = absl::Seconds(600);  // --http-timeout: a completion's deadline
  bool enabled() const { return !listen.empty(); }
};

struct RawHttpFlags {
  std::string listen;
  std::string threads = "16";
  std::string max_generations = "8";
  std::string max_pending = "64";
  std::string timeout = "600";
};

void AddHttpFlags(CLI::App& app, RawHttpFlags* f);
// InvalidArgument naming the flag.
absl::Status BuildHttpConfig(const RawHttpFlags& f, HttpConfig* out);

}  // namespace retain::server
