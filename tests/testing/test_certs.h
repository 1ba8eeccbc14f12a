// Certificates for the TLS tests, made at test time with the `openssl` command in a fresh
// temporary directory (never committed): a CA with a server certificate for 127.0.0.1/localhost
// and a client certificate, and a second CA with a client certificate of its own.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace retain::testing {

struct TestCerts {
  std::string dir;
  std::string ca, server_cert, server_key, client_cert, client_key;  // the CA and what it signed
  std::string other_ca, other_client_cert, other_client_key;         // a CA the server does not trust
  std::string stray_key;  // a private key that belongs to no certificate here
};

// The error carries openssl's output.
absl::StatusOr<TestCerts> MakeTestCerts();

// The whole file ("" when it cannot be read).
std::string ReadTextFile(const std::string& path);
// Writes (replaces) the file; false on failure.
bool WriteTextFile(const std::string& path, const std::string& text);

}  // namespace retain::testing
