// What every `retain` subcommand shares: the global options, the channel, deadlines and the
// mapping of gRPC status to the exit code (10 + the status code number).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

namespace retain::client {

// Exit codes (client/README.md): 0 ok, 1 a local failure (a file that cannot be read or written),
// 2 a usage error, 10 + N an RPC that ended with gRPC status code N (13 = INVALID_ARGUMENT,
// 15 = NOT_FOUND, 19 = FAILED_PRECONDITION, 24 = UNAVAILABLE, ...).
inline constexpr int kExitOk = 0;
inline constexpr int kExitLocal = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRpcBase = 10;

struct GlobalOptions {
  std::string server = "127.0.0.1:50051";  // --server, else $RETAIN_SERVER
  double timeout_seconds = 0;              // --timeout: the deadline of each RPC; 0 = none
  std::string token;                       // --token, else $RETAIN_TOKEN: sent as a bearer token
  std::string tls_ca, tls_cert, tls_key;   // --tls-ca / --tls-cert / --tls-key: PEM file paths
  // The files' contents, read by LoadTlsFiles; TLS is on when either path was given.
  std::string tls_ca_pem, tls_cert_pem, tls_key_pem;
  bool tls() const { return !tls_ca.empty() || !tls_cert.empty(); }
};

// Reads the --tls-* files into `g`. "" when they are fine, else the message (naming the flag and
// file) for Fail: a file that cannot be read, or --tls-cert without --tls-key (or the reverse).
std::string LoadTlsFiles(GlobalOptions& g);

// A channel to --server, TLS when --tls-ca or --tls-cert was given (the server checked against
// --tls-ca, else the system's roots). Channels with different `index` use separate connections
// (the load generator spreads streams over a few).
std::shared_ptr<grpc::Channel> MakeChannel(const GlobalOptions& g, int index = 0);

// What every call carries: the deadline from --timeout (none when it is 0) and, with --token,
// `authorization: Bearer TOKEN` metadata.
void ApplyCallOptions(grpc::ClientContext& ctx, const GlobalOptions& g);

// "INVALID_ARGUMENT" for 3, ...; "CODE_<n>" for a number outside the standard set.
std::string StatusCodeName(grpc::StatusCode code);

// Prints `retain: CODE_NAME: message` to stderr and returns 10 + the code.
int ReportRpcError(const grpc::Status& status);

// Prints `retain: message` to stderr and returns `code`.
int Fail(int code, const std::string& message);

// Whether `target` (HOST:PORT) names this machine: localhost, 127.0.0.0/8 or ::1.
bool IsLoopbackTarget(const std::string& target);

}  // namespace retain::client
