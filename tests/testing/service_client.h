// Client-side helpers for the retain-server end-to-end tests (server_smoke_test, service_test):
// a /metrics scrape and a series' sum, the gRPC health check, a Generate stream read to its end.
// Unlike the rest of tests/testing these need gRPC, so they live in their own library
// (retain_service_client), linked only by those tests.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "retain/v1/retain.grpc.pb.h"

namespace retain::testing {

// GET `path` from 127.0.0.1:port with HTTP/1.0; the whole response (headers and body), "" when
// nothing answered.
std::string HttpGet(int port, const std::string& path);

// The sum of a Prometheus text exposition's samples of `series` (over all its label sets); -1 when
// it has none.
double MetricValue(const std::string& text, const std::string& series);

// grpc.health.v1.Health/Check through the generic stub (Debian ships no health.proto):
// HealthCheckRequest{service = 1} and HealthCheckResponse{status = 1} encoded by hand. The status
// enum (0 UNKNOWN, 1 SERVING, 2 NOT_SERVING), or the RPC's error.
absl::StatusOr<int> HealthStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& service);

// Every response of a Generate call, and the status it ended with.
struct GenerateStream {
  grpc::Status status;
  std::vector<v1::GenerateResponse> responses;
};

// Reads a Generate stream to its end; `stop_after` > 0 cancels the call once that many tokens
// have arrived.
GenerateStream ReadGenerate(v1::Retain::Stub& stub, const v1::GenerateRequest& request, int stop_after = 0,
                            std::chrono::milliseconds deadline = std::chrono::seconds(60));

}  // namespace retain::testing
