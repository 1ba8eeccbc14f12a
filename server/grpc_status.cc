#include "server/grpc_status.h"

#include "absl/strings/string_view.h"

namespace retain::server {
namespace {

// Cuts at a UTF-8 character boundary so the message stays valid text.
std::string Truncate(absl::string_view m) {
  if (m.size() <= kMaxStatusMessageBytes) return std::string(m);
  size_t end = kMaxStatusMessageBytes - 3;
  while (end > 0 && (static_cast<unsigned char>(m[end]) & 0xC0) == 0x80) --end;
  return std::string(m.substr(0, end)) + "...";
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  // absl has no codes beyond gRPC's 0..16; anything else would be a bug, reported as UNKNOWN.
  const auto grpc_code = code >= 0 && code <= 16 ? static_cast<grpc::StatusCode>(code) : grpc::StatusCode::UNKNOWN;
  return grpc::Status(grpc_code, Truncate(status.message()));
}

std::string StatusCodeLabel(absl::StatusCode code) { return absl::StatusCodeToString(code); }

}  // namespace retain::server
