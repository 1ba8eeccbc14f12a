// Session operations shared by the gRPC handlers (retain_service.cc) and the HTTP front-end
// (http/), so a session is forked or deleted by one implementation whichever protocol asks:
// the session id is checked, the caller must own it (else the never-existed NOT_FOUND), the
// tenant's limits hold.
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "retain/engine/serving.h"
#include "server/service_deps.h"

namespace retain::server {

struct Caller;

// A copy of session `id` as a new session of the caller. `*model` is set once the session's model
// is known (for the metrics' label), "" before.
absl::StatusOr<std::pair<ServedModel*, engine::SessionInfo>> ForkOwnedSession(const ServiceDeps& deps,
                                                                              const Caller& caller,
                                                                              const std::string& id,
                                                                              std::string* model);

absl::Status DeleteOwnedSession(const ServiceDeps& deps, const Caller& caller, const std::string& id,
                                std::string* model);

}  // namespace retain::server
