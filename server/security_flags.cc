#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/security_config.h"
#include "server/server_config.h"

namespace retain::server {

absl::Status ParseLimit(const std::string& value, bool bytes, const std::string& what, int64_t* out) {
  if (value == "0") {
    *out = 0;
    return absl::OkStatus();
  }
  if (bytes) {
    auto n = ParseByteSize(value, what.c_str());
    if (!n.ok()) return n.status();
    *out = static_cast<int64_t>(*n);
    return absl::OkStatus();
  }
  int64_t v = 0;
  if (!absl::SimpleAtoi(value, &v) || v < 0 || v > (int64_t{1} << 40))
    return FlagError(what, value, "must be a count >= 0 (0 = no limit)");
  *out = v;
  return absl::OkStatus();
}

void AddSecurityFlags(CLI::App& app, RawSecurityFlags* f) {
  app.add_option("--tls-cert", f->tls_cert, "serve TLS with this PEM certificate (chain); needs --tls-key")
      ->type_name("FILE");
  app.add_option("--tls-key", f->tls_key, "PEM private key of --tls-cert")->type_name("FILE");
  app.add_option("--tls-client-ca", f->tls_client_ca,
                 "require client certificates signed by this PEM CA bundle (mTLS); needs --tls-cert")
      ->type_name("FILE");
  app.add_option("--auth-tokens", f->auth_tokens,
                 "tenants: lines 'NAME TOKEN|sha256:HEX [sessions=N] [requests=N] [state-bytes=B]'; every "
                 "retain.v1.Retain call then needs 'authorization: Bearer TOKEN'; reread on SIGHUP")
      ->type_name("FILE");
  app.add_option("--tenant-max-sessions", f->tenant_max_sessions, "live sessions per tenant; 0 = no limit")
      ->type_name("N")->capture_default_str();
  app.add_option("--tenant-max-requests", f->tenant_max_requests,
                 "Generate/CreateSession calls in flight per tenant; 0 = no limit")
      ->type_name("N")->capture_default_str();
  app.add_option("--tenant-max-state-bytes", f->tenant_max_state_bytes,
                 "state bytes of a tenant's live sessions; 0 = no limit; K, M, G, KiB, MiB, GiB")
      ->type_name("BYTES")->capture_default_str();
  app.add_option("--max-receive-message-bytes", f->max_receive_message_bytes,
                 "largest gRPC message accepted (>= 2MiB: ImportSession sends 1 MiB chunks)")
      ->type_name("BYTES")->capture_default_str();
  app.add_option("--max-concurrent-streams", f->max_concurrent_streams,
                 "concurrent calls per client connection (HTTP/2 MAX_CONCURRENT_STREAMS)")
      ->type_name("N")->capture_default_str();
  app.add_option("--keepalive-min-time", f->keepalive_min_time,
                 "shortest interval between client keepalive pings the server accepts")
      ->type_name("SECONDS")->capture_default_str();
  app.add_flag("--keepalive-permit-without-calls", f->keepalive_permit_without_calls,
               "accept client keepalive pings on a connection with no call in flight");
  app.add_option("--keepalive-max-ping-strikes", f->keepalive_max_ping_strikes,
                 "pings breaking those rules before the connection is closed (GOAWAY); 0 = never")
      ->type_name("N")->capture_default_str();
  app.add_option("--keepalive-time", f->keepalive_time, "seconds between the server's pings on an idle connection")
      ->type_name("SECONDS")->capture_default_str();
  app.add_option("--keepalive-timeout", f->keepalive_timeout,
                 "seconds the server waits for a ping's answer before it closes the connection")
      ->type_name("SECONDS")->capture_default_str();
}

absl::Status BuildSecurityConfig(const RawSecurityFlags& f, SecurityConfig* out) {
  SecurityConfig c;
  c.tls = {f.tls_cert, f.tls_key, f.tls_client_ca};
  if (c.tls.cert.empty() != c.tls.key.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: give both for TLS, neither for plain text");
  if (!c.tls.client_ca.empty() && c.tls.cert.empty())
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key: client certificates are "
                                      "checked only over TLS");
  c.auth_tokens = f.auth_tokens;
  absl::Status st;
  if (!(st = ParseLimit(f.tenant_max_sessions, false, "--tenant-max-sessions", &c.tenant_limits.sessions)).ok()) return st;
  if (!(st = ParseLimit(f.tenant_max_requests, false, "--tenant-max-requests", &c.tenant_limits.requests)).ok()) return st;
  if (!(st = ParseLimit(f.tenant_max_state_bytes, true, "--tenant-max-state-bytes", &c.tenant_limits.state_bytes)).ok())
    return st;
  TransportLimits& t = c.transport;
  auto receive = ParseByteSize(f.max_receive_message_bytes, "--max-receive-message-bytes");
  if (!receive.ok()) return receive.status();
  if (*receive < (size_t{2} << 20) || *receive > (size_t{1} << 30))
    return FlagError("--max-receive-message-bytes", f.max_receive_message_bytes,
               "must be in [2MiB, 1GiB] (ImportSession sends chunks of 1 MiB)");
  t.max_receive_message_bytes = static_cast<int>(*receive);
  if (!(st = ParseIntFlag(f.max_concurrent_streams, "--max-concurrent-streams", 1, 1 << 20, &t.max_concurrent_streams)).ok())
    return st;
  if (!(st = ParseSecondsFlag(f.keepalive_min_time, "--keepalive-min-time", 0, &t.keepalive_min_time)).ok()) return st;
  t.keepalive_permit_without_calls = f.keepalive_permit_without_calls;
  if (!(st = ParseIntFlag(f.keepalive_max_ping_strikes, "--keepalive-max-ping-strikes", 0, 1000,
                        &t.keepalive_max_ping_strikes)).ok())
    return st;
  if (!(st = ParseSecondsFlag(f.keepalive_time, "--keepalive-time", 1, &t.keepalive_time)).ok()) return st;
  if (!(st = ParseSecondsFlag(f.keepalive_timeout, "--keepalive-timeout", 1, &t.keepalive_timeout)).ok()) return st;
  *out = std::move(c);
  return absl::OkStatus();
}

}  // namespace retain::server
