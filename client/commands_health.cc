// retain health: grpc.health.v1.Health/Check, for probes (the image's HEALTHCHECK). Prints the
// status; exits 0 when SERVING, 3 when the server answers anything else (NOT_SERVING while it
// drains), 10 + N when the call fails (24 UNAVAILABLE: nothing listening; 15 NOT_FOUND: an unknown
// --service).
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include "client/commands.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace retain::client {
namespace {

inline constexpr int kExitNotServing = 3;

int Health(const GlobalOptions& g, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(MakeChannel(g));
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, g);
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = stub->Check(&ctx, req, &resp);
  if (!st.ok()) return ReportRpcError(st);
  std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()).c_str());
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk : kExitNotServing;
}

}  // namespace

void AddHealthCommand(CLI::App& app, const GlobalOptions& g, Action* action) {
  auto service = std::make_shared<std::string>();
  CLI::App* health = app.add_subcommand(
      "health", "grpc.health.v1 Check: prints SERVING (exit 0) or another status (exit 3)");
  health->add_option("--service", *service, "service name; default \"\": the server as a whole (retain.v1.Retain also answers)");
  health->callback([&g, service, action] { *action = [&g, service] { return Health(g, *service); }; });
}

}  // namespace retain::client
