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
};

// A channel to `target` (HOST:PORT). Channels with different `index` use separate connections
// (the load generator spreads streams over a few).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, int index = 0);

// Sets the context's deadline from --timeout (nothing when it is 0).
void ApplyDeadline(grpc::ClientContext& ctx, const GlobalOptions& g);

// "INVALID_ARGUMENT" for 3, ...; "CODE_<n>" for a number outside the standard set.
std::string StatusCodeName(grpc::StatusCode code);

// Prints `retain: CODE_NAME: message` to stderr and returns 10 + the code.
int ReportRpcError(const grpc::Status& status);

// Prints `retain: message` to stderr and returns `code`.
int Fail(int code, const std::string& message);

// Whether `target` (HOST:PORT) names this machine: localhost, 127.0.0.0/8 or ::1.
bool IsLoopbackTarget(const std::string& target);

}  // namespace retain::client
