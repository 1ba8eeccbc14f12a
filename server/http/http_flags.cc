#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "server/http/http_config.h"
#include "server/server_config.h"

namespace retain::server {

void AddHttpFlags(CLI::App& app, RawHttpFlags* f) {
  app.add_option("--http-listen", f->listen,
                 "OpenAI-compatible HTTP API and playground address HOST:PORT (port 0: any); empty = off")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  app.add_option("--http-threads", f->threads, "HTTP connections served at once (one thread each)")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--http-max-generations", f->max_generations,
                 "HTTP completions in flight at once; past it 429 (must be < --http-threads)")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--http-max-pending", f->max_pending,
                 "accepted HTTP connections waiting for a thread; past it the listener stops accepting")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--http-timeout", f->timeout, "seconds an HTTP completion may run before it ends (504)")
      ->type_name("SECONDS")
      ->capture_default_str();
}

absl::Status BuildHttpConfig(const RawHttpFlags& f, HttpConfig* out) {
  out->listen = f.listen;
  absl::Status st;
  if (!out->listen.empty() && !(st = CheckHostPort(out->listen, "--http-listen")).ok()) return st;
  if (!(st = ParseIntFlag(f.threads, "--http-threads", 2, 4096, &out->threads)).ok()) return st;
  if (!(st = ParseIntFlag(f.max_generations, "--http-max-generations", 1, 4095, &out->max_generations)).ok()) return st;
  if (!(st = ParseIntFlag(f.max_pending, "--http-max-pending", 1, 1 << 16, &out->max_pending)).ok()) return st;
  if (!(st = ParseSecondsFlag(f.timeout, "--http-timeout", 0.001, &out->timeout)).ok()) return st;
  // A thread must stay free to answer 429 (and /health) while every generation holds one.
  if (out->max_generations >= out->threads)
    return FlagError("--http-max-generations", f.max_generations,
                     absl::StrCat("must be below --http-threads (", out->threads, ") so a thread is left to refuse"));
  return absl::OkStatus();
}

}  // namespace retain::server
