// The one conversion from absl::Status (engine, validation, snapshots) to grpc::Status. Every RPC
// that fails goes through it, so codes map one way everywhere and messages stay bounded.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace retain::server {

// Messages longer than this are cut (with "...") so a client-controlled value quoted in an error
// can never make a trailer too large.
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// Same code (absl and gRPC share the numbering), message truncated. OK maps to OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// "INVALID_ARGUMENT", "NOT_FOUND", ...: the label value of retain_request_errors_total.
std::string StatusCodeLabel(absl::StatusCode code);

}  // namespace retain::server
