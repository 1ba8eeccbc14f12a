// The security and hardening part of retain-server's configuration: TLS, tenants (bearer tokens
// and their limits) and the gRPC transport limits. Parsed by security_flags.cc into ServerConfig;
// nothing here opens a file (the TLS and token files are read at start-up, by tls_credentials.cc
// and tenants.cc, so their errors name the file).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace CLI {
class App;
}

namespace retain::server {

struct TlsConfig {
  std::string cert;       // --tls-cert: PEM certificate chain; empty = plain text
  std::string key;        // --tls-key: PEM private key of `cert`
  std::string client_ca;  // --tls-client-ca: PEM CA bundle; set = clients must present a cert it signed
  bool enabled() const { return !cert.empty(); }
};

// 0 = no limit. Flags give every tenant's default; a token file's columns override them.
struct TenantLimits {
  int64_t sessions = 0;     // live sessions (created, forked, imported; until deleted or evicted)
  int64_t requests = 0;     // Generate streams and CreateSession calls in flight at once
  int64_t state_bytes = 0;  // sum of the state bytes of the tenant's live sessions
};

struct TransportLimits {
  int max_receive_message_bytes = 4 << 20;
  int max_concurrent_streams = 256;                         // per connection (HTTP/2 SETTINGS)
  absl::Duration keepalive_min_time = absl::Seconds(60);    // the shortest client ping interval allowed
  bool keepalive_permit_without_calls = false;              // client pings on a connection with no call
  int keepalive_max_ping_strikes = 2;                       // bad pings before GOAWAY (0 = unlimited)
  absl::Duration keepalive_time = absl::Hours(2);           // server pings an idle connection this often
  absl::Duration keepalive_timeout = absl::Seconds(20);     // and closes it when no answer comes in time
};

struct SecurityConfig {
  TlsConfig tls;
  std::string auth_tokens;  // --auth-tokens FILE; empty = one anonymous tenant, no tokens
  TenantLimits tenant_limits;
  TransportLimits transport;
};

// The flags as typed, checked by BuildSecurityConfig.
struct RawSecurityFlags {
  std::string tls_cert, tls_key, tls_client_ca, auth_tokens;
  std::string tenant_max_sessions = "0", tenant_max_requests = "0", tenant_max_state_bytes = "0";
  std::string max_receive_message_bytes = "4MiB";
  std::string max_concurrent_streams = "256";
  std::string keepalive_min_time = "60";
  bool keepalive_permit_without_calls = false;
  std::string keepalive_max_ping_strikes = "2";
  std::string keepalive_time = "7200";
  std::string keepalive_timeout = "20";
};

void AddSecurityFlags(CLI::App& app, RawSecurityFlags* f);
// InvalidArgument naming the flag.
absl::Status BuildSecurityConfig(const RawSecurityFlags& f, SecurityConfig* out);

// A tenant limit as typed in a flag or a token-file column: a count, or for state bytes a byte size
// ("0" = no limit). `what` names the flag or column in the error.
absl::Status ParseLimit(const std::string& value, bool bytes, const std::string& what, int64_t* out);

}  // namespace retain::server
