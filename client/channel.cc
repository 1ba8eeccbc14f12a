#include "client/channel.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <limits>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

namespace retain::client {

namespace {

// The whole file, or false when it cannot be read.
bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return false;
  *out = ss.str();
  return true;
}

}  // namespace

std::string LoadTlsFiles(GlobalOptions& g) {
  if (g.tls_cert.empty() != g.tls_key.empty())
    return "--tls-cert and --tls-key go together (a client certificate and its private key)";
  const struct {
    const char* flag;
    const std::string& path;
    std::string* out;
  } files[] = {{"--tls-ca", g.tls_ca, &g.tls_ca_pem},
               {"--tls-cert", g.tls_cert, &g.tls_cert_pem},
               {"--tls-key", g.tls_key, &g.tls_key_pem}};
  for (const auto& f : files)
    if (!f.path.empty() && !ReadFile(f.path, f.out)) return std::string(f.flag) + " " + f.path + ": cannot be read";
  return "";
}

std::shared_ptr<grpc::Channel> MakeChannel(const GlobalOptions& g, int index) {
  grpc::ChannelArguments args;
  // Session chunks are at most 1 MiB; a listing of many sessions may be larger than 4 MiB.
  args.SetMaxReceiveMessageSize(64 << 20);
  if (index > 0) {
    // A distinct argument and a local subchannel pool: a connection of its own.
    args.SetInt("retain.channel_index", index);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  }
  if (!g.tls()) return grpc::CreateCustomChannel(g.server, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = g.tls_ca_pem;  // empty: gRPC's default roots
  ssl.pem_cert_chain = g.tls_cert_pem;
  ssl.pem_private_key = g.tls_key_pem;
  return grpc::CreateCustomChannel(g.server, grpc::SslCredentials(ssl), args);
}

void ApplyCallOptions(grpc::ClientContext& ctx, const GlobalOptions& g) {
  // Per-call metadata rather than call credentials: gRPC refuses call credentials on a plain-text
  // channel, and a server on 127.0.0.1 may take tokens without TLS.
  if (!g.token.empty()) ctx.AddMetadata("authorization", "Bearer " + g.token);
  if (g.timeout_seconds <= 0) return;
  const auto d = std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::duration<double>(g.timeout_seconds));
  ctx.set_deadline(std::chrono::system_clock::now() + d);
}

std::string StatusCodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {
      "OK",        "CANCELLED",         "UNKNOWN",         "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
      "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int n = static_cast<int>(code);
  if (n >= 0 && n < static_cast<int>(std::size(kNames))) return kNames[n];
  return "CODE_" + std::to_string(n);
}

int ReportRpcError(const grpc::Status& status) {
  std::fprintf(stderr, "retain: %s: %s\n", StatusCodeName(status.error_code()).c_str(),
               status.error_message().c_str());
  return kExitRpcBase + static_cast<int>(status.error_code());
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "retain: %s\n", message.c_str());
  return code;
}

bool IsLoopbackTarget(const std::string& target) {
  std::string host = target;
  // Optional scheme prefixes gRPC accepts: dns:///, ipv4:, ipv6:.
  for (const char* prefix : {"dns:///", "ipv4:", "ipv6:"}) {
    const std::string p = prefix;
    if (host.rfind(p, 0) == 0) host = host.substr(p.size());
  }
  if (!host.empty() && host[0] == '[') {  // [::1]:port
    const size_t close = host.find(']');
    if (close == std::string::npos) return false;
    host = host.substr(1, close - 1);
  } else if (const size_t colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost" || host == "::1") return true;
  // 127.a.b.c with every part a number 0..255.
  if (host.rfind("127.", 0) != 0) return false;
  int parts = 0;
  size_t i = 0;
  while (i <= host.size()) {
    size_t j = host.find('.', i);
    if (j == std::string::npos) j = host.size();
    const std::string part = host.substr(i, j - i);
    if (part.empty() || part.size() > 3 || part.find_first_not_of("0123456789") != std::string::npos) return false;
    if (std::stoi(part) > 255) return false;
    ++parts;
    i = j + 1;
  }
  return parts == 4;
}

}  // namespace retain::client
