// retain-server's life: load the models, start the gRPC service (with health and reflection)
// and /metrics, serve until SIGTERM or SIGINT, then drain. Owns the registry (engines), the
// metrics and the grpc::Server; main() only parses flags and calls RunServer.
#pragma once

#include "server/server_config.h"

namespace retain::server {

// Runs the server to the end. Blocks SIGTERM and SIGINT in the calling thread first, so every
// thread started afterwards (engines, gRPC, civetweb) inherits the mask and only the dedicated
// signal thread receives them. On a signal: health NOT_SERVING for every service name at once,
// every engine refuses new requests (UNAVAILABLE), running ones get --drain-timeout to finish and
// are then cancelled (reason CANCELLED, sessions consistent), the gRPC server shuts down.
// Returns the exit code: 0 after a drain, 1 when an address cannot be bound, 2 when a model
// cannot be loaded.
int RunServer(const ServerConfig& config);

}  // namespace retain::server
