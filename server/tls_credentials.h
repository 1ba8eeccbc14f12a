// The gRPC server credentials of --tls-cert/--tls-key/--tls-client-ca, or plain text without them.
// gRPC parses PEM only when a handshake starts, so a bad file would first show as clients that
// cannot connect; here every file is read and parsed with OpenSSL at start-up and the key is
// checked against the certificate, so a server never runs without the TLS it was asked for.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "server/security_config.h"

namespace retain::server {

struct ServerTransport {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::string description;  // for the start-up line: "plaintext", "TLS", "mTLS"
};

// InvalidArgument naming the flag and the file: missing or unreadable, not PEM, no certificate in
// it, a key that does not match the certificate.
absl::StatusOr<ServerTransport> MakeServerTransport(const TlsConfig& tls);

}  // namespace retain::server
