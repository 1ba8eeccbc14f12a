// retain-server's HTTP front-end (--http-listen): the OpenAI-compatible API (/v1/completions,
// /v1/chat/completions, /v1/models), retain sessions over HTTP (/v1/sessions), /health and the
// playground page (/). A thin adapter: requests become retain.v1.GenerateRequest and go through
// the same preparation (generate_prepare.h), session operations (session_ops.h), tenants and
// metrics as gRPC's; openai_api.h is the one mapping between the two vocabularies.
//
// Bounds: --http-threads connections are served at once; at most --http-max-pending accepted
// connections wait for a thread (then the listener stops accepting and the kernel's backlog
// holds the rest); at most --http-max-generations completions run at once (past it 429
// RESOURCE_EXHAUSTED); each completion has the --http-timeout deadline (504); bodies are at most
// `max_body_bytes`. A streaming client that goes away is noticed at the next write (a token or the
// keep-alive comment sent each second) and its request is cancelled, so its session keeps the
// tokens that were handed to the stream. A non-streaming client that goes away is not noticed:
// its request runs to its end or deadline (cpp-httplib 0.11 gives no way to watch the socket).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/http/http_config.h"
#include "server/security_config.h"
#include "server/service_deps.h"

namespace retain::server {

class HttpFrontEnd {
 public:
  // Binds `config.listen` and starts serving: HTTPS with the gRPC port's certificate, key and
  // client CA when `tls` is enabled (the same files, so one certificate covers both ports).
  // Unavailable when it cannot bind; InvalidArgument when a model's chat template is malformed
  // (the message names its config.json) or the TLS files do not make a server context.
  static absl::StatusOr<std::unique_ptr<HttpFrontEnd>> Start(const HttpConfig& config, const TlsConfig& tls,
                                                            const ServiceDeps& deps, size_t max_body_bytes);
  ~HttpFrontEnd();

  int port() const;
  // /health answers 503 from now on; new completions are refused by the engines' own drain.
  void BeginDrain();
  // True once every HTTP completion has been written out, waiting at most `timeout`.
  bool WaitIdle(absl::Duration timeout);
  // Stops listening and joins the threads.
  void Stop();

  struct Impl;

 private:
  explicit HttpFrontEnd(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace retain::server
