#include "tests/testing/service_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <sstream>

#include "absl/status/status.h"
#include "grpcpp/generic/generic_stub.h"

namespace retain::testing {

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

double MetricValue(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  double sum = 0;
  bool found = false;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind(series, 0) == 0 && (line[series.size()] == ' ' || line[series.size()] == '{')) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
      found = true;
    }
  }
  return found ? sum : -1;
}

absl::StatusOr<int> HealthStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  std::string req;
  if (!service.empty()) {
    req.push_back(0x0a);
    req.push_back(static_cast<char>(service.size()));  // short names: a one-byte varint
    req += service;
  }
  grpc::Slice slice(req);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("unreadable health response");
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.empty()) return 0;  // UNKNOWN (the default value is not encoded)
  if (bytes.size() != 2 || bytes[0] != 0x08) return absl::InternalError("unexpected health response");
  return static_cast<int>(bytes[1]);
}

GenerateStream ReadGenerate(v1::Retain::Stub& stub, const v1::GenerateRequest& request, int stop_after,
                            std::chrono::milliseconds deadline) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  auto reader = stub.Generate(&ctx, request);
  GenerateStream s;
  int tokens = 0;
  v1::GenerateResponse r;
  while (reader->Read(&r)) {
    if (r.has_token() && stop_after > 0 && ++tokens == stop_after) ctx.TryCancel();
    s.responses.push_back(r);
  }
  s.status = reader->Finish();
  return s;
}

}  // namespace retain::testing
