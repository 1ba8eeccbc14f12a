// The part of a Generate request that is the same whichever protocol brought it (the gRPC
// Generate handler and the HTTP /v1/*completions adapter both call it): which model, which
// session, the checked engine input, the tenant's request place. One implementation, so a request
// is refused for the same reasons, in the same words, over both.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "retain/engine/serving.h"
#include "server/service_deps.h"
#include "server/tenants.h"

namespace retain::v1 {
class GenerateRequest;
}

namespace retain::server {

// The model a request runs on: its session's owner when it continues one (INVALID_ARGUMENT when
// it also names another model), else the named model or the default. NOT_FOUND for an unknown
// model or a session the caller cannot see.
absl::StatusOr<ServedModel*> ResolveGenerateModel(const ServiceDeps& deps, const Caller& caller,
                                                  const v1::GenerateRequest& request);

struct PreparedGenerate {
  engine::GenerateInput input;  // validated; its deadline set
  RequestPlace place;           // the tenant's place, to hold until the engine ends the request
};

// Validates `request` against `model` (from ResolveGenerateModel) and takes the caller's request
// place (RESOURCE_EXHAUSTED at its limit); the input's prefix-cache namespace is the caller's.
// Errors name the proto field.
absl::StatusOr<PreparedGenerate> PrepareGenerate(const ServiceDeps& deps, const Caller& caller, const ServedModel& model,
                                                 const v1::GenerateRequest& request, absl::Time deadline);

// A logprob alternative's text: its bytes as valid UTF-8 (they may be part of a character), ""
// without a tokenizer. The same words in a gRPC Token and an HTTP logprobs entry.
std::string AlternativeText(const engine::Tokenizer* tokenizer, engine::TokenId id);

}  // namespace retain::server
