// retain.v1 requests → engine inputs. Every field is checked here before any state is touched,
// and every error names the field as the proto spells it (`sampling.top_p`, `prompt_tokens[3]`).
// The engine checks again what only it can know (the session exists, is idle, has a pending
// token). Pure functions: no gRPC, no engine calls, thread-safe.
#pragma once

#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "retain/engine/serving.h"
#include "retain/engine/tokenizer.h"

namespace retain::v1 {
class GenerateRequest;
class CreateSessionRequest;
}  // namespace retain::v1

namespace retain::server {

inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;
inline constexpr int kMaxStopTokenIds = 256;
inline constexpr size_t kMaxSessionIdBytes = 128;

// What a request is checked against: the model it resolved to.
struct ValidationContext {
  const engine::ServingOptions* options = nullptr;  // max_prompt_tokens, max_tokens_limit
  int vocab_size = 0;
  const engine::Tokenizer* tokenizer = nullptr;     // null: token ids only
};

// The request as engine input; `model` and `session_id` resolution (NOT_FOUND) is the caller's,
// and so is the deadline. INVALID_ARGUMENT naming the field; FAILED_PRECONDITION when
// prompt_text is given to a model without a tokenizer.
absl::StatusOr<engine::GenerateInput> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                              const ValidationContext& ctx);

// CreateSession's optional prefix as token ids (empty when none).
absl::StatusOr<std::vector<engine::TokenId>> ValidateSessionPrefix(const v1::CreateSessionRequest& request,
                                                                   const ValidationContext& ctx);

// Each id in [0, vocab_size); the error names `field[i]`.
absl::Status CheckTokenIds(absl::Span<const int32_t> ids, absl::string_view field, int vocab_size);

// Non-empty, at most kMaxSessionIdBytes of printable ASCII.
absl::Status CheckSessionId(absl::string_view id, absl::string_view field);

}  // namespace retain::server
