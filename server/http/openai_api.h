// The OpenAI HTTP API as retain speaks it: request JSON → retain.v1.GenerateRequest, the
// service's events → response and stream-chunk JSON, and absl::Status → OpenAI's error JSON with
// its HTTP status, in this one place. Pure functions: no sockets, no engine calls, thread-safe.
//
// Extensions (documented in server/README.md): `session_id` in a request continues a retain
// session and every response names the session it used; finish_reason "cancelled" (drain).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "retain/engine/serving.h"
#include "retain/v1/retain.pb.h"
#include "server/http/chat_template.h"

namespace retain::server {

enum class ApiKind { kCompletion, kChat };

struct OpenAiRequest {
  ApiKind kind = ApiKind::kCompletion;
  v1::GenerateRequest generate;       // everything but a chat's prompt (rendered once the model is known)
  std::vector<ChatMessage> messages;  // chat only
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // report the chosen token's logprob
  int top_logprobs = 0;        // alternatives per token
};

// Parses a /v1/completions or /v1/chat/completions body. InvalidArgument whose message starts
// with the OpenAI parameter at fault (ParamOf reads it back).
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(absl::string_view body, ApiKind kind);

// A service error in OpenAI's words: a message naming a proto field (`sampling.top_p must ...`)
// is reworded to name the request parameter (`top_p must ...`).
absl::Status ToOpenAiStatus(const absl::Status& status, ApiKind kind);

// The HTTP status of a service error: 400, 401, 403, 404, 409, 429, 499, 500, 501, 503, 504.
int HttpStatusOf(absl::StatusCode code);

// {"error": {"message", "type", "param", "code"}}: type from the HTTP status (invalid_request_error,
// authentication_error, permission_error, not_found_error, rate_limit_error, server_error), code
// the gRPC code in lower case, param the parameter the message starts with (else null).
nlohmann::json ErrorJson(const absl::Status& status);
std::string ParamOf(absl::string_view message);  // "" when the message names no parameter

// "stop" (a stop string or token, or the end of text), "length", "cancelled".
const char* OpenAiFinishReason(engine::FinishReason reason);

// One generated token as the responses report it.
struct TokenOut {
  std::string text;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // alternatives, best first
};

// What every response and chunk of one request carries.
struct ResponseMeta {
  ApiKind kind = ApiKind::kCompletion;
  std::string id;  // "cmpl-req-7", "chatcmpl-req-7"
  std::string model;
  std::string session_id;  // "" for a stateless request
  int64_t created = 0;     // unix seconds
  bool logprobs = false;
  int top_logprobs = 0;
};

// OpenAI's usage object; prompt_tokens_details.cached_tokens: the prompt tokens served from the
// prefix-state cache (Finished.usage.cached_tokens on gRPC; counted in prompt_tokens too).
nlohmann::json UsageJson(int prompt_tokens, int completion_tokens, int cached_tokens);

// The non-streaming response.
nlohmann::json ResponseJson(const ResponseMeta& meta, const std::vector<TokenOut>& tokens, const char* finish_reason,
                            int prompt_tokens, int cached_tokens);

// One streamed chunk: `tokens` (possibly none), then finish_reason when it is the last; a chat's
// first chunk (`first`) carries the assistant role.
nlohmann::json ChunkJson(const ResponseMeta& meta, const std::vector<TokenOut>& tokens, const char* finish_reason,
                         bool first);
// The usage chunk sent after the last one when stream_options.include_usage is set.
nlohmann::json UsageChunkJson(const ResponseMeta& meta, int prompt_tokens, int completion_tokens, int cached_tokens);

// `data: JSON\n\n` (invalid UTF-8 replaced, so a dump never throws); kSseDone ends a stream.
std::string SseEvent(const nlohmann::json& j);
inline constexpr absl::string_view kSseDone = "data: [DONE]\n\n";
std::string DumpJson(const nlohmann::json& j);

}  // namespace retain::server
